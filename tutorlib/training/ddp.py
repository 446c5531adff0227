"""Training across processes (lesson 09): ``DistributedDataParallel`` with the global batch's
negatives gathered with gradient (the exact loss), gathered without gradient (open_clip's
default: every gradient 1/W of the exact one), or each process's own.

    launch.run(data_parallel, 2, make_model, {"image": x, "text": y}, "gathered", 100, 128, 0)
    launch.run(data_parallel_runs, 2, {"exact": {"negatives": "gathered"}}, make_model, feats, 100, 128, 0)

``data_parallel_runs`` trains several runs one after the other in the same processes (one
launch, not one per run).
"""
from __future__ import annotations

import math

import torch

from ..core import _validate
from ..objectives import losses
from ..objectives.distributed import gathered_clip_loss
from . import train

NEGATIVES = ("gathered", "gathered, no gradient", "own")
OPTIMIZERS = {"sgd": 0.01, "adamw": 1e-3}          # name: default learning rate


def _optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "sgd":                   # an update proportional to the gradient: a scale shows
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)   # normalised: a scale hides


def data_parallel(rank: int, world_size: int, make_model, features: dict, negatives: str,
                  steps: int, batch_size: int, seed: int, lr: float | None = None,
                  warmup: int = 15, tau: float = 0.07, optimizer: str = "sgd") -> dict:
    """Train ``make_model()`` (the same weights in every process: seed inside it) for ``steps``
    steps of CLIP's loss at the fixed temperature ``tau``, its ``forward(image [B, w_i], text
    [B, w_t])`` returning two ``[B, d]`` embeddings. Every process draws the same random global
    batch of ``batch_size`` rows of ``features`` ``{"image": [N, w_i], "text": [N, w_t]}`` (the
    order drawn from ``seed``) and takes its ``batch_size / world_size`` of them; with
    ``world_size > 1`` the model runs under ``DistributedDataParallel``. ``negatives``:
    "gathered" (``gathered_clip_loss``, the global batch's loss, gathered with gradient),
    "gathered, no gradient" (the same loss, gathered without gradient with this process's rows
    put back, open_clip's default: every gradient is 1/W of the exact one) or "own"
    (``losses.clip_loss`` on this process's rows only). ``optimizer``: "sgd" (momentum 0.9,
    default ``lr`` 0.01), whose update scales with the gradient, or "adamw" (no weight decay,
    default ``lr`` 1e-3), which ignores a uniform gradient scale; warm-up then cosine decay.
    Returns ``{"loss": [steps] this process's losses, "state": the model's state_dict}``."""
    from torch.nn.parallel import DistributedDataParallel
    _validate.one_of("negatives", negatives, NEGATIVES)
    _validate.one_of("optimizer", optimizer, tuple(OPTIMIZERS))
    _validate.positive_int("steps", steps), _validate.positive_int("batch_size", batch_size)
    if not callable(make_model) or not isinstance(features, dict) \
            or not {"image", "text"} <= set(features):
        raise ValueError("make_model, features: expected a callable that builds the model and "
                         "a dict with 'image' and 'text' features")
    lr = OPTIMIZERS[optimizer] if lr is None else _validate.positive_number("lr", lr)
    model = make_model()
    net = DistributedDataParallel(model) if world_size > 1 else model
    g, per = torch.Generator().manual_seed(seed), batch_size // world_size
    scale = torch.tensor(math.log(1 / _validate.positive_number("tau", tau)))

    def loss_fn(step):
        idx = torch.randperm(len(features["text"]), generator=g)[:batch_size]
        idx = idx[rank * per:(rank + 1) * per]                       # this process's share
        zi, zt = net(features["image"][idx], features["text"][idx])
        if negatives != "own" and world_size > 1:
            return gathered_clip_loss(zi, zt, scale, with_grad=negatives == "gathered")
        return losses.clip_loss(zi, zt, scale)
    history = train.fit(loss_fn, None, range(steps), steps=steps, lr=lr, warmup=warmup,
                        optimizer=_optimizer(optimizer, model.parameters(), lr), progress=False)
    return {"loss": torch.tensor(history["loss"]), "state": model.state_dict()}


def data_parallel_runs(rank: int, world_size: int, runs: dict, make_model, features: dict,
                       steps: int, batch_size: int, seed: int) -> dict:
    """Several ``data_parallel`` runs one after the other in the same processes (one
    ``launch.run``, so the processes start once): ``runs`` is ``{name: {"negatives": ...,
    "optimizer": ..., and any other keyword of data_parallel}}``; returns ``{name: result}``."""
    if not isinstance(runs, dict) or not runs or not all(
            isinstance(kw, dict) and "negatives" in kw for kw in runs.values()):
        raise ValueError(f"runs: got {runs!r:.80}, expected a dict {{name: {{'negatives': ..., "
                         "'optimizer': ...}}")
    return {name: data_parallel(rank, world_size, make_model, features, kw["negatives"], steps,
                                batch_size, seed, **{k: v for k, v in kw.items() if k != "negatives"})
            for name, kw in runs.items()}
