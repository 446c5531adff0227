"""Fine-tuning the last blocks of a trained mini-CLIP (lessons 02 and 04), with the frozen
early blocks run once: fast on a CPU."""
from __future__ import annotations

import copy
import math
import weakref

import torch

from ...core import _validate
from ...objectives import losses
from ...training import train
from ... import world
from ...core.runtime import device, get_seed, settings
from ...models.interface import PromptableImage, PromptableText, require
from ...core.ops import in_chunks


def _keep_tokens(h: torch.Tensor, keep: float, g: torch.Generator) -> torch.Tensor:
    """A random view of token states ``[B, 1 + P, w]``: the class token and a random
    ``keep`` fraction of the P patch tokens of each row."""
    B, P = h.shape[0], h.shape[1] - 1
    k = max(1, round(keep * P))
    idx = torch.rand(B, P, generator=g).argsort(1)[:, :k].to(h.device) + 1
    return torch.cat([h[:, :1], h.gather(1, idx[..., None].expand(-1, -1, h.shape[2]))], 1)


def _check_args(model, steps, batch_size, intra_weight, keep_patches, image_blocks, text_blocks,
                tokens=False):
    require("model.image_tower", getattr(model, "image_tower", None), PromptableImage)
    require("model.text_tower", getattr(model, "text_tower", None), PromptableText)
    _validate.positive_int("steps", steps)
    _validate.positive_int("batch_size", batch_size)
    _validate.non_negative_number("intra_weight", intra_weight)
    if not 0.0 < float(keep_patches) < 1.0:
        raise ValueError(f"keep_patches: got {keep_patches!r}, expected a fraction in (0, 1)")
    if intra_weight and image_blocks == 0:
        raise ValueError("intra_weight: needs image_blocks >= 1 "
                         "(a view drops tokens before a trained block)")
    if tokens and image_blocks == 0:
        raise ValueError("tokens: got True with image_blocks=0, expected image_blocks >= 1 "
                         "(with no image block to train only the class token's state is kept)")
    for name, blocks, tower in (("image_blocks", image_blocks, model.image_tower),
                                ("text_blocks", text_blocks, model.text_tower)):
        depth = len(tower.encoder.blocks)
        if not isinstance(blocks, int) or not 0 <= blocks <= depth:
            raise ValueError(f"{name}: got {blocks!r}, expected an integer from 0 to the tower's "
                             f"depth {depth}")


def _encode(img_t, txt_t, h: dict, idx, si: int, st: int, tokens: bool):
    """The batch ``idx``'s pooled embeddings from the frozen states, and with ``tokens`` also
    the projected token outputs: ``image_tokens`` ``[B, P, d]`` (class token dropped),
    ``text_tokens`` ``[B, L, d]`` and ``text_mask`` ``[B, L]``."""
    mask = h["txt_mask"][idx]
    if not tokens:
        return img_t.from_hidden(h["img"][idx], si), txt_t.from_hidden(h["txt"][idx], mask, st), {}
    i, it = img_t.from_hidden(h["img"][idx], si, return_tokens=True)
    t, tt = txt_t.from_hidden(h["txt"][idx], mask, st, return_tokens=True)
    return i, t, {"image_tokens": img_t.proj(it[:, 1:]), "text_tokens": txt_t.proj(tt),
                  "text_mask": mask}


_LAST: dict = {}      # the frozen states of the last call, reused while its inputs are unchanged


def _cached_states(original, model, data, n, si, st, image_blocks, negative_ids, dev) -> dict:
    """``_frozen_states`` of ``model`` (the copy of ``original`` on ``dev``), remembered for the
    next call with the same ``original`` and data tensors, all unchanged since (their in-place
    version counters are part of the key), and the same ``n``, blocks and device: a lesson that
    fine-tunes several methods or seeds from one model computes them once. One entry is kept."""
    inputs = (original, data["image"], data["full_ids"], negative_ids)
    tensors = [*original.parameters(), *(x for x in inputs[1:] if x is not None)]
    key = (n, si, st, image_blocks, str(dev), tuple(t._version for t in tensors))
    hit = _LAST.get("key") == key and all(r() is x for r, x in zip(_LAST.get("refs", ()), inputs)
                                          if x is not None)
    if not hit:
        # free the old states before computing new ones
        _LAST.clear()
        states = _frozen_states(model, data, n, si, st, image_blocks, negative_ids, dev)
        _LAST.update(key=key, states=states,
                     refs=tuple(weakref.ref(x) if x is not None else (lambda: None)
                                for x in inputs))
    return _LAST["states"]


@torch.no_grad()
def _frozen_states(model, data, n, si, st, image_blocks, negative_ids, dev) -> dict:
    """The outputs of the frozen early blocks for the first ``n`` scenes, computed once:
    images before block ``si``, captions (and hard negatives) before block ``st``."""
    img_t, txt_t = model.image_tower, model.text_tower
    s = {"img": in_chunks(lambda b: img_t.hidden(world.images_float(b.to(dev)), si),
                          data["image"][:n])}
    if image_blocks == 0:
        s["img"] = s["img"][:, :1]                      # no block left: only CLS is read
    s["txt"], s["txt_mask"] = txt_t.hidden(data["full_ids"][:n].to(dev), st)
    if negative_ids is not None:
        s["neg"], s["neg_mask"] = txt_t.hidden(negative_ids[:n].to(dev), st)
    return s


