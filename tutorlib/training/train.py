"""One training loop for the whole course, with a progress bar.

    history = fit(loss_fn, params, batches, steps=600, lr=1e-3)
    out, value = step(optimizer, loss_fn, batch)     # one update, for a loop of your own

``loss_fn(batch)`` returns a scalar loss, or a dict with ``"loss"`` and any other
scalars to log. ``batches`` is a callable ``batches(step) -> batch`` or an iterable
(cycled). The history is a dict of lists, one entry per step.
"""
from __future__ import annotations

import itertools
import math
import time

import torch
from tqdm.auto import tqdm

from ..core import _validate


def _cycle(batches):
    if callable(batches):
        return (batches(step) for step in itertools.count())
    try:
        first = iter(batches)
    except TypeError:
        raise ValueError(f"batches: got {type(batches).__name__}, expected a callable "
                         "batches(step) or an iterable of batches") from None
    items = []

    def gen():
        for b in first:
            items.append(b)
            yield b
        if not items:
            raise ValueError("batches: the iterable was empty")
        while True:
            yield from items
    return gen()


def _rank() -> int:
    """This process's rank under ``torch.distributed`` (0 outside it): only rank 0 draws a bar."""
    return (torch.distributed.get_rank()
            if torch.distributed.is_available() and torch.distributed.is_initialized() else 0)


def lr_factor(step: int, steps: int, warmup: int) -> float:
    """The schedule: linear warm-up to 1 over ``warmup`` steps, then cosine decay to 0."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def decay_groups(params, weight_decay: float, **group) -> list[dict]:
    """Two AdamW param groups, following open_clip's rule (``open_clip_train/main.py``):
    tensors of two or more dimensions (weights, embeddings) decay by ``weight_decay``;
    gains, biases and every other tensor of fewer dimensions (class token, logit scale)
    get none, since decaying a LayerNorm gain or a temperature toward 0 has no meaning.
    ``group``: more settings of both groups (e.g. ``lr=``). Empty groups are left out."""
    _validate.non_negative_number("weight_decay", weight_decay)
    params = [p for p in params if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay, **group},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0, **group}]
    return [g for g in groups if g["params"]]


def _scalar_loss(out, step: int) -> tuple[torch.Tensor, float]:
    """The loss tensor in ``loss_fn``'s output and its value (read once: one device sync)."""
    loss = out["loss"] if isinstance(out, dict) else out
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        raise ValueError("loss_fn: expected it to return a scalar tensor or a dict with 'loss'")
    value = loss.item()
    if not math.isfinite(value):
        raise FloatingPointError(f"loss_fn: the loss became {value} at step {step}; try a lower lr")
    return loss, value


def step(optimizer: torch.optim.Optimizer, loss_fn, batch, after_step=None, index: int = 0):
    """One update, the body of every training loop in the course: ``out = loss_fn(batch)``
    (a scalar loss, or a dict with ``"loss"``), the loss checked for NaN or inf, its backward
    pass, ``optimizer.step()``, then ``after_step(index)``. Returns ``(out, loss value)``."""
    out = loss_fn(batch)
    loss, value = _scalar_loss(out, index)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if after_step is not None:
        after_step(index)
    return out, value


def fit(loss_fn, params, batches, *, steps: int, lr: float = 1e-3, weight_decay: float = 0.0,
        warmup: int = 0, optimizer: torch.optim.Optimizer | None = None, after_step=None,
        log_every: int = 10, desc: str = "training", progress: bool = True) -> dict[str, list]:
    """Run ``steps`` AdamW steps of ``loss_fn`` over ``batches``; return the history.

    ``params``: tensors, or param groups (dicts, e.g. ``{"params": [...], "lr": ...,
    "weight_decay": 0}``). Learning rate: ``lr_factor`` (linear warm-up over ``warmup``
    steps, then cosine decay to zero). ``after_step(step)`` runs after each update (e.g.
    to clamp the logit scale). The history has ``loss``, every other scalar ``loss_fn``
    returned, ``lr`` and the wall ``time`` in seconds. The loss is checked for NaN or inf
    at every step (not the tensors that made it). Inside ``torch.distributed`` processes only
    rank 0 shows the progress bar.
    """
    if not callable(loss_fn):
        raise ValueError(f"loss_fn: got {type(loss_fn).__name__}, expected a callable")
    _validate.positive_int("steps", steps)
    _validate.positive_number("lr", lr)
    if optimizer is None:
        params = list(params)
        if not params:
            raise ValueError("params: got nothing to train, expected tensors or param groups")
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    base = [g["lr"] for g in optimizer.param_groups]
    history: dict[str, list] = {"loss": [], "lr": [], "time": []}
    stream, start = _cycle(batches), time.perf_counter()
    bar = tqdm(range(steps), desc=desc, disable=not progress or _rank() != 0, leave=True)
    for i in bar:
        for group, lr0 in zip(optimizer.param_groups, base):
            group["lr"] = lr0 * lr_factor(i, steps, warmup)
        out, value = step(optimizer, loss_fn, next(stream), after_step, i)
        history["loss"].append(value)
        history["lr"].append(optimizer.param_groups[0]["lr"])
        history["time"].append(time.perf_counter() - start)
        for k, v in (out.items() if isinstance(out, dict) else ()):
            if k != "loss":
                history.setdefault(k, []).append(float(v))
        if i % log_every == 0 or i == steps - 1:
            bar.set_postfix(loss=f"{value:.3f}", refresh=False)   # redrawn at tqdm's own pace
    bar.close()
    return history
