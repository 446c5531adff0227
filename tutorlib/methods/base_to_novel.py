"""Lesson 03's testbed for prompt learning on a frozen model: shape-colour classes split by
shape into base and novel halves, their pictures and frozen features, and the runs of the
base-to-novel protocol (Zhou et al. 2022, CoCoOp): train on a few pictures of the base
classes, test on base and on novel classes.

    base_names = class_names("base")                          # ["red circle", ...]: 18 classes
    images, labels = shape_colour_scenes("base", 2000, seed=0) # uint8 [N, 3, H, W], [N] in 0..17
    feats = image_features(model, images)                     # [N, d], computed once
    coop = CoOpRuns(model.text_tower, tok, base_names, novel_names, scale,
                    pool=(pool_feats, pool_y), base=(base_feats, base_y),
                    novel=(novel_feats, novel_y),
                    steps=200, lr=2e-3, warmup=10, sgd=dict(batch=32, epochs=200, lr=2e-3,
                                                         momentum=0.9, weight_decay=5e-4))
    learner, trace = coop.train(16, seed)                     # CoOp on 16 pictures per base class
    base_acc, novel_acc = coop.accuracies(learner)
    runs = PromptedRuns(coop, model, states, frozen_text, prompt_layer=1, batch_size=64)
    net, history = runs.train(dict(visual=True, lam=10.0), seed)
    runs.evaluate(net)                                        # base, novel, H, shifts, drifts
    gain_ratio(control, method, baseline)   # a control's share of a method's gain, per-run lists

The towers stay frozen throughout; only prompts (and RESTORE's adapters) train.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import world
from ..core import _validate
from ..core.ops import in_chunks
from ..evaluation import metrics
from ..training import train
from .paired import gain_ratio, mean_interval, t975  # noqa: F401  (lesson 03 reads them here)
from .prompts import PromptLearner, class_logits, harmonic_mean
from .restore import MultimodalPrompts, feature_shift, prompt_gram_shift, train_multimodal_prompts

HALVES = ("base", "novel")


def class_names(half: str) -> list[str]:
    """The class names of one half, ``"colour shape"``, shape by shape (``world.BASE_SHAPES``
    or ``world.NOVEL_SHAPES``) and every colour within a shape: label ``k`` of
    ``shape_colour_scenes`` is name ``k``."""
    _validate.one_of("half", half, HALVES)
    shapes = world.BASE_SHAPES if half == "base" else world.NOVEL_SHAPES
    return [f"{colour} {world.SHAPES[s]}" for s in shapes for colour in world.COLOURS]


def shape_colour_scenes(half: str, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` single-object scenes of the world's ``half`` split: their images, uint8
    ``[n, 3, H, W]``, and class labels ``[n]`` indexing ``class_names(half)``."""
    _validate.one_of("half", half, HALVES)
    _validate.positive_int("n", n)
    t = world.tensors(world.load_world(half, n=n, seed=seed), ["image", "shape", "colour"])
    shapes = list(world.BASE_SHAPES if half == "base" else world.NOVEL_SHAPES)
    labels = torch.tensor([shapes.index(s) * len(world.COLOURS) + c
                           for s, c in zip(t["shape"].tolist(), t["colour"].tolist())])
    return t["image"], labels


@torch.no_grad()
def image_features(model: nn.Module, images: torch.Tensor, chunk_size: int = 500) -> torch.Tensor:
    """The frozen model's image embeddings ``[N, d]`` of pictures ``[N, 3, H, W]`` (uint8 or
    floats in [0, 1]), ``chunk_size`` at a time on the model's device."""
    _validate.tensor("images", images, 4, floating=False)
    device = next(model.parameters()).device
    return in_chunks(lambda x: model.encode_image(world.images_float(x).to(device)), images,
                     chunk_size)


