"""Contrastive losses, written the way open_clip's ``loss.py`` writes them.

Shapes: embeddings ``[N, d]``, row i of one modality paired with row i of the other.
``logit_scale`` is the *log* of the inverse temperature (CLIP: initialised at
ln(1/0.07) and clamped to [0, ln 100]).

Each public loss checks shapes and types, and the values for NaN or inf once per call
(one device synchronisation); the helpers it calls inside do not check again.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core import _validate


def _cos(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).T


def similarity(image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """Cosine similarities ``[N, M]`` of rows of ``[N, d]`` and ``[M, d]``."""
    _validate.tensor("image_emb", image_emb, 2)
    _validate.tensor("text_emb", text_emb, 2)
    _validate.same_width("image_emb", image_emb, "text_emb", text_emb)
    return _cos(image_emb, text_emb)


def info_nce(logits: torch.Tensor) -> torch.Tensor:
    """InfoNCE in one direction (van den Oord et al. 2018): row i of ``logits`` ``[N, N]``
    should pick column i, so the loss is the cross-entropy with labels 0..N-1:

        L = -1/N sum_i log( exp(l_ii) / sum_j exp(l_ij) )
    """
    _validate.tensor("logits", logits, 2)
    if logits.shape[0] != logits.shape[1]:
        raise ValueError(f"logits: got shape {tuple(logits.shape)}, "
                         "expected a square [N, N] matrix")
    return _info_nce(logits)


def _info_nce(logits: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))


def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale,
              targets: torch.Tensor | None = None) -> torch.Tensor:
    """The symmetric InfoNCE loss of CLIP (Radford et al. 2021, Fig. 3):

        L = 1/2 [ CE(s * X Y^T, I) + CE(s * Y X^T, I) ],   s = exp(logit_scale)

    with X, Y the L2-normalised ``[N, d]`` embeddings and I the identity (pair i is the
    positive of row i). ``targets`` ``[N, N]`` (optional) gives soft targets instead:
    a row of ``targets[i]`` marks every caption image i satisfies (rows are
    normalised to sum to one; columns for the text->image direction).
    """
    scale = _validate.loss_inputs(image_emb, text_emb, logit_scale).exp()
    logits_i = scale * _cos(image_emb, text_emb)
    logits_t = logits_i.T           # made before either loss term: autograd then sums the two
    if targets is None:             # gradients in the same order, to the last bit, as before
        return (_info_nce(logits_i) + _info_nce(logits_t)) / 2
    rows, cols = _soft_targets(targets, len(logits_i))
    return (F.cross_entropy(logits_i, rows) + F.cross_entropy(logits_t, cols)) / 2


def _soft_targets(targets, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The cross-entropy targets of a ``[N, N]`` match matrix: for image->text its rows,
    for text->image its columns (transposed), each normalised to sum to one."""
    _validate.tensor("targets", targets, 2, floating=False, finite=False)
    if targets.shape != (n, n):
        raise ValueError(f"targets: got shape {tuple(targets.shape)}, expected [{n}, {n}]")
    t = targets.float()
    if bool((t.sum(1) == 0).any() | (t.sum(0) == 0).any()):
        raise ValueError("targets: every row and column needs at least one positive")
    return t / t.sum(1, keepdim=True), (t / t.sum(0, keepdim=True)).T


def clip_loss_with_negatives(image_emb: torch.Tensor, text_emb: torch.Tensor,
                             neg_text_emb: torch.Tensor, logit_scale,
                             targets: torch.Tensor | None = None) -> torch.Tensor:
    """CLIP loss with extra hard-negative captions (NegCLIP, Yuksekgonul et al. 2023):
    the image->text softmax of row i runs over the N batch captions *and* the K extra
    captions ``neg_text_emb`` ``[K, d]`` (e.g. attribute swaps); text->image is unchanged.
    ``targets`` ``[N, N]`` (optional): soft targets over the batch captions, as in
    ``clip_loss``; the extra captions are negatives of every row (target 0).
    """
    _validate.tensor("neg_text_emb", neg_text_emb, 2, finite=False)
    logit_scale = _validate.loss_inputs(image_emb, text_emb, logit_scale, neg_text_emb=neg_text_emb)
    _validate.same_width("text_emb", text_emb, "neg_text_emb", neg_text_emb)
    logits_i = logit_scale.exp() * _cos(image_emb, text_emb)
    logits_t = logits_i.T
    logits_neg = logit_scale.exp() * _cos(image_emb, neg_text_emb)          # [N, K]
    if targets is None:
        labels = torch.arange(len(logits_i), device=logits_i.device)
        return (F.cross_entropy(torch.cat([logits_i, logits_neg], 1), labels)
                + _info_nce(logits_t)) / 2
    rows, cols = _soft_targets(targets, len(logits_i))
    rows = torch.cat([rows, torch.zeros_like(logits_neg)], 1)
    return (F.cross_entropy(torch.cat([logits_i, logits_neg], 1), rows)
            + F.cross_entropy(logits_t, cols)) / 2