def _train_only_last_blocks(model, si: int, st: int) -> list[torch.nn.Parameter]:
    """Freeze everything but blocks ``si:`` / ``st:``, the final LayerNorms, the projections
    (returned) and the logit scale."""
    model.requires_grad_(False)
    params = [p for tower, s in ((model.image_tower, si), (model.text_tower, st))
              for mod in (*tower.encoder.blocks[s:], tower.encoder.ln, tower.proj)
              for p in mod.parameters()]
    for p in params:
        p.requires_grad_(True)
    model.logit_scale.requires_grad_(True)
    return params


def finetune(model, data: dict, objective=None, *, steps: int, batch_size: int = 128,
             lr: float = 2e-4, seed: int | None = None, n_scenes: int | None = None,
             negative_ids: torch.Tensor | None = None, negative_valid: torch.Tensor | None = None,
             image_blocks: int = 1, text_blocks: int = 1, intra_weight: float = 0.0,
             keep_patches: float = 0.5, soft_targets: bool = False, tokens: bool = False,
             progress: bool = True, desc: str = "fine-tuning"):
    """Fine-tune a copy of ``model``: its last ``image_blocks`` / ``text_blocks`` blocks (0:
    none), final LayerNorm and projection of each tower, and the logit scale. The earlier
    blocks stay frozen, so their outputs are computed once for the first ``n_scenes``
    training scenes (default ``settings().finetune_scenes``): fast on a CPU.

    ``objective(image_emb, text_emb, logit_scale, negatives)`` returns the loss (default
    ``losses.clip_loss``); ``negatives`` are the embeddings ``[K, d]`` of the batch's extra
    captions ``negative_ids[idx][negative_valid[idx]]`` when given, else ``None``.
    ``soft_targets=True`` also passes ``targets=world.matches(attrs, full_spec)`` of the
    batch ``[B, B]`` (every caption a scene satisfies, as in lesson 01), so that two scenes
    with the same caption are not each other's negatives; ``data`` then needs ``attrs``
    and the specs ``full_spec`` of its ``full_ids``.
    ``intra_weight > 0`` adds SLIP's image-image term (Mu et al. 2022): two views of each
    image keeping a random ``keep_patches`` fraction of the patch tokens (and the class
    token) at the first trained block, ``+ intra_weight * clip_loss(view1, view2, ln 10)``.
    ``tokens=True`` also passes the token outputs, ``image_tokens`` ``[B, P, d]``, ``text_tokens``
    ``[B, L, d]`` and ``text_mask`` ``[B, L]``, as keywords (FILIP's loss, lesson 07).
    Runs on ``tutorlib.device()``; returns ``(model, history)`` with the model on the CPU.
    """
    _check_args(model, steps, batch_size, intra_weight, keep_patches, image_blocks, text_blocks, tokens)
    seed = get_seed(seed)
    if soft_targets and not {"attrs", "full_spec"} <= set(data):
        raise ValueError(f"data: soft_targets=True needs 'attrs' and 'full_spec', got keys {sorted(data)}")
    objective = objective or (lambda i, t, s, neg, targets=None:
                              losses.clip_loss(i, t, s, targets=targets))
    torch.manual_seed(seed)
    dev = device()
    si = len(model.image_tower.encoder.blocks) - image_blocks
    st = len(model.text_tower.encoder.blocks) - text_blocks
    n = min(len(data["image"]), n_scenes or settings().finetune_scenes)
    original, model = model, copy.deepcopy(model).eval().to(dev)      # checked first, then copied
    img_t, txt_t = model.image_tower, model.text_tower
    h = _cached_states(original, model, data, n, si, st, image_blocks, negative_ids, dev)
    valid = None if negative_ids is None else negative_valid.to(dev)
    params = _train_only_last_blocks(model, si, st)
    g = torch.Generator().manual_seed(seed)

    def loss_fn(batch_idx):                     # the batch's scene indices, on the CPU
        idx = batch_idx.to(dev)
        i, t, extra = _encode(img_t, txt_t, h, idx, si, st, tokens)
        keep = None if valid is None else idx[valid[idx]]
        neg = None if keep is None else txt_t.from_hidden(h["neg"][keep], h["neg_mask"][keep], st)
        if soft_targets:
            targets = world.matches(data["attrs"][batch_idx], data["full_spec"][batch_idx]).to(dev)
            loss = objective(i, t, model.logit_scale, neg, targets=targets, **extra)
        else:
            loss = objective(i, t, model.logit_scale, neg, **extra)
        if intra_weight:
            views = [img_t.from_hidden(_keep_tokens(h["img"][idx], keep_patches, g), si) for _ in range(2)]
            loss = loss + intra_weight * losses.clip_loss(*views, math.log(10.0))
        return loss
    history = train.fit(loss_fn, [*train.decay_groups(params, 0.1),
                                  {"params": [model.logit_scale], "weight_decay": 0.0}],
                        lambda step: torch.randint(n, (batch_size,), generator=g), steps=steps,
                        lr=lr, warmup=max(1, steps // 10),
                        after_step=lambda step: losses.clamp_logit_scale_(model.logit_scale),
                        desc=desc, progress=progress)
    model.requires_grad_(False)
    return model.cpu().eval(), history
