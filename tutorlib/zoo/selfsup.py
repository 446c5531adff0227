"""An image encoder pretrained on images alone, for lesson 08: SimCLR (Chen et al. 2020).

Two *views* of a scene are the same objects rendered over a fresh background texture,
with a fresh colour jitter, a brightness change and pixel noise. The tower learns to
tell a scene's two views apart from every other scene's in the batch (the NT-Xent loss),
so it keeps what identifies a scene (its objects: shape, colour, size, where they are)
and drops what the views change. It never sees a label or a caption, so its
neighbourhoods are its own, not the evaluation's attributes in disguise.

    tower, loss = selfsup.encoder()                # pretrained on first use, cached
    feats = selfsup.layer_features(tower, images)  # [N, depth + 1, width]: every layer, mean-pooled
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from ..core import _validate, cache
from .. import models, world
from ..training import train
from ..core.runtime import device, get_seed, settings
from ..core.ops import in_chunks
from ..core.recipes import Recipe
from ..models.heads import mlp


def views(scenes: world.Scenes, generator: torch.Generator) -> torch.Tensor:
    """One random view ``[N, 3, H, W]`` (floats in [0, 1]) of each scene: a new rendering
    seed (background texture, colour jitter), brightness x U(0.9, 1.1), noise σ = 0.02."""
    if not isinstance(scenes, world.Scenes):
        raise ValueError(f"scenes: got {type(scenes).__name__}, expected a world.Scenes")
    n = len(scenes)
    seeds = torch.randint(2**31 - 1, (n,), generator=generator)
    img = world.render_images(dataclasses.replace(scenes, seed=seeds))
    bright = 0.9 + 0.2 * torch.rand(n, 1, 1, 1, generator=generator)
    return (img * bright + 0.02 * torch.randn(img.shape, generator=generator)).clamp(0, 1)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float = 0.2) -> torch.Tensor:
    """SimCLR's NT-Xent loss: each of the 2N views ``[N, d]`` must pick its partner among
    the other 2N - 1 by cosine / τ (cross-entropy, averaged over the 2N views)."""
    _validate.tensor("z1", z1, 2, finite=False)
    _validate.tensor("z2", z2, 2, finite=False)
    if z1.shape != z2.shape:
        raise ValueError(f"z1 and z2: got shapes {tuple(z1.shape)} and {tuple(z2.shape)}, "
                         "expected the same")
    z = F.normalize(torch.cat([z1, z2]), dim=-1)
    n = len(z1)
    logits = (z @ z.T / _validate.positive_number("tau", tau)).fill_diagonal_(-float("inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, partner)


def recipe(**overrides) -> Recipe:
    """The pretraining recipe in the current profile (SimCLR's τ 0.2; a small ViT), with the
    image geometry and this module's code (the scenes are the train split's, seed 0)."""
    cfg = settings()
    r = dict(width=cfg.simclr_width, depth=2, steps=cfg.simclr_steps, batch_size=128,
             lr=1e-3, weight_decay=0.05, warmup=40, tau=0.2, scenes=cfg.simclr_scenes, seed=None)
    r = _validate.overrides(r, overrides)
    r["seed"] = get_seed(r["seed"])
    geometry = {"image_size": cfg.image_size, "patch_size": cfg.patch_size}
    return Recipe("simclr-image", r, inputs=(geometry,), code=(__name__,))


class SimCLR(torch.nn.Module):
    """The ViT (mean of its patch tokens) and SimCLR's projection head g (used in training only)."""

    def __init__(self, width: int, depth: int):
        super().__init__()
        self.tower = models.ImageTower(embed_dim=width, width=width, depth=depth)
        self.head = mlp(width, width, width, torch.nn.ReLU)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _, tokens = self.tower(images, return_tokens=True)
        return self.head(tokens[:, 1:].mean(1))


def pretrain(progress: bool = True, r: Recipe | None = None, **overrides):
    """Pretrain ``SimCLR`` with the recipe ``r`` (default: ``recipe(**overrides)``) on
    train-split scenes (never their captions); returns it (CPU) and the history."""
    r = _validate.recipe_or_overrides(r, overrides, lambda: recipe(**overrides))
    scenes = world.sample_scenes(r["scenes"], seed=0)        # the train split's scene distribution
    torch.manual_seed(r["seed"])
    model, g, dev = (SimCLR(r["width"], r["depth"]), torch.Generator().manual_seed(r["seed"]),
                     device())
    model.to(dev)

    def loss_fn(step):
        sc = scenes[torch.randint(len(scenes), (r["batch_size"],), generator=g)]
        return nt_xent(model(views(sc, g).to(dev)), model(views(sc, g).to(dev)), r["tau"])

    history = train.fit(loss_fn, train.decay_groups(model.parameters(), r["weight_decay"]),
                        range(r["steps"]), steps=r["steps"], lr=r["lr"], warmup=r["warmup"],
                        desc="image encoder (SimCLR, images alone)", progress=progress)
    return model.cpu().eval(), history


def encoder(retrain: bool = False, progress: bool = True, **overrides):
    """The cached, frozen SimCLR-pretrained ``ImageTower`` (trained on first use, then
    loaded). Returns ``(tower, loss)``: the tower and its pretraining loss, one value per step."""
    r = recipe(**overrides)

    def build():
        model, history = pretrain(progress=progress, r=r)
        return model, {"loss": torch.tensor(history["loss"])}
    model, extras = cache.cached_module(r.entry(), lambda: SimCLR(r["width"], r["depth"]), build,
                                        retrain=retrain)
    return model.tower.eval().requires_grad_(False), extras["loss"].tolist()


@torch.no_grad()
def layer_features(tower: models.ImageTower, images: torch.Tensor,
                   batch_size: int = 500) -> torch.Tensor:
    """Every layer's view of each image: the mean of the patch tokens after the patch
    embedding (layer 0) and after each block, ``[N, depth + 1, width]`` (on the CPU)."""
    if not isinstance(tower, models.ImageTower):
        raise ValueError(f"tower: got {type(tower).__name__}, expected a models.ImageTower")
    _validate.tensor("images", images, 4, floating=False, finite=False)
    depth, dev = len(tower.encoder.blocks), device()
    tower.to(dev).eval()

    def chunk(b):
        x = world.images_float(b).to(dev)
        return torch.stack([tower.hidden(x, stop=s)[:, 1:].mean(1)
                            for s in range(depth + 1)], 1).cpu()
    return in_chunks(chunk, images, _validate.positive_int("batch_size", batch_size))