def cwcl_weights(frozen_emb: torch.Tensor, centre: bool = False) -> torch.Tensor:
    """CWCL's continuous targets (Srinivasa et al., NeurIPS 2023, Eq. 3) from a frozen
    encoder's embeddings ``[N, d]``: w_ij = ⟨p̄_i, p̄_j⟩ / 2 + 1/2 with p̄ the L2-normalised
    rows, so w lies in [0, 1] and w_ii = 1. ``[N, N]``, no gradient. ``centre=True`` (not
    in the paper) subtracts the batch mean before normalising, so that an encoder whose
    embeddings share one direction (a cone) does not give every pair a weight near 1."""
    _validate.tensor("frozen_emb", frozen_emb, 2)
    if not isinstance(centre, bool):
        raise ValueError(f"centre: got {centre!r}, expected True or False")
    with torch.no_grad():
        z = frozen_emb.float()
        z = F.normalize(z - z.mean(0) if centre else z, dim=-1)
        w = (z @ z.T / 2 + 0.5).clamp(0, 1)
        w.fill_diagonal_(1.0)
    return w


def cwcl_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale,
              i2t_weights: torch.Tensor | None = None,
              t2i_weights: torch.Tensor | None = None) -> torch.Tensor:
    """The continuously weighted contrastive loss (CWCL, Srinivasa et al. 2023, Eq. 4), both ways:

        L_{U→V} = -1/N Σ_i (1 / Σ_j w_ij) Σ_j w_ij log softmax_j( s ⟨u_i, v_j⟩ ),
        s = exp(logit_scale)

    ``i2t_weights`` ``[N, N]`` weighs the image->text direction (rows: images), ``t2i_weights``
    the text->image one (rows: captions); ``None`` is the identity, CLIP's one-hot target.
    Returns ½ (L_{I→T} + L_{T→I}); with both ``None`` it equals ``clip_loss``.
    """
    scale = _validate.loss_inputs(image_emb, text_emb, logit_scale).exp()
    logits_i = scale * _cos(image_emb, text_emb)
    terms = []
    for name, logits, w in (("i2t_weights", logits_i, i2t_weights),
                            ("t2i_weights", logits_i.T, t2i_weights)):
        if w is None:
            terms.append(_info_nce(logits))
            continue
        _validate.tensor(name, w, 2)
        if w.shape != logits.shape:
            raise ValueError(f"{name}: got shape {tuple(w.shape)}, expected {list(logits.shape)}")
        if bool((w < 0).any()) or bool((w.sum(1) <= 0).any()):
            raise ValueError(f"{name}: expected weights >= 0 with a positive sum in every row")
        terms.append(F.cross_entropy(logits, w / w.sum(1, keepdim=True)))
    return (terms[0] + terms[1]) / 2


def siglip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale,
                logit_bias) -> torch.Tensor:
    """The sigmoid loss of SigLIP (Zhai et al. 2023, Alg. 1):

        L = -1/N sum_{i,j} log sigmoid( z_ij * (s * <x_i, y_j> + b) ),
        z_ij = +1 if i == j else -1,  s = exp(logit_scale)

    open_clip initialises logit_scale at ln 10 and the bias b at -10.
    """
    logit_bias = _validate.scalar("logit_bias", logit_bias, finite=False)
    logit_scale = _validate.loss_inputs(image_emb, text_emb, logit_scale, logit_bias=logit_bias)
    logits = logit_scale.exp() * _cos(image_emb, text_emb) + logit_bias
    n = logits.shape[0]
    z = 2 * torch.eye(n, device=logits.device) - 1
    return -F.logsigmoid(z * logits).sum() / n


def clamp_logit_scale_(logit_scale: torch.nn.Parameter, max_scale: float = 100.0) -> None:
    """In place, after each optimiser step: logit_scale into [0, ln max_scale] (open_clip)."""
    import math
    with torch.no_grad():
        logit_scale.clamp_(0, math.log(max_scale))
