"""How alike are two encoders' views of the same items? Two measures on paired rows.

* **Linear CKA** (Kornblith et al. 2019): the similarity of two representations of the
  same N items, invariant to rotations and to isotropic scaling of either one:

      CKA(X, Y) = ||Ycᵀ Xc||_F² / ( ||Xcᵀ Xc||_F · ||Ycᵀ Yc||_F ),   Xc, Yc column-centred

* **Mutual k-nearest-neighbour overlap** (Huh et al. 2024, the Platonic representation
  hypothesis): for each item, the fraction of its k nearest neighbours (cosine, itself
  left out) that the two spaces share, averaged over items.

    representations.linear_cka(image_feats, text_feats)        # in [0, 1]
    representations.mutual_knn(image_feats, text_feats, k=10)  # in [0, 1]; chance ~ k / (N - 1)

Row i of ``x`` and row i of ``y`` describe the same item; the widths may differ.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core import _validate


def _paired(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    _validate.tensor("x", x, 2)
    _validate.tensor("y", y, 2)
    _validate.same_rows("x", x, "y", y)
    if len(x) < 3:
        raise ValueError(f"x: got {len(x)} rows, expected at least 3 paired items")
    return x.double(), y.double()


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of ``x`` ``[N, d1]`` and ``y`` ``[N, d2]`` (paired rows): 1 when one is a
    rotation and scaling of the other, near 0 when they share no linear structure."""
    x, y = _paired(x, y)
    x, y = x - x.mean(0), y - y.mean(0)
    hsic = (y.T @ x).square().sum()
    norm = (x.T @ x).square().sum().sqrt() * (y.T @ y).square().sum().sqrt()
    if norm == 0:
        raise ValueError("x, y: one of them is constant over the rows, expected varying features")
    return (hsic / norm).item()


def knn(x: torch.Tensor, k: int) -> torch.Tensor:
    """The indices ``[N, k]`` of each row's k nearest rows by cosine, the row itself left out."""
    _validate.tensor("x", x, 2)
    _validate.positive_int("k", k)
    if k >= len(x):
        raise ValueError(f"k: got {k}, expected fewer than the {len(x)} rows")
    z = F.normalize(x.double(), dim=-1)
    sim = (z @ z.T).fill_diagonal_(-float("inf"))
    return sim.topk(k, dim=1).indices


def mutual_knn(x: torch.Tensor, y: torch.Tensor, k: int = 10) -> float:
    """Mutual k-NN overlap of ``x`` ``[N, d1]`` and ``y`` ``[N, d2]``: the mean over rows of
    |kNN_x(i) ∩ kNN_y(i)| / k. Two unrelated spaces score about k / (N - 1)."""
    x, y = _paired(x, y)
    nx, ny = knn(x, k), knn(y, k)
    hit = (nx[:, :, None] == ny[:, None, :]).any(2)          # [N, k]: x's neighbour is also y's
    return hit.double().mean().item()
