"""Unimodal backbones for lesson 05: each one pretrained on its own modality alone.

OneEncoder starts from encoders that have never seen another modality. Here they are
the real all-MiniLM-L6-v2 for text and three tiny towers (image, audio, video) that
this module pretrains once, each on its own inputs, with a *unimodal labelled*
objective: predict the scene's attributes (shape, colour, size, position, and motion
where the modality shows it) from that modality alone. No caption, no other
modality, ever. The towers are then frozen and their *token outputs* are cached:

    tower = unimodal.backbone("audio")               # pretrained on first use, cached
    feats = unimodal.token_features("audio", ds)     # {"tokens": [N, L, w], "mask": None}
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core import _validate, cache
from .. import models, world
from ..training import train
from ..core.runtime import device, get_seed, settings
from .minilm import load_minilm
from ..core.ops import in_chunks
from ..core.recipes import Recipe, code_hash

MAX_TEXT_TOKENS = 32      # MiniLM captions are cut at this many word pieces (ours have about 15)
BACKBONES = ("image", "audio", "video")
LABELS = {"image": ("shape", "colour", "size", "position"),
          "audio": ("shape", "colour", "size", "position", "motion"),
          "video": ("shape", "colour", "size", "position", "motion")}


def lesson_world_config(split: str = "train", n: int | None = None) -> dict:
    """The config of ``lesson_world(split, n)``, without building it (for cache keys)."""
    _validate.one_of("split", split, world.SPLITS)
    if n is None:
        n = (settings().modality_train_scenes if split == "train"
             else settings().modality_test_scenes)
    return world.world_config(split, n, world.MODALITIES, seed=0, two_object_frac=0.0)


def lesson_world(split: str = "train", n: int | None = None):
    """The lesson's world: single-object scenes in all four modalities. ``n`` defaults
    to ``settings().modality_train_scenes`` for train (3,000 in ``quick``, 30,000 in
    ``full``) and ``modality_test_scenes`` otherwise (500 / 2,000)."""
    cfg = lesson_world_config(split, n)
    return world.load_world(split, cfg["n"], modalities=world.MODALITIES, seed=0,
                            two_object_frac=0.0)


def inputs(ds, modality: str) -> torch.Tensor:
    """A modality's raw inputs from a ``load_world`` dataset: uint8 images ``[N, 3, H, W]``,
    log-mel spectrograms ``[N, M, T]`` or uint8 videos ``[N, T, 3, H, W]``."""
    _validate.one_of("modality", modality, BACKBONES)
    return world.tensors(ds, "mel" if modality == "audio" else modality)[
        "mel" if modality == "audio" else modality]


def labels(ds, modality: str) -> dict[str, torch.Tensor]:
    """The attributes a backbone learns to predict: ``{name: [N] long}`` (first object)."""
    _validate.one_of("modality", modality, BACKBONES)
    t = world.tensors(ds, list(LABELS[modality]))
    return {k: v.long() for k, v in t.items()}


def recipe(modality: str, **overrides) -> Recipe:
    """A backbone's pretraining recipe in the current profile: its hyperparameters, the
    lesson's train and test worlds (the test world gives the stored accuracies; neither is
    built for this), the towers' patch size, and this module's code."""
    _validate.one_of("modality", modality, BACKBONES)
    cfg = settings()
    r = dict(width=cfg.backbone_width, depth=cfg.backbone_depth, steps=cfg.backbone_steps,
             batch_size=cfg.backbone_batch_size, lr=1e-3, weight_decay=0.01, warmup=30, seed=None)
    r = _validate.overrides(r, overrides)
    r["seed"] = get_seed(r["seed"])
    worlds = (lesson_world_config("train"), lesson_world_config("test"))
    return Recipe(f"unimodal-{modality}", r, inputs=(*worlds, {"patch_size": cfg.patch_size}),
                  code=(__name__,))


def make_backbone(modality: str, width: int | None = None,
                  depth: int | None = None) -> torch.nn.Module:
    """A fresh tower whose pooled output (and token width) is ``width``."""
    _validate.one_of("modality", modality, BACKBONES)
    width = settings().backbone_width if width is None else _validate.positive_int("width", width)
    tower = {"image": models.ImageTower, "audio": models.AudioTower,
             "video": models.VideoTower}[modality]
    depth = settings().backbone_depth if depth is None else _validate.positive_int("depth", depth)
    return tower(embed_dim=width, width=width, depth=depth)


def _float(modality: str, x: torch.Tensor) -> torch.Tensor:
    return x.float() if modality == "audio" else world.images_float(x)


def _heads(modality: str, width: int) -> torch.nn.ModuleDict:
    return torch.nn.ModuleDict({a: torch.nn.Linear(width, len(world.ATTRIBUTES[a]))
                                for a in LABELS[modality]})


@torch.no_grad()
def _accuracy(modality, tower, heads, ds) -> dict[str, float]:
    tower.eval()
    x, y = inputs(ds, modality), labels(ds, modality)
    pooled = in_chunks(lambda b: tower(_float(modality, b)), x, 500)
    return {a: (heads[a](pooled).argmax(1) == y[a]).float().mean().item() for a in heads}


def pretrain(modality: str, ds=None, progress: bool = True, r: Recipe | None = None, **overrides):
    """Pretrain a backbone on ``modality`` alone, with the recipe ``r`` (default:
    ``recipe(modality, **overrides)``): from the tower's pooled output, one linear head per
    attribute in ``LABELS[modality]``, loss = the mean of their cross-entropies. Returns
    ``(tower, heads, history)`` on the CPU."""
    r = _validate.recipe_or_overrides(r, overrides, lambda: recipe(modality, **overrides))
    ds = lesson_world("train") if ds is None else ds
    if modality not in world.config_of(ds)["modalities"]:
        raise ValueError(f"ds: has no {modality!r} column, expected a load_world dataset with "
                         f"modalities including {modality!r}")
    torch.manual_seed(r["seed"])
    tower, heads = make_backbone(modality, r["width"], r["depth"]), _heads(modality, r["width"])
    x, y = inputs(ds, modality), labels(ds, modality)
    g = torch.Generator().manual_seed(r["seed"])
    dev = device()
    tower.to(dev), heads.to(dev)

    def loss_fn(step):
        idx = torch.randint(len(x), (r["batch_size"],), generator=g)
        pooled = tower(_float(modality, x[idx]).to(dev))
        losses = {a: F.cross_entropy(heads[a](pooled), y[a][idx].to(dev)) for a in heads}
        return {"loss": sum(losses.values()) / len(losses),
                **{a: v.item() for a, v in losses.items()}}

    history = train.fit(loss_fn, list(tower.parameters()) + list(heads.parameters()),
                        range(r["steps"]), steps=r["steps"], lr=r["lr"],
                        weight_decay=r["weight_decay"], warmup=r["warmup"],
                        desc=f"{modality} backbone (alone)", progress=progress)
    return tower.cpu().eval(), heads.cpu().eval(), history


def backbone(modality: str, retrain: bool = False, progress: bool = True, **overrides):
    """The cached, frozen backbone of ``modality`` (pretrained on first use).

    Returns ``(tower, accuracy)``: the tower in eval mode with every parameter frozen, and
    each attribute's test accuracy of the pretraining heads (what it learned alone).
    """
    r = recipe(modality, **overrides)

    def build():
        tower, heads, _ = pretrain(modality, progress=progress, r=r)
        accuracy = _accuracy(modality, tower, heads, lesson_world("test"))
        return tower, {a: torch.tensor(v) for a, v in accuracy.items()}
    tower, extras = cache.cached_module(r.entry(),
                                        lambda: make_backbone(modality, r["width"], r["depth"]),
                                        build, retrain=retrain)
    return tower.eval().requires_grad_(False), {a: v.item() for a, v in extras.items()}


def _weights_key(module: torch.nn.Module) -> str:
    """A hash of a module's weights: token features are keyed by the backbone that made them."""
    import hashlib
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def _tower_tokens(modality, tower, x, batch_size, progress):
    dev = device()
    tower.to(dev).eval()
    out = in_chunks(lambda b: tower(_float(modality, b).to(dev),
                                    return_tokens=True)[1].half().cpu(),
                    x, batch_size, desc=f"{modality} tokens", progress=progress)
    tower.cpu()
    return out


