"""Fine-tuning the last blocks of a trained mini-CLIP (lessons 02, 04 and 07), with the frozen
early blocks run once: fast on a CPU. What it minimises is an ``objectives.objective.Objective``."""
from __future__ import annotations

import copy
import weakref

import torch

from ...core import _validate
from ...objectives import losses
from ...training import train
from ... import world
from ...core.runtime import device, get_seed, settings
from ...models.interface import PromptableImage, PromptableText, require
from ...core.ops import in_chunks
from ...objectives.objective import Batch, Objective


def _keep_tokens(h: torch.Tensor, keep: float, g: torch.Generator) -> torch.Tensor:
    """A random view of token states ``[B, 1 + P, w]``: the class token and a random
    ``keep`` fraction of the P patch tokens of each row."""
    B, P = h.shape[0], h.shape[1] - 1
    k = max(1, round(keep * P))
    idx = torch.rand(B, P, generator=g).argsort(1)[:, :k].to(h.device) + 1
    return torch.cat([h[:, :1], h.gather(1, idx[..., None].expand(-1, -1, h.shape[2]))], 1)


def _check_args(model, data, objective, steps, batch_size, image_blocks, text_blocks):
    require("model.image_tower", getattr(model, "image_tower", None), PromptableImage)
    require("model.text_tower", getattr(model, "text_tower", None), PromptableText)
    if not isinstance(objective, Objective):
        raise ValueError(f"objective: got {type(objective).__name__}, expected an "
                         "objectives.objective.Objective (or None, CLIP's loss)")
    _validate.positive_int("steps", steps)
    _validate.positive_int("batch_size", batch_size)
    for name, blocks, tower in (("image_blocks", image_blocks, model.image_tower),
                                ("text_blocks", text_blocks, model.text_tower)):
        depth = len(tower.encoder.blocks)
        if not isinstance(blocks, int) or not 0 <= blocks <= depth:
            raise ValueError(f"{name}: got {blocks!r}, expected an integer from 0 to the tower's "
                             f"depth {depth}")
    if image_blocks == 0 and (objective.keep_patches or objective.tokens):
        raise ValueError("image_blocks: got 0 with an objective that reads views or tokens, "
                         "expected >= 1 (with no image block to train, a view cannot drop tokens "
                         "and only the class token's state is kept)")
    if objective.soft_targets and not {"attrs", "full_spec"} <= set(data):
        raise ValueError("data: soft targets need 'attrs' and 'full_spec', "
                         f"got keys {sorted(data)}")


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


# The frozen states of the last call, reused while its inputs are unchanged; one entry, public so
# that it can be seen and freed (``finetuning.LAST_STATES.clear()``).
LAST_STATES: dict = {}


def _cached_states(original, model, data, n, si, st, image_blocks, negative_ids, dev) -> dict:
    """``_frozen_states`` of ``model`` (the copy of ``original`` on ``dev``), remembered for the
    next call with the same ``original`` and data tensors, all unchanged since (their in-place
    version counters are part of the key), and the same ``n``, blocks and device: a lesson that
    fine-tunes several methods or seeds from one model computes them once. One entry is kept."""
    inputs = (original, data["image"], data["full_ids"], negative_ids)
    tensors = [*original.parameters(), *(x for x in inputs[1:] if x is not None)]
    key = (n, si, st, image_blocks, str(dev), tuple(t._version for t in tensors))
    refs = zip(LAST_STATES.get("refs", ()), inputs)
    hit = LAST_STATES.get("key") == key and all(r() is x for r, x in refs if x is not None)
    if not hit:
        # free the old states before computing new ones
        LAST_STATES.clear()
        states = _frozen_states(model, data, n, si, st, image_blocks, negative_ids, dev)
        LAST_STATES.update(key=key, states=states,
                     refs=tuple(weakref.ref(x) if x is not None else (lambda: None)
                                for x in inputs))
    return LAST_STATES["states"]


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


def finetune(model, data: dict, objective: Objective | None = None, *, steps: int,
             batch_size: int = 128, lr: float = 2e-4, seed: int | None = None,
             n_scenes: int | None = None, image_blocks: int = 1, text_blocks: int = 1,
             progress: bool = True, desc: str = "fine-tuning"):
    """Fine-tune a copy of ``model``: its last ``image_blocks`` / ``text_blocks`` blocks (0:
    none), final LayerNorm and projection of each tower, and the logit scale. The earlier
    blocks stay frozen, so their outputs are computed once for the first ``n_scenes``
    training scenes (default ``settings().finetune_scenes``): fast on a CPU.

    ``objective`` (an ``objectives.objective.Objective``; default CLIP's loss) says what to
    minimise, ``objective.loss(batch)``, and which extras each ``Batch`` carries: soft targets,
    the embeddings of hard-negative captions, the token outputs, two views of each image
    (SLIP). Runs on ``tutorlib.device()``; returns ``(model, history)`` with the model on the
    CPU. The frozen states stay in ``finetuning.LAST_STATES`` for the next call from the same
    model and data (``LAST_STATES.clear()`` frees them).
    """
    objective = Objective() if objective is None else objective
    _check_args(model, data, objective, steps, batch_size, image_blocks, text_blocks)
    seed = get_seed(seed)
    torch.manual_seed(seed)
    dev = device()
    si = len(model.image_tower.encoder.blocks) - image_blocks
    st = len(model.text_tower.encoder.blocks) - text_blocks
    n = min(len(data["image"]), n_scenes or settings().finetune_scenes)
    original, model = model, copy.deepcopy(model).eval().to(dev)      # checked first, then copied
    neg_ids, valid = objective.negatives or (None, None)
    h = _cached_states(original, model, data, n, si, st, image_blocks, neg_ids, dev)
    valid = None if valid is None else valid.to(dev)
    params = _train_only_last_blocks(model, si, st)
    g = torch.Generator().manual_seed(seed)

    def loss_fn(batch_idx):                     # the batch's scene indices, on the CPU
        return objective.loss(_batch(model, objective, h, data, batch_idx, valid, si, st, g))
    groups = [*train.decay_groups(params, 0.1),
              {"params": [model.logit_scale], "weight_decay": 0.0}]
    history = train.fit(loss_fn, groups, lambda step: torch.randint(n, (batch_size,), generator=g),
                        steps=steps, lr=lr, warmup=max(1, steps // 10),
                        after_step=lambda step: losses.clamp_logit_scale_(model.logit_scale),
                        desc=desc, progress=progress)
    model.requires_grad_(False)
    return model.cpu().eval(), history


def _batch(model, objective, h, data, batch_idx, valid, si, st, g) -> Batch:
    """One step's ``Batch`` from the frozen states: the embeddings, and the extras the objective
    reads (in the order they always drew random numbers: views last)."""
    img_t, txt_t = model.image_tower, model.text_tower
    idx = batch_idx.to(h["img"].device)
    i, t, extra = _encode(img_t, txt_t, h, idx, si, st, objective.tokens)
    b = Batch(i, t, model.logit_scale, **extra)
    if valid is not None:
        keep = idx[valid[idx]]
        b.negatives = txt_t.from_hidden(h["neg"][keep], h["neg_mask"][keep], st)
    if objective.soft_targets:
        b.targets = world.matches(data["attrs"][batch_idx], data["full_spec"][batch_idx])
        b.targets = b.targets.to(idx.device)
    if objective.keep_patches:
        b.views = tuple(img_t.from_hidden(_keep_tokens(h["img"][idx], objective.keep_patches, g),
                                          si) for _ in range(2))
    return b
