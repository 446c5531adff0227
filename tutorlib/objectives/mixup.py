"""Geodesic multimodal mixup (Oh et al. 2022, "Geodesic Multi-Modal Mixup for Robust
Fine-Tuning"): hard negatives made by walking along the sphere between an image
embedding and its own caption's embedding.

    slerp(a, b, lam)                         # [N, d] points on the great circle from b to a
    m2mix_loss(x, y, lam, tau=0.07)          # m^2-mix: mixed image-text negatives
    vmix_loss / lmix_loss / vlmix_loss       # the uni-modal mixups of m^3-mix

Embeddings are ``[N, d]``; they are L2-normalised inside.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core import _validate


def slerp(a: torch.Tensor, b: torch.Tensor, lam) -> torch.Tensor:
    """Spherical interpolation of unit vectors ``[N, d]`` (Shoemake 1985; the paper's Eq. 3):

        slerp(a, b, lam) = sin(lam theta)/sin(theta) a + sin((1 - lam) theta)/sin(theta) b,
        theta = arccos <a, b>

    so ``lam = 1`` gives ``a`` and ``lam = 0`` gives ``b``, and every point stays on the
    sphere. ``<a, b>`` is clamped inside (-1, 1) and sin(theta) kept away from zero, so
    identical or opposite vectors give no NaN (identical vectors return that vector)."""
    _validate.tensor("a", a, 2, finite=False)
    _validate.tensor("b", b, 2, finite=False)
    if a.shape != b.shape:
        raise ValueError(f"a and b: got shapes {tuple(a.shape)} and {tuple(b.shape)}, "
                         "expected the same")
    _validate.finite(a=a, b=b)
    return _slerp(a, b, lam)


def _slerp(a: torch.Tensor, b: torch.Tensor, lam) -> torch.Tensor:
    """``slerp`` once its inputs are checked (``lam`` is checked here, on the CPU if a number)."""
    lam = torch.as_tensor(lam, dtype=a.dtype)
    if lam.numel() not in (1, len(a)) or not bool(((lam >= 0) & (lam <= 1)).all()):
        raise ValueError(f"lam: expected a number (or one per row) in [0, 1], got {lam.tolist()}")
    lam = lam.to(a.device).reshape(-1, 1)
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    eps = 1e-6 if a.dtype == torch.float64 else 1e-4
    cos = (a * b).sum(-1, keepdim=True).clamp(-1 + eps, 1 - eps)
    theta = torch.acos(cos)
    sin = torch.sin(theta)
    return torch.sin(lam * theta) / sin * a + torch.sin((1 - lam) * theta) / sin * b


def _ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -(targets * logits.log_softmax(-1)).sum(-1).mean()


def m2mix_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, lam,
               tau: float = 0.07) -> torch.Tensor:
    """m^2-mix (the paper's Eq. 5; ``mmmix`` in the official code).

    Mixed negatives ``m_j = slerp(x_j, y_j, lam)``, each made from pair j's own image and
    text. Image-anchored logits keep ``<x_i, y_i>`` on the diagonal and put ``<x_i, m_j>``
    off it; text-anchored logits likewise with ``y_i``. The loss is the *sum* of the two
    cross-entropies at temperature ``tau``. Add it to the CLIP loss with a weight.
    """
    _validate.pair(image_emb, text_emb)
    _validate.finite(image_emb=image_emb, text_emb=text_emb)
    tau = _validate.positive_number("tau", tau)
    x, y = F.normalize(image_emb, dim=-1), F.normalize(text_emb, dim=-1)
    m = _slerp(x, y, lam)
    eye = torch.eye(len(x), dtype=torch.bool, device=x.device)
    pos = (x * y).sum(-1)
    logits_x = torch.where(eye, pos[:, None], x @ m.T) / tau
    logits_y = torch.where(eye, pos[:, None], y @ m.T) / tau
    labels = torch.arange(len(x), device=x.device)
    return F.cross_entropy(logits_x, labels) + F.cross_entropy(logits_y, labels)


def _mix_targets(n: int, lam: float, device) -> torch.Tensor:
    eye = torch.eye(n, device=device)
    return lam * eye + (1 - lam) * torch.flip(eye, dims=[0])


def _sym(logits, targets):
    return (_ce(logits, targets) + _ce(logits.T, targets.T)) / 2


def _unimodal_mix(image_emb, text_emb, lam, logit_scale, side: str) -> torch.Tensor:
    """Mix one modality with the batch in reverse order, ``slerp(v_i, v_{N-1-i}, lam)``;
    the mixed item matches partner i with weight lam and partner N-1-i with 1 - lam."""
    s = _validate.loss_inputs(image_emb, text_emb, logit_scale)
    x, y = F.normalize(image_emb, dim=-1), F.normalize(text_emb, dim=-1)
    if side == "image":
        x = _slerp(x, torch.flip(x, dims=[0]), lam)
    else:
        y = _slerp(y, torch.flip(y, dims=[0]), lam)
    return _sym(s.exp() * x @ y.T, _mix_targets(len(x), float(lam), x.device))


def vmix_loss(image_emb, text_emb, lam, logit_scale) -> torch.Tensor:
    """V-mix (m^3-mix): images mixed with the batch in reverse order, matched softly."""
    return _unimodal_mix(image_emb, text_emb, lam, logit_scale, "image")


def lmix_loss(image_emb, text_emb, lam, logit_scale) -> torch.Tensor:
    """L-mix (m^3-mix): texts mixed with the batch in reverse order, matched softly."""
    return _unimodal_mix(image_emb, text_emb, lam, logit_scale, "text")


def vlmix_loss(image_emb, text_emb, lam, logit_scale) -> torch.Tensor:
    """VL-mix (m^3-mix): images and texts mixed with the same partner and weight; a mixed
    image matches its mixed text, and the reversed pair too (targets ``I + flip(I)``)."""
    s = _validate.loss_inputs(image_emb, text_emb, logit_scale).exp()
    x, y = F.normalize(image_emb, dim=-1), F.normalize(text_emb, dim=-1)
    mx, my = _slerp(x, torch.flip(x, dims=[0]), lam), _slerp(y, torch.flip(y, dims=[0]), lam)
    eye = torch.eye(len(x), device=x.device)
    return _sym(s * mx @ my.T, eye + torch.flip(eye, dims=[0]))
