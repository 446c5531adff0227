"""Retrieval and zero-shot evaluation of a mini-CLIP on ``training_data``-style data."""
from __future__ import annotations

import torch

from ...evaluation import metrics
from ... import world
from ...core.ops import in_chunks


def _encode_images(model, images: torch.Tensor) -> torch.Tensor:
    return in_chunks(lambda b: model.encode_image(world.images_float(b)), images)


@torch.no_grad()
def embed(model, data: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Image and full-caption embeddings ``[N, d]`` of ``training_data(...)``-style data."""
    model.eval()
    return _encode_images(model, data["image"]), in_chunks(model.encode_text, data["full_ids"])


@torch.no_grad()
def evaluate(model, data: dict, held_out: bool = False, encode_text=None) -> dict[str, float]:
    """Retrieval recall@1/5 both ways (a caption true of several scenes counts for each,
    so identical captions are ties, not errors), its chance level, and zero-shot accuracy
    of shape, colour, size and position on the single-object scenes.

    ``encode_text(list_of_str) -> [M, d]`` replaces the model's own text tower (e.g. a
    MiniLM-backed head); ``held_out`` words the prompts with held-out synonyms."""
    tok = world.Tokenizer()
    encode_text = encode_text or (lambda texts: model.encode_text(tok(texts)))
    img = _encode_images(model, data["image"])
    txt = in_chunks(encode_text, data["caption"])
    positives = world.matches(data["attrs"], data["full_spec"])
    out = metrics.retrieval(img, txt, ks=(1, 5), positives=positives)
    out["chance@1"] = positives.float().sum(1).mean().item() / len(positives)
    single = data["attrs"][:, 1, 0] < 0
    for j, attr in enumerate(("shape", "colour", "size", "position")):
        cls = encode_text(world.class_prompts(attr, held_out=held_out))
        out[attr] = metrics.zero_shot_accuracy(img[single], cls, data["attrs"][single, 0, j])
    out["gap"] = metrics.modality_gap(img, txt)
    return out

