"""STRUCTURE's neighbourhood regulariser (Gröger et al., NeurIPS 2025; the authors' code,
``src/loss/clip_loss.py`` in hhxk233/STRUCTURE at the first author's commit a25023b): while
small projectors learn to align
two frozen encoders from few pairs, keep each projector's output arranged the way its
frozen encoder arranged the same batch.

Within a batch of N items, an embedding ``[N, d]`` defines a neighbourhood distribution
per item: L2-normalise the rows, centre them on the batch mean, and softmax the scaled
similarities row by row,

    P = row-softmax( C Cᵀ / τ ),     C = X̄ - mean(X̄),   X̄ the L2-normalised rows

and P^l (the l-th matrix power: a random walk of l steps) looks l hops away. With X the
frozen encoder's output and Z the projector's output for the same items,

    R(X, Z) = (1/L) Σ_l w_l · mean_i D( P_X^l[i] , P_Z^l[i] )

and the lesson's loss is L_CLIP + λ · ½ [ R(X_img, Z_img) + R(X_txt, Z_txt) ], with λ
warmed up linearly. D is one of two divergences (``divergence=``):

- ``"js"``: the Jensen-Shannon divergence ½ KL(p ‖ m) + ½ KL(q ‖ m), m = (p + q) / 2, as
  the paper and the code's own comment name it; bounded by ln 2;
- ``"official"``: what the code computes (clip_loss.py:121-129),
  ``½ [F.kl_div(log q, m) + F.kl_div(log p, m)]`` = ½ KL(m ‖ q) + ½ KL(m ‖ p), the KLs
  taken *from* the mixture; unbounded where one distribution is near zero and the other
  is not.

The class defaults are τ = 0.07, one level, λ = 10 over 500 steps (clip_loss.py:147-151);
the shipped configs run τ = 0.05, λ = 10 over 1,000 steps (configs/default.yaml:83-87).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core import _validate


def neighbourhoods(x: torch.Tensor, tau: float = 0.07) -> torch.Tensor:
    """Row-stochastic ``[N, N]``: softmax_j of ⟨c_i, c_j⟩ / τ over the batch (itself included),
    with c the L2-normalised rows of ``x`` ``[N, d]`` minus their mean."""
    _validate.tensor("x", x, 2, finite=False)
    tau = _validate.positive_number("tau", tau)
    c = F.normalize(x, dim=-1)
    c = c - c.mean(0, keepdim=True)
    return torch.softmax(c @ c.T / tau, dim=1)


def js_divergence(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Jensen-Shannon divergence of each row of ``p`` and ``q`` ``[N, M]`` (rows are
    distributions), in nats: ½ KL(p ‖ m) + ½ KL(q ‖ m), m = (p + q) / 2. Returns ``[N]``,
    each in [0, ln 2]."""
    _validate.tensor("p", p, 2, finite=False)
    _validate.tensor("q", q, 2, finite=False)
    if p.shape != q.shape:
        raise ValueError(f"p and q: got shapes {tuple(p.shape)} and {tuple(q.shape)}, "
                         "expected the same")
    m = (p + q) / 2
    log_m = m.clamp_min(eps).log()
    kl_p = (p * (p.clamp_min(eps).log() - log_m)).sum(1)
    kl_q = (q * (q.clamp_min(eps).log() - log_m)).sum(1)
    return (kl_p + kl_q) / 2


def official_divergence(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """What STRUCTURE's code computes where its comment says Jensen-Shannon (hhxk233/STRUCTURE
    at a25023b, src/loss/clip_loss.py:121-129): ``½ [F.kl_div(log(q + ε), m + ε) +
    F.kl_div(log(p + ε), m + ε)]`` per row, that is

        ½ KL(m ‖ q) + ½ KL(m ‖ p),   m = (p + q) / 2,

    the KLs taken from the mixture (Jensen-Shannon takes them to it). ``p``, ``q`` ``[N, M]``
    (rows are distributions) -> ``[N]`` in nats, >= 0, 0 only where p = q, and unbounded:
    where q_j → 0 while p_j does not, KL(m ‖ q) grows like ½ p_j ln(p_j / 2ε)."""
    _validate.tensor("p", p, 2, finite=False)
    _validate.tensor("q", q, 2, finite=False)
    if p.shape != q.shape:
        raise ValueError(f"p and q: got shapes {tuple(p.shape)} and {tuple(q.shape)}, "
                         "expected the same")
    m = (p + q) / 2 + eps
    log_m = m.log()
    return ((m * (log_m - (q + eps).log())).sum(1) + (m * (log_m - (p + eps).log())).sum(1)) / 2


DIVERGENCES = {"js": js_divergence, "official": official_divergence}


def regulariser(frozen: torch.Tensor, aligned: torch.Tensor, tau: float = 0.07, levels: int = 1,
                level_weights=None, divergence: str = "js") -> torch.Tensor:
    """R(X, Z): the mean over rows of D(P_X^l[i], P_Z^l[i]), weighted over levels
    l = 1..``levels`` by ``level_weights`` (default all 1; the official multi-level configs
    use 1/l) and divided by the number of levels. ``frozen`` ``[N, d1]`` (no gradient needed)
    and ``aligned`` ``[N, d2]``; ``divergence``: ``"js"`` (Jensen-Shannon, <= ln 2) or
    ``"official"`` (``official_divergence``, the code's KL from the mixture). A scalar."""
    _validate.same_rows("frozen", frozen, "aligned", aligned)
    levels = _validate.positive_int("levels", levels)
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence: got {divergence!r}, expected one of {tuple(DIVERGENCES)}")
    div = DIVERGENCES[divergence]
    weights = [1.0] * levels if level_weights is None else list(level_weights)
    if len(weights) != levels or not all(isinstance(w, (int, float)) and w >= 0 for w in weights):
        raise ValueError(f"level_weights: got {level_weights!r}, expected {levels} numbers >= 0")
    px, pz = neighbourhoods(frozen.detach(), tau), neighbourhoods(aligned, tau)
    total, powx, powz = aligned.new_zeros(()), px, pz
    for level, w in enumerate(weights, start=1):
        if level > 1:
            powx, powz = powx @ px, powz @ pz
        total = total + w * div(powx, powz).mean()
    return total / levels


def weight(step: int, lam: float = 10.0, warmup: int = 500) -> float:
    """λ at ``step`` (counted from 0): a linear warm-up to ``lam`` over ``warmup`` steps."""
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step: got {step!r}, expected an integer >= 0")
    lam = _validate.non_negative_number("lam", lam)
    return lam * min(1.0, (step + 1) / _validate.positive_int("warmup", warmup))