def _text_tokens(texts, batch_size, progress):
    minilm = load_minilm().to(device())
    return minilm.tokens(texts, MAX_TEXT_TOKENS, batch_size, progress, dtype=torch.float16)


def text_token_features(texts, batch_size: int = 256, progress: bool = True) -> dict:
    """MiniLM token outputs of ``texts`` (not cached: for a handful of prompts):
    ``{"tokens": [N, L, 384] float16, "mask": [N, L] bool}``."""
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)) or not texts \
            or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"texts: got {type(texts).__name__}, expected a non-empty list of strings")
    tokens, mask = _text_tokens(list(texts), _validate.positive_int("batch_size", batch_size),
                                progress)
    return {"tokens": tokens, "mask": mask}


def token_features(modality: str, ds, batch_size: int = 256, progress: bool = True,
                   **overrides) -> dict:
    """The frozen backbone's token outputs for every row of ``ds``, cached on disk:
    ``{"tokens": [N, L, width] float16, "mask": [N, L] bool or None}``. Text uses
    MiniLM on the ``caption`` column (the mask marks real tokens); image, audio and
    video use ``backbone(modality, **overrides)`` (every token is real: ``mask`` is None)."""
    _validate.one_of("modality", modality, world.MODALITIES)
    _validate.positive_int("batch_size", batch_size)
    cfg = world.config_of(ds)
    if modality != "text" and modality not in cfg["modalities"]:
        raise ValueError(f"ds: has no {modality!r} column (modalities {cfg['modalities']}), "
                         "expected a dataset from unimodal.lesson_world")
    if modality == "text" and overrides:
        raise ValueError(f"overrides: got {sorted(overrides)}, expected none for text "
                         "(MiniLM is not trained here)")
    if modality == "text":
        parts = ("all-minilm-l6-v2", MAX_TEXT_TOKENS, code_hash(__name__))
    else:
        # keyed by the backbone's weights: a retrained backbone gets new tokens
        tower, _ = backbone(modality, progress=progress, **overrides)
        parts = (modality, _weights_key(tower), code_hash(__name__))
    name = f"tokens-{modality}-{cache.key(parts, cfg)}.safetensors"

    def build():
        if modality == "text":
            tokens, mask = _text_tokens(world.tensors(ds, "caption")["caption"], batch_size,
                                        progress)
            return {"tokens": tokens, "mask": mask}
        return {"tokens": _tower_tokens(modality, tower, inputs(ds, modality), batch_size,
                                        progress)}

    found = cache.cached_tensors(name, build)
    return {"tokens": found["tokens"], "mask": found.get("mask")}
