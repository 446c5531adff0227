"""The recipe of the course mini-CLIP, its training, and its cache entry."""
from __future__ import annotations

import math

import torch

from ...core import _validate, cache
from ...objectives import losses
from ... import models, world
from ...training import train
from ...core.runtime import device, get_seed, settings
from ...core.recipes import Recipe
from .data import clip_batches, training_config, training_data


def build_mini_clip(embed_dim: int | None = None, depth: int | None = None, tokenizer=None,
                    image_size: int | None = None,
                    patch_size: int | None = None) -> models.MiniCLIP:
    """A new, *untrained* mini-CLIP of the course's shape: tiny ViT + word-level text
    tower, ``settings().embed_dim`` wide and ``settings().depth`` deep (128 and 2 in
    ``quick``, 256 and 4 in ``full``). The trained, cached one is ``mini_clip()``."""
    tok = tokenizer or world.Tokenizer()
    embed_dim = settings().embed_dim if embed_dim is None else embed_dim
    depth = settings().depth if depth is None else depth
    return models.MiniCLIP(models.ImageTower(image_size, patch_size,
                                             embed_dim=embed_dim, depth=depth),
                           models.TextTower(len(tok), embed_dim=embed_dim, depth=depth,
                                            context_length=tok.context_length))


def recipe(**overrides) -> Recipe:
    """The recipe of the course mini-CLIP in the current profile: its hyperparameters, the
    world it trains on and this module's code (the cache key follows all three). The seed
    defaults to ``TUTORLIB_SEED``, so a whole course reruns under another seed."""
    cfg = settings()
    r = dict(steps=cfg.clip_steps, batch_size=cfg.clip_batch_size, lr=1e-3, text_lr_ratio=0.1,
             weight_decay=0.1, warmup=50, partial_frac=0.5, loss="soft", temperature=None,
             embed_dim=cfg.embed_dim, depth=cfg.depth, patch_size=cfg.patch_size, seed=None)
    r = _validate.overrides(r, overrides)
    r["seed"] = get_seed(r["seed"])          # None: TUTORLIB_SEED (default 0)
    return Recipe("mini-clip", r, inputs=(training_config(),), code=(__name__,))


def _build(r: Recipe):
    return build_mini_clip(embed_dim=r["embed_dim"], depth=r["depth"], patch_size=r["patch_size"])


def param_groups(model, lr: float, text_lr_ratio: float, weight_decay: float) -> list[dict]:
    """AdamW groups of a mini-CLIP: the image tower at ``lr``, the text tower at
    ``text_lr_ratio * lr``, a learnable temperature at ``lr``; weight decay on weights
    only, by open_clip's rule (``train.decay_groups``: no decay for gains, biases, the
    class token or the logit scale)."""
    groups = [*train.decay_groups(model.image_tower.parameters(), weight_decay, lr=lr),
              *train.decay_groups(model.text_tower.parameters(), weight_decay,
                                  lr=lr * text_lr_ratio)]
    if model.logit_scale.requires_grad:
        groups.append({"params": [model.logit_scale], "lr": lr, "weight_decay": 0.0})
    return groups


def batch_loss(model, batch, plain: bool = False) -> dict:
    """The recipe's loss on ``batch = (images [B, 3, H, W], ids [B, L], targets [B, B])``, moved
    to the model's device: the soft-target CLIP loss (``plain``: the diagonal InfoNCE of the
    original CLIP), and the logit scale to log."""
    dev = model.logit_scale.device
    images, ids, targets = (t.to(dev, non_blocking=True) for t in batch)
    img, txt, scale = model(images, ids)
    loss = losses.clip_loss(img, txt, scale, targets=None if plain else targets)
    return {"loss": loss, "logit_scale": scale.item()}


def train_step(model, optimizer, batch) -> float:
    """One step of the recipe: ``batch_loss``, backward, the optimiser's step, the clamp of the
    logit scale to [0, ln 100] (``train.step``, the body of ``train.fit``, which
    ``train_mini_clip`` runs). Returns the loss."""
    def clamp(_):
        losses.clamp_logit_scale_(model.logit_scale)
    return train.step(optimizer, lambda b: batch_loss(model, b), batch, after_step=clamp)[1]


def train_mini_clip(data: dict | None = None, progress: bool = True, r: Recipe | None = None,
                    **overrides):
    """Train a mini-CLIP from scratch with the recipe ``r`` (default: ``recipe(**overrides)``);
    return ``(model, history)``.

    ``loss="soft"`` uses the soft targets of ``clip_batches``; ``loss="plain"`` the
    diagonal InfoNCE of the original CLIP with full captions only. ``temperature=t``
    fixes the temperature at ``t`` (logit_scale = ln 1/t, not learned). Training runs on
    ``tutorlib.device()`` (a GPU when there is one); the model comes back on the CPU.
    """
    r = _validate.recipe_or_overrides(r, overrides, lambda: recipe(**overrides))
    _validate.one_of("loss", r["loss"], ("soft", "plain"))
    torch.manual_seed(get_seed(r["seed"]))
    data = training_data() if data is None else data
    model = _build(r)
    if r["temperature"] is not None:
        t = _validate.positive_number("temperature", r["temperature"])
        model.logit_scale.data.fill_(math.log(1 / t))
        model.logit_scale.requires_grad_(False)
    plain = r["loss"] == "plain"
    batches = clip_batches(data, r["batch_size"], 0.0 if plain else r["partial_frac"], r["seed"])
    model.to(device())

    groups = param_groups(model, r["lr"], r["text_lr_ratio"], r["weight_decay"])
    history = train.fit(lambda batch: batch_loss(model, batch, plain), groups, batches,
                        steps=r["steps"], lr=r["lr"], weight_decay=r["weight_decay"],
                        warmup=r["warmup"],
                        after_step=lambda step: losses.clamp_logit_scale_(model.logit_scale),
                        desc=f"mini-CLIP ({r['loss']} loss)", progress=progress)
    return model.cpu().eval(), history


def mini_clip(retrain: bool = False, progress: bool = True, **overrides):
    """The cached course mini-CLIP (``recipe(**overrides)``), trained on first use.

    Returns ``(model, history)``: the model in eval mode and its training history.
    ``retrain=True`` trains again and replaces the cache entry. A damaged entry is
    rebuilt, never trusted.
    """
    r = recipe(**overrides)

    def build():
        model, history = train_mini_clip(progress=progress, r=r)
        return model, {k: torch.tensor(v, dtype=torch.float64) for k, v in history.items()}
    model, extras = cache.cached_module(r.entry(), lambda: _build(r), build, retrain=retrain)
    return model.eval(), {k: v.tolist() for k, v in extras.items()}
