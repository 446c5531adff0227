"""Lesson 08: what two projectors keep of their frozen encoders' neighbourhoods. STRUCTURE's
divergence R sees which neighbours are kept *and* how sharply they are picked; the mutual
k-NN sees only which. Both compare the frozen features with their projections.

    r = neighbourhoods.neighbourhood_divergence(img_proj, txt_proj, feats)   # 0: all kept
    kept = neighbourhoods.neighbours_kept(img_proj, txt_proj, feats, k=10)    # 1: all kept
"""
from __future__ import annotations

import torch

from ..core import _validate
from ..evaluation import representations
from ..objectives import structure


@torch.no_grad()
def neighbourhood_divergence(project_img, project_txt, feats: dict, batch_size: int = 64,
                             batches: int = 10, seed: int = 0, layer: int = -1,
                             divergence: str = "js") -> float:
    """How much of the frozen neighbourhoods two projectors lose: STRUCTURE's ``regulariser``
    R (τ 0.07, one level, ``divergence``) between the frozen features and their projections,
    image and text sides averaged, over ``batches`` random batches of ``batch_size`` rows of
    ``feats`` (drawn with ``seed``; the image at ``layer``), then averaged. 0: every
    neighbourhood kept."""
    import statistics
    if not (callable(project_img) and callable(project_txt)):
        raise ValueError("project_img, project_txt: expected two callables [B, w] -> [B, d]")
    _validate.positive_int("batch_size", batch_size), _validate.positive_int("batches", batches)
    g, out = torch.Generator().manual_seed(seed), []
    for _ in range(batches):
        b = torch.randperm(len(feats["text"]), generator=g)[:batch_size]
        xi, xt = feats["image"][b, layer].float(), feats["text"][b].float()
        r = (structure.regulariser(xi, project_img(xi), divergence=divergence)
             + structure.regulariser(xt, project_txt(xt), divergence=divergence))
        out.append((r / 2).item())
    return statistics.mean(out)


@torch.no_grad()
def neighbours_kept(project_img, project_txt, feats: dict, k: int = 10, layer: int = -1) -> float:
    """Which frozen neighbours two projectors keep, by rank only: the mutual ``k``-NN of the
    frozen features of ``feats`` and their projections (``representations.mutual_knn``), image
    (at ``layer``) and text sides averaged. 1: every item keeps its ``k`` nearest; about
    k / (N - 1): none kept. Unlike STRUCTURE's R it is blind to how sharply the neighbours
    are picked."""
    if not (callable(project_img) and callable(project_txt)):
        raise ValueError("project_img, project_txt: expected two callables [B, w] -> [B, d]")
    x_img, x_txt = feats["image"][:, layer].float(), feats["text"].float()
    return (representations.mutual_knn(x_img, project_img(x_img), k)
            + representations.mutual_knn(x_txt, project_txt(x_txt), k)) / 2


@torch.no_grad()
def neighbourhood_entropy(project, x: torch.Tensor, batch_size: int = 64, batches: int = 10,
                          seed: int = 0) -> tuple[float, float]:
    """How sharply STRUCTURE's P picks neighbours, on one side: the mean row entropy (nats) of
    ``structure.neighbourhoods`` (τ 0.07) of the frozen features ``x`` ``[N, w]`` and of
    ``project(x)``, over ``batches`` random batches of ``batch_size`` rows (drawn with
    ``seed``). ln(batch_size): a uniform row, nothing picked; near 0: one neighbour."""
    import statistics
    if not callable(project):
        raise ValueError(f"project: got {type(project).__name__}, expected a callable [B, w] -> [B, d]")
    _validate.tensor("x", x, 2)
    _validate.positive_int("batch_size", batch_size), _validate.positive_int("batches", batches)
    entropy = lambda p: -(p * p.clamp_min(1e-12).log()).sum(1).mean().item()
    g, out = torch.Generator().manual_seed(seed), []
    for _ in range(batches):
        b = torch.randperm(len(x), generator=g)[:batch_size]
        xb = x[b].float()
        out.append((entropy(structure.neighbourhoods(xb)), entropy(structure.neighbourhoods(project(xb)))))
    return statistics.mean(o[0] for o in out), statistics.mean(o[1] for o in out)