@torch.no_grad()
def image_states(image_tower: nn.Module, images: torch.Tensor, layer: int,
                 chunk_size: int = 500) -> torch.Tensor:
    """The image tower's token states before block ``layer`` ``[N, 1 + P, width]``, computed
    once (the blocks before a prompt layer never see the prompts): what
    ``restore.MultimodalPrompts`` takes as ``states``."""
    _validate.tensor("images", images, 4, floating=False)
    device = next(image_tower.parameters()).device
    return in_chunks(lambda x: image_tower.hidden(world.images_float(x).to(device), layer),
                     images, chunk_size)


def _labels(name: str, labels) -> torch.Tensor:
    _validate.tensor(name, labels, 1, floating=False)
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"{name}: got dtype {labels.dtype}, expected integer class labels")
    return labels


def few_shot_indices(labels: torch.Tensor, shots: int, seed: int, n_classes: int) -> torch.Tensor:
    """Indices ``[n_classes * shots]`` into ``labels`` ``[N]``: ``shots`` random rows of each
    class ``0 .. n_classes - 1``, class by class, drawn from a generator seeded with ``seed``
    (every row of a class that has fewer, none of a class that has none)."""
    _labels("labels", labels)
    _validate.positive_int("shots", shots)
    _validate.positive_int("n_classes", n_classes)
    g = torch.Generator().manual_seed(seed)
    rows = [torch.nonzero(labels == c)[:, 0] for c in range(n_classes)]
    return torch.cat([r[torch.randperm(len(r), generator=g)[:shots]] for r in rows])


