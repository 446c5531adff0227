"""A tower's token outputs in the joint space: what late interaction (FILIP, lesson 07)
compares, and what grounding scores.

    x = image_tokens(model.image_tower, images)      # [N, P, d]: patch tokens, class token dropped
    y, mask = text_tokens(model.text_tower, ids)     # [M, L, d], [M, L] True = real token
    e = encode_text(model.text_tower, ids)           # {"text": [M, d], "y", "mask"}: one pass
    e = encode(model, images, ids)                   # both towers, pooled and token outputs
"""
from __future__ import annotations

import torch

from ..models.interface import PromptableImage, PromptableText, require


def image_tokens(image_tower, images: torch.Tensor) -> torch.Tensor:
    """The patch tokens of ``images`` ``[N, 3, H, W]`` in the joint space: the tower's token
    outputs with the class token dropped, through the same projection as the pooled
    embedding, ``[N, P, embed_dim]``."""
    require("image_tower", image_tower, PromptableImage)
    _, tokens = image_tower(images, return_tokens=True)
    return image_tower.proj(tokens[:, 1:])


def text_tokens(text_tower, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The token outputs of captions ``ids`` ``[M, L]`` in the joint space ``[M, L', embed_dim]``
    and their mask ``[M, L']`` (True = a real token, ``<bos>`` and ``<eos>`` included); ``L'``
    drops the columns that are padding in every row, as the tower does."""
    e = encode_text(text_tower, ids)
    return e["y"], e["mask"]


def encode_text(text_tower, ids: torch.Tensor) -> dict:
    """One pass of the text tower over captions ``ids`` ``[M, L]``: the pooled embedding
    ``text`` ``[M, d]`` (what the model's ``encode_text`` returns) and the ``text_tokens`` ``y`` and
    ``mask``, from the same forward."""
    require("text_tower", text_tower, PromptableText)
    text, tokens = text_tower(ids, return_tokens=True)
    return {"text": text, "y": text_tower.proj(tokens), "mask": (ids != text_tower.pad_id)[:, :tokens.shape[1]]}


def encode(model, images: torch.Tensor, ids: torch.Tensor) -> dict:
    """One pass of each tower of a mini-CLIP-shaped ``model``: the pooled embeddings ``image``
    ``[N, d]`` and ``text`` ``[M, d]`` (what ``encode_image`` / ``encode_text`` return), the
    patch tokens ``x`` ``[N, P, d]``, the caption tokens ``y`` ``[M, L, d]`` and their ``mask``."""
    it, tt = getattr(model, "image_tower", None), getattr(model, "text_tower", None)
    require("model.image_tower", it, PromptableImage)
    require("model.text_tower", tt, PromptableText)
    image, x = it(images, return_tokens=True)
    t = encode_text(tt, ids)
    return {"image": image, "text": t["text"], "x": it.proj(x[:, 1:]), "y": t["y"], "mask": t["mask"]}
