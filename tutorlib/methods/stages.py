"""Lesson 05's bench around OneEncoder's stages (``progressive``): one part of a token-features
dict, zero-shot classification through the text path, and what one training step costs end to
end (every tower) beside one stage-1 step on cached tokens.

    part = rows(feats["image"], range(0, 2000))                      # {"tokens", "mask"}
    zero_shot(model, audio_emb, prompt_feats, labels)                # {attribute: accuracy}
    t_e2e, t_stage1 = step_times(model, minilm, captions, images, feats["image"], feats["text"])
"""
from __future__ import annotations

import copy

import torch

from ..core import _validate
from ..evaluation import metrics
from ..objectives import losses
from ..training import costs
from . import progressive


def rows(feats: dict, r: range) -> dict:
    """The rows ``r`` (a ``range`` of step 1) of a features dict ``{"tokens": [N, L, w],
    "mask": [N, L] or None}``, as the same dict of ``[len(r), ...]``."""
    if not isinstance(feats, dict) or "tokens" not in feats:
        raise ValueError(f"feats: got {type(feats).__name__}, expected a dict with 'tokens' "
                         "(and 'mask'), as unimodal.token_features gives")
    if not isinstance(r, range) or r.step != 1:
        raise ValueError(f"r: got {r!r}, expected a range of consecutive rows")
    mask = feats.get("mask")
    return {"tokens": feats["tokens"][r.start:r.stop],
            "mask": None if mask is None else mask[r.start:r.stop]}


def zero_shot(model, emb: torch.Tensor, prompt_feats: dict, labels: dict) -> dict[str, float]:
    """Zero-shot accuracy per attribute of embeddings ``emb`` ``[N, d]`` (any modality of
    ``model``, a ``progressive.OneEncoder``), classified by the text embeddings of one prompt
    per class: ``prompt_feats`` ``{attribute: token features of its C prompts}``, ``labels``
    ``{attribute: [N] class indices}`` (``metrics.zero_shot_accuracy``)."""
    if not (isinstance(prompt_feats, dict) and isinstance(labels, dict)) \
            or set(prompt_feats) - set(labels):
        raise ValueError("prompt_feats, labels: expected two dicts keyed by attribute, a label "
                         "tensor for every attribute with prompts")
    return {a: metrics.zero_shot_accuracy(emb, progressive.embed(model, "text", feats), labels[a])
            for a, feats in prompt_feats.items()}


def _check_steps(stage1_model, captions, images, image_feats, text_feats) -> int:
    if not isinstance(stage1_model, progressive.OneEncoder):
        raise ValueError(f"stage1_model: got {type(stage1_model).__name__}, "
                         "expected a progressive.OneEncoder")
    if not isinstance(captions, (list, tuple)) or not captions:
        raise ValueError(f"captions: got {type(captions).__name__}, expected a list of strings")
    _validate.tensor("images", images, 4)
    if len(images) != len(captions):
        raise ValueError(f"images: got {len(images)}, expected one per caption ({len(captions)})")
    for name, f in (("image_feats", image_feats), ("text_feats", text_feats)):
        if not isinstance(f, dict) or "tokens" not in f or len(f["tokens"]) < len(captions):
            raise ValueError(f"{name}: expected token features with at least {len(captions)} rows")
    return len(captions)


def step_times(stage1_model, minilm, captions: list, images: torch.Tensor, image_feats: dict,
               text_feats: dict) -> tuple[float, float]:
    """Seconds per training step (``costs.step_time``) of a copy of ``stage1_model``, at the batch
    of the ``B`` pairs ``captions`` and ``images`` ``[B, 3, H, W]``: end to end, MiniLM
    (``minilm``, from ``load_minilm``) and a fresh image backbone running forward and backward
    under the heads and the UP; and stage 1 on cached tokens, the first ``B`` rows of
    ``image_feats`` and ``text_feats``. MiniLM is left frozen and in eval mode afterwards."""
    from ..zoo import unimodal
    b = _check_steps(stage1_model, captions, images, image_feats, text_feats)
    image_backbone = unimodal.make_backbone("image")
    up = copy.deepcopy(stage1_model).requires_grad_(True).train()
    minilm.model.train().requires_grad_(True)
    mask = lambda f: None if f.get("mask") is None else f["mask"][:b]        # noqa: E731

    def end_to_end():                   # every tower trains: MiniLM and the image backbone run too
        batch = minilm.tokenizer(captions, padding=True, return_tensors="pt")
        hidden = minilm.model(**batch).last_hidden_state
        txt = up.encode("text", hidden, batch["attention_mask"].bool())
        img = up.encode("image", image_backbone(images, return_tokens=True)[1])
        losses.clip_loss(img, txt, torch.tensor(progressive.LOGIT_SCALE)).backward()

    def stage1():                                       # stage 1 on cached tokens
        img = up.encode("image", image_feats["tokens"][:b], mask(image_feats))
        txt = up.encode("text", text_feats["tokens"][:b], mask(text_feats))
        losses.clip_loss(img, txt, torch.tensor(progressive.LOGIT_SCALE)).backward()
    try:
        return costs.step_time(end_to_end), costs.step_time(stage1)
    finally:
        minilm.model.eval().requires_grad_(False)