def sgd_recipe(n: int, seed: int, *, batch: int, epochs: int, lr: float, momentum: float,
               weight_decay: float, device=None):
    """CoOp's own optimiser and budget for ``n`` training rows: SGD with momentum, batches of
    ``batch`` in a fresh order each epoch (seeded by ``seed`` and the epoch), ``epochs``
    epochs, one warm-up epoch. As Dassl's train loader (``drop_last`` when ``n >= batch``),
    an epoch is ``n // batch`` full batches and the remainder of each epoch's order is
    dropped; with ``n < batch`` an epoch is one batch of all ``n``. Returns
    ``(steps, warmup, batches, make_optimizer)`` for ``train.fit``: ``batches(step)`` gives
    the step's row indices, ``make_optimizer(params)`` the SGD optimiser."""
    for name, v in (("n", n), ("batch", batch), ("epochs", epochs)):
        _validate.positive_int(name, v)
    per_epoch = max(1, n // batch)

    def batches(step):
        g = torch.Generator().manual_seed(seed * 1000 + step // per_epoch)   # one order per epoch
        order = torch.randperm(n, generator=g)
        return order[step % per_epoch * batch:][:batch].to(device)

    def make_optimizer(params):
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return epochs * per_epoch, per_epoch, batches, make_optimizer


def _pair(name: str, pair) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise ValueError(f"{name}: got {type(pair).__name__}, "
                         "expected (features [N, d], labels [N])")
    feats, labels = pair
    _validate.tensor(f"{name}[0]", feats, 2, finite=False)
    _labels(f"{name}[1]", labels)
    _validate.same_rows(f"{name}[0]", feats, f"{name}[1]", labels)
    return feats, labels


class CoOpRuns:
    """CoOp (Zhou et al. 2022) runs on fixed image features, for a frozen ``text_tower`` and its
    ``logit_scale`` (the log of the scale): the context trains on the ``base_names`` classes
    and is tested on them and on the ``novel_names`` classes.

    ``pool``, ``base``, ``novel``: each ``(image features [N, d], labels [N])``, the pool of
    base-class pictures the few-shot sets are drawn from, and the base and novel test
    pictures (labels index ``base_names`` or ``novel_names``). ``steps``, ``lr``, ``warmup``:
    the AdamW shortcut's budget (full batches); ``sgd``: CoOp's own recipe, the keywords of
    ``sgd_recipe`` (``batch``, ``epochs``, ``lr``, ``momentum``, ``weight_decay``)."""

    def __init__(self, text_tower: nn.Module, tokenizer, base_names, novel_names, logit_scale, *,
                 pool, base, novel, steps: int, lr: float, warmup: int, sgd: dict | None = None):
        self.pool, self.base = _pair("pool", pool), _pair("base", base)
        self.novel = _pair("novel", novel)
        for name, names in (("base_names", base_names), ("novel_names", novel_names)):
            if not isinstance(names, (list, tuple)) or not names:
                raise ValueError(f"{name}: got {names!r}, "
                                 "expected a non-empty list of class names")
        self.text_tower, self.tokenizer = text_tower, tokenizer
        self.base_names, self.novel_names = list(base_names), list(novel_names)
        self.logit_scale = logit_scale
        self.steps, self.warmup = _validate.positive_int("steps", steps), warmup
        self.lr = _validate.positive_number("lr", lr)
        self.sgd = sgd
        self.device = self.pool[0].device

    def few_shot(self, shots: int, run_seed: int) -> torch.Tensor:
        """Indices into the pool: ``shots`` random pictures of every base class."""
        return few_shot_indices(self.pool[1], shots, run_seed, len(self.base_names))

    @torch.no_grad()
    def accuracies(self, learner: PromptLearner) -> tuple[float, float]:
        """Base and novel accuracy of a learned context on the test pictures (the same
        context around the novel class names for the second)."""
        return (metrics.zero_shot_accuracy(self.base[0], learner(), self.base[1]),
                metrics.zero_shot_accuracy(self.novel[0], learner.for_classes(self.novel_names)(),
                                           self.novel[1]))

    def sgd_recipe(self, n: int, run_seed: int):
        """``sgd_recipe`` with this run's ``sgd`` settings, on its device."""
        if self.sgd is None:
            raise ValueError("sgd: got None, expected CoOp's SGD settings to run optimizer='sgd'")
        return sgd_recipe(n, run_seed, device=self.device, **self.sgd)

    def train(self, shots: int, run_seed: int, n_ctx: int = 4, init: str | None = "a photo of a",
              trace_every: int = 0, optimizer: str = "adamw", position: str = "end"):
        """CoOp on ``shots`` pictures per base class: the context of a ``PromptLearner``
        (``n_ctx`` vectors from ``init``, class name at ``position``) trained by the
        cross-entropy of ``class_logits`` at the frozen scale, with full-batch AdamW
        (``optimizer="adamw"``) or CoOp's SGD recipe (``"sgd"``). Returns the learner and
        its trace: ``(step, base accuracy, novel accuracy, ||ctx - ctx_0||)`` every
        ``trace_every`` steps and after the last (none if 0)."""
        _validate.one_of("optimizer", optimizer, ("adamw", "sgd"))
        idx = self.few_shot(shots, run_seed).to(self.device)
        x, y = self.pool[0][idx], self.pool[1].to(self.device)[idx]
        torch.manual_seed(run_seed)
        learner = PromptLearner(self.text_tower, self.tokenizer, self.base_names, n_ctx=n_ctx,
                                init=init, position=position).to(self.device)
        ctx0, trace = learner.ctx.detach().clone(), []
        if optimizer == "sgd":
            steps, warmup, batches, make = self.sgd_recipe(len(y), run_seed)
        else:                                   # full batches; train.fit makes the AdamW
            steps, warmup = self.steps, self.warmup
            batches, make = (lambda step: slice(None)), (lambda params: None)

        def after_step(step):                   # the last step is always traced
            if trace_every and ((step + 1) % trace_every == 0 or step + 1 == steps):
                drift = (learner.ctx - ctx0).norm().item()
                trace.append((step + 1, *self.accuracies(learner), drift))
        train.fit(lambda b: F.cross_entropy(class_logits(x[b], learner(), self.logit_scale), y[b]),
                  [learner.ctx], batches, steps=steps, lr=self.lr, warmup=warmup,
                  optimizer=make([learner.ctx]), after_step=after_step, progress=False)
        return learner, trace


class PromptedRuns:
    """RESTORE's rows (``restore.MultimodalPrompts``) on the testbed of ``coop`` (its pool,
    test pictures, class names, scale and budget), for the frozen ``model``: ``states`` holds
    the image tower's token states before ``prompt_layer`` for ``"pool"``, ``"base"`` and
    ``"novel"`` (``image_states``), ``frozen_text`` ``[C, d]`` the base classes' hand-made
    prompt features; each step trains on ``batch_size`` of the few-shot pictures."""

    def __init__(self, coop: CoOpRuns, model: nn.Module, states: dict, frozen_text: torch.Tensor,
                 *, prompt_layer: int, batch_size: int):
        if not isinstance(coop, CoOpRuns):
            raise ValueError(f"coop: got {type(coop).__name__}, expected a CoOpRuns")
        for half, (feats, _) in (("pool", coop.pool), ("base", coop.base), ("novel", coop.novel)):
            if not isinstance(states, dict) or len(states.get(half, ())) != len(feats):
                raise ValueError(f"states: expected a dict with {half!r}: one row per {half} "
                                 f"picture ({len(feats)})")
        _validate.tensor("frozen_text", frozen_text, 2, finite=False)
        self.coop, self.model, self.states, self.frozen_text = coop, model, states, frozen_text
        self.prompt_layer = prompt_layer
        self.batch_size = _validate.positive_int("batch_size", batch_size)

    def train(self, setting: dict, run_seed: int, shots: int = 16):
        """One method on ``shots`` pictures per base class: ``setting`` holds the
        consistency weight ``lam`` and ``MultimodalPrompts``' keywords (``visual``,
        ``r_text``, ``r_image``). Returns the net and its training history."""
        if not isinstance(setting, dict) or "lam" not in setting:
            raise ValueError(f"setting: got {setting!r}, expected a dict with 'lam' and "
                             "MultimodalPrompts' keywords")
        c = self.coop
        idx = c.few_shot(shots, run_seed).to(c.device)
        torch.manual_seed(run_seed)
        parts = {k: v for k, v in setting.items() if k != "lam"}
        net = MultimodalPrompts(self.model, c.tokenizer, c.base_names,
                                prompt_layer=self.prompt_layer, **parts).to(c.device)
        history = train_multimodal_prompts(
            net, self.states["pool"][idx], c.pool[0][idx], c.pool[1].to(c.device)[idx],
            self.frozen_text, logit_scale=c.logit_scale, lam=setting["lam"], steps=c.steps,
            batch_size=self.batch_size, lr=c.lr, warmup=c.warmup, seed=run_seed)
        return net, history

    @torch.no_grad()
    def evaluate(self, net: MultimodalPrompts) -> dict[str, float]:
        """Base and novel accuracy (after the adapters) and their H; each modality's feature
        shift on the base test pictures (before them) and its imbalance; the context's
        drift from its start; the released code's stand-in, the Gram-norm ratio of the text
        and visual prompt tokens (1 where there are no visual prompts)."""
        c, s = self.coop, self.states
        cls_b, img_b = net(s["base"], c.base[0])
        cls_n, img_n = net(s["novel"], c.novel[0], classnames=c.novel_names)
        (cls_ba, img_ba), (cls_na, img_na) = net.adapted(cls_b, img_b), net.adapted(cls_n, img_n)
        b = metrics.zero_shot_accuracy(img_ba, cls_ba, c.base[1])
        n = metrics.zero_shot_accuracy(img_na, cls_na, c.novel[1])
        shift_t = feature_shift(cls_b, self.frozen_text).item()
        shift_i = feature_shift(img_b, c.base[0]).item()
        ctx0, vis0 = net.start
        return {"base": b, "novel": n, "H": harmonic_mean(b, n),
                "text shift": shift_t, "image shift": shift_i, "imbalance": abs(shift_t - shift_i),
                "context drift": (net.text.ctx - ctx0).norm().item(),
                "Gram ratio, text prompt": prompt_gram_shift(net.text.ctx, ctx0).item(),
                "Gram ratio, visual prompt":
                    1.0 if vis0 is None else prompt_gram_shift(net.visual(), vis0).item()}
