"""Binding many modalities at once (lesson 06): the volume of k modality vectors and GRAM's
contrastive loss (Cicchetti et al., ICLR 2025), ImageBind's image-anchored loss (Girdhar et
al., CVPR 2023), and the all-pairs CLIP loss.

Shapes: one ``[N, d]`` embedding per modality, row i of each the same item.

    vol = volume(text, image, audio, video)                    # [N]: one tuple per row
    V = volume_matrix(text, [image, audio, video])             # [N, M]: text i with tuple j
    loss = gram_loss(text, [image, audio, video], logit_scale)
    loss = anchor_loss(image, {"text": t, "audio": a}, {"text": s_t, "audio": math.log(20)})
    loss = all_pairs_loss({"image": i, "text": t, "audio": a}, logit_scale)
    heads, history = train_heads("GRAM", feats, dim=64, steps=400, seed=0)  # lesson 06's runs

The volume of k unit vectors is sqrt(det G), G_ij = <v_i, v_j>: 1 if orthogonal, 0 if linearly
dependent (anti-parallel too: it cannot see a sign), |sin theta| for two.
GRAM's official ``volume_computation3/4/5`` take ``sqrt(|det G|)`` (``eps=None`` here). It is
Lipschitz (|sin theta| has slope at most 1), but its gradient is 0 * inf = NaN where det G is
exactly 0: a perfect positive, or in float32 a nearly parallel pair whose cos theta rounds to 1
(theta below about 2e-4). The default ``sqrt(max(det G, 0) + eps)``, ``eps=1e-6``, is never NaN;
its gradient vanishes near a perfect positive (0.7 of the slope at theta = 1e-3, 0.1 at 1e-4).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..core import _validate
from ..core.runtime import get_seed
from . import losses


def _unit(name: str, x) -> torch.Tensor:
    _validate.tensor(name, x, 2, finite=False)
    return F.normalize(x, dim=-1)


def _check_tuple(names, vectors) -> list[torch.Tensor]:
    if len(vectors) < 2:
        raise ValueError(f"vectors: got {len(vectors)} modality batch(es), expected at least two")
    out = [_unit(n, v) for n, v in zip(names, vectors)]
    for n, v in zip(names[1:], out[1:]):
        _validate.same_rows(names[0], out[0], n, v)
        _validate.same_width(names[0], out[0], n, v)
    return out


def gram_matrix(*vectors: torch.Tensor) -> torch.Tensor:
    """The Gram matrices ``[N, k, k]`` of k batches ``[N, d]`` (L2-normalised here):
    ``G[n, i, j] = <v_i[n], v_j[n]>``, ones on the diagonal."""
    # v: [N, k, d]
    v = torch.stack(_check_tuple([f"vectors[{k}]" for k in range(len(vectors))], vectors), 1)
    return v @ v.transpose(1, 2)


def _sqrt_det(g: torch.Tensor, eps: float | None) -> torch.Tensor:
    if eps is None:                              # the official form: sqrt(|det G|)
        return torch.linalg.det(g).abs().sqrt()
    return (torch.linalg.det(g).clamp_min(0) + eps).sqrt()


def volume(*vectors: torch.Tensor, eps: float | None = 1e-6) -> torch.Tensor:
    """The volume ``[N]`` spanned by row n of each of k batches ``[N, d]``:
    ``Vol = sqrt(det G)`` (GRAM's Eq. 3): ``sqrt(max(det G, 0) + eps)``, or with ``eps=None`` the
    official ``sqrt(|det G|)`` (the module docstring compares their gradients)."""
    eps is None or _validate.non_negative_number("eps", eps)      # None: the official form
    return _sqrt_det(gram_matrix(*vectors), eps)


def volume_matrix(anchor: torch.Tensor, others, eps: float | None = 1e-6) -> torch.Tensor:
    """``V[i, j] = Vol(anchor_i, others[0]_j, ..., others[k-2]_j)`` ``[N, M]``: the anchor of
    item i with the other modalities of item j, all pairs at once (GRAM's
    ``volume_computation``). ``anchor`` ``[N, d]``; ``others``: a list of ``[M, d]``; ``eps`` as
    in ``volume``."""
    eps is None or _validate.non_negative_number("eps", eps)      # None: the official form
    if not isinstance(others, (list, tuple)) or not others:
        raise ValueError(f"others: got {type(others).__name__}, "
                         "expected a non-empty list of [M, d] batches")
    names = [f"others[{k}]" for k in range(len(others))]
    a = _unit("anchor", anchor)
    o = _check_tuple(names, others) if len(others) > 1 else [_unit(names[0], others[0])]
    _validate.same_width("anchor", a, names[0], o[0])
    N, M, k = len(a), len(o[0]), 1 + len(o)
    g = a.new_empty(N, M, k, k)
    g[..., 0, 0] = 1.0
    for p, x in enumerate(o, start=1):
        g[..., 0, p] = g[..., p, 0] = a @ x.T                     # the anchor of i against item j
        for q, y in enumerate(o[p - 1:], start=p):
            g[..., p, q] = g[..., q, p] = (x * y).sum(-1)[None]   # within item j
    return _sqrt_det(g, eps)


def gram_loss(anchor: torch.Tensor, others, logit_scale, label_smoothing: float = 0.1,
              eps: float | None = 1e-6, members_fixed: bool = False) -> torch.Tensor:
    """GRAM's contrastive loss: logits ``-exp(logit_scale) * V``, ``V = volume_matrix(anchor,
    others)`` ``[N, N]`` (small: a good match), symmetric cross-entropy with label smoothing 0.1 as
    in ``model/gram.py`` (where tau itself is the parameter; here its log-inverse):

        L = 1/2 [ CE(-V / tau, I) + CE(-V^T / tau, I) ],   1 / tau = exp(logit_scale)

    ``members_fixed`` (an ablation, not GRAM): in V = Vol(X_j) dist(anchor_i, span X_j) the
    members' volume gets no gradient; only the distance trains."""
    if not 0.0 <= float(label_smoothing) < 1.0:
        raise ValueError(f"label_smoothing: got {label_smoothing!r}, expected a number in [0, 1)")
    logit_scale = _validate.scalar("logit_scale", logit_scale)
    V = volume_matrix(anchor, others, eps)
    if V.shape[0] != V.shape[1]:
        raise ValueError(f"anchor and others: got {V.shape[0]} and {V.shape[1]} rows, "
                         "expected the same (pairs)")
    if members_fixed:
        spread = volume(*others, eps=eps)[None]                   # [1, N]: Vol(X_j)
        V = V / spread * spread.detach()
    logits = -logit_scale.exp() * V
    labels = torch.arange(len(V), device=V.device)
    return (F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
            + F.cross_entropy(logits.T, labels, label_smoothing=label_smoothing)) / 2


def anchor_loss(anchor: torch.Tensor, others: dict, logit_scales: dict) -> torch.Tensor:
    """ImageBind's objective: the symmetric InfoNCE of every other modality against the anchor
    (the image), summed; no pair without the anchor is ever seen:

        L = sum_m 1/2 [ CE(s_m A M^T, I) + CE(s_m M A^T, I) ]

    ``anchor`` ``[N, d]``; ``others`` ``{name: [N, d]}``; ``logit_scales`` ``{name: log s_m}``
    (ImageBind: the text's learned, fixed ln 20 for audio)."""
    if not isinstance(others, dict) or not others:
        raise ValueError(f"others: got {type(others).__name__}, "
                         "expected a dict of modality embeddings")
    if not isinstance(logit_scales, dict) or set(logit_scales) != set(others):
        raise ValueError(
            "logit_scales: got keys "
            f"{sorted(logit_scales) if isinstance(logit_scales, dict) else logit_scales!r}, "
            f"expected one per modality in others {sorted(others)}")
    a = _unit("anchor", anchor)
    total = 0.0
    for name, x in others.items():
        x = _unit(f"others[{name!r}]", x)
        _validate.same_rows("anchor", a, f"others[{name!r}]", x)
        _validate.same_width("anchor", a, f"others[{name!r}]", x)
        total = total + losses.clip_loss(a, x, _validate.scalar(f"logit_scales[{name!r}]",
                                                                logit_scales[name]))
    return total


def all_pairs_loss(embeddings: dict, logit_scale) -> torch.Tensor:
    """The symmetric CLIP loss summed over every pair of modalities (k(k-1)/2 pairs):
    what most 'multimodal CLIP' code trains. ``embeddings`` ``{name: [N, d]}``, at least two."""
    if not isinstance(embeddings, dict) or len(embeddings) < 2:
        got = len(embeddings) if isinstance(embeddings, dict) else type(embeddings).__name__
        raise ValueError(f"embeddings: got {got}, expected a dict of at least two modalities")
    names = list(embeddings)
    z = _check_tuple(names, [embeddings[n] for n in names])
    s = _validate.scalar("logit_scale", logit_scale)
    return sum(losses.clip_loss(z[p], z[q], s) for p in range(len(z)) for q in range(p + 1, len(z)))


class Heads(torch.nn.Module):
    """One trainable head per modality on frozen backbone features pooled over their tokens:
    ``forward(name, x [N, w_m])`` -> unit embeddings ``[N, dim]`` through Linear-GELU-Linear.
    ``widths``: ``{name: w_m}``. Each modality's head is ``heads.heads[name]`` (a
    ``Sequential``: freeze one with ``heads.heads["image"].requires_grad_(False)``)."""

    def __init__(self, widths: dict, dim: int = 64, hidden: int = 256):
        super().__init__()
        if not isinstance(widths, dict) or not widths:
            raise ValueError(f"widths: got {widths!r}, "
                             "expected a dict such as {'image': 64, 'text': 384}")
        _validate.positive_int("dim", dim), _validate.positive_int("hidden", hidden)
        self.heads = torch.nn.ModuleDict({m: torch.nn.Sequential(
            torch.nn.Linear(_validate.positive_int(f"widths[{m!r}]", w), hidden), torch.nn.GELU(),
            torch.nn.Linear(hidden, dim)) for m, w in widths.items()})

    def forward(self, name: str, x: torch.Tensor) -> torch.Tensor:
        _validate.one_of("name", name, list(self.heads))
        _validate.tensor("x", x, 2, finite=False)
        return F.normalize(self.heads[name](x), dim=-1)

    @torch.no_grad()
    def embed(self, feats: dict) -> dict:
        """Every modality of ``feats`` ``{name: [N, w_name]}`` through its head, without
        gradient: ``{name: [N, dim]}`` unit embeddings."""
        if not isinstance(feats, dict):
            raise ValueError(f"feats: got {type(feats).__name__}, expected {{name: [N, w]}}")
        return {m: self(m, x) for m, x in feats.items()}


def fit_joint(heads: Heads, feats: dict, objective, extra_params=(), *, steps: int,
              batch_size: int = 128, lr: float = 1e-3, seed: int | None = None,
              progress: bool = True, desc: str = "training") -> dict:
    """Train ``heads`` (and ``extra_params``, e.g. a learnable temperature) on random batches of
    the same rows of every modality in ``feats`` ``{name: [N, w]}``: each step embeds the batch
    ``{name: [B, dim]}`` and minimises ``objective(embeddings)`` with ``train.fit`` (AdamW,
    weight decay 0.01 on matrices, 20 warm-up steps, cosine). ``seed`` draws the batches (None:
    ``TUTORLIB_SEED``). Returns the history."""
    from ..training import train
    if not isinstance(feats, dict) or not feats or set(feats) - set(heads.heads):
        raise ValueError("feats: got keys "
                         f"{sorted(feats) if isinstance(feats, dict) else feats!r}, "
                         f"expected modalities of the heads {sorted(heads.heads)}")
    n = {len(v) for v in feats.values()}
    if len(n) != 1:
        raise ValueError(f"feats: got {n} rows across modalities, "
                         "expected the same rows (item i in each)")
    n = n.pop()
    g = torch.Generator().manual_seed(get_seed(seed))

    def loss_fn(idx):
        return objective({m: heads(m, x[idx]) for m, x in feats.items()})

    params = train.decay_groups([*heads.parameters(), *extra_params], 0.01)
    return train.fit(loss_fn, params, lambda step: torch.randint(n, (batch_size,), generator=g),
                     steps=steps, lr=lr, warmup=20, progress=progress, desc=desc)


METHODS = ("ImageBind", "all pairs", "GRAM")      # lesson 06's three ways to bind four modalities
ABLATION = "GRAM, members' volume fixed"          # gram_loss(..., members_fixed=True)


def method_loss(method: str, logit_scale, anchor_scale: float = math.log(20)):
    """The loss of one of ``METHODS`` as a function of a batch ``{modality: [B, d]}`` of image,
    text, audio and video: ``anchor_loss`` to the image (the text at ``logit_scale``, audio
    and video at the fixed ``anchor_scale``, ImageBind's ln 20), ``all_pairs_loss``, or
    ``gram_loss`` of the text against (image, audio, video), both at ``logit_scale`` (or
    ``ABLATION``: the same with ``members_fixed``)."""
    _validate.one_of("method", method, (*METHODS, ABLATION))
    if method == "ImageBind":
        scales = {"text": logit_scale, "audio": anchor_scale, "video": anchor_scale}
        return lambda e: anchor_loss(e["image"], {m: e[m] for m in scales}, scales)
    if method == "all pairs":
        return lambda e: all_pairs_loss(e, logit_scale)
    return lambda e: gram_loss(e["text"], [e["image"], e["audio"], e["video"]], logit_scale,
                               members_fixed=method == ABLATION)


def initial_heads(widths: dict, dim: int, seed: int | None = None) -> Heads:
    """The heads every method of ``train_heads`` starts from under ``seed`` (None:
    ``TUTORLIB_SEED``), untrained: the starting point a trained model is compared with.
    ``widths``: ``{name: w_m}``."""
    torch.manual_seed(get_seed(seed))
    return Heads(widths, dim)


def train_heads(method: str, feats: dict, dim: int, start: Heads | None = None, *, steps: int,
                batch_size: int = 128, lr: float = 1e-3, seed: int | None = None,
                anchor_scale: float = math.log(20), progress: bool = True) -> tuple[Heads, dict]:
    """One ``Heads`` per method, trained with ``method_loss(method, ...)`` on ``feats``
    ``{modality: [N, w]}`` by ``fit_joint``: from ``initial_heads(..., seed)`` (None:
    ``TUTORLIB_SEED``), so that every method starts from the same heads (or from ``start``'s
    weights, to continue another model), with a learnable log-scale from ln(1/0.07) that stays
    inside the loss. Returns the heads (in eval mode) and the history: the loss, and each step's
    ``tuple_geometry`` of the training batch (its matched cosines and volumes, step by step)
    and the learned scale ``1/tau``. ``method``: one of ``METHODS``, or ``ABLATION``."""
    _validate.one_of("method", method, (*METHODS, ABLATION))
    if not isinstance(feats, dict) or not feats:
        raise ValueError(f"feats: got {type(feats).__name__}, expected a dict {{name: [N, w]}}")
    if start is not None and not isinstance(start, Heads):
        raise ValueError(f"start: got {type(start).__name__}, expected None or a binding.Heads")
    seed = get_seed(seed)
    heads = initial_heads({m: x.shape[1] for m, x in feats.items()}, dim, seed)
    if start is not None:                         # continue from another model's heads
        heads.load_state_dict(start.state_dict())
    scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    loss = method_loss(method, scale, anchor_scale)

    def objective(e):
        geometry = tuple_geometry({m: x.detach() for m, x in e.items()})
        return {"loss": loss(e), **geometry, "1/tau": scale.exp().item()}
    history = fit_joint(heads, feats, objective, [scale], steps=steps, batch_size=batch_size,
                        lr=lr, seed=seed, progress=progress, desc=method)
    return heads.eval(), history


def tuple_geometry(emb: dict) -> dict[str, float]:
    """How matched tuples sit, averaged over the ``N`` rows of ``emb`` (unit ``[N, d]`` text,
    image, audio and video, row i of each the same scene): the cosines of image with audio, of
    image with video and of text with image; the volume of (image, audio, video); and the
    text's distance to their span, ``Vol(t, i, a, v) / Vol(i, a, v)``."""
    names = ("text", "image", "audio", "video")
    missing = [m for m in names if not isinstance(emb, dict) or m not in emb]
    if missing:
        raise ValueError(f"emb: got no {missing}, expected a dict of {list(names)} [N, d]")
    t, i, a, v = (emb[m] for m in names)
    vol_x = volume(i, a, v)
    return {"cos(image, audio)": (i * a).sum(-1).mean().item(),
            "cos(image, video)": (i * v).sum(-1).mean().item(),
            "cos(text, image)": (t * i).sum(-1).mean().item(),
            "Vol(image, audio, video)": vol_x.mean().item(),
            "dist(text, span)": (volume(t, i, a, v) / vol_x).mean().item()}


def sign_blind_similarity(query: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    """``|<q_i, g_j>|`` ``[Nq, Ng]`` of unit rows ``[Nq, d]`` and ``[Ng, d]``: ranking by it
    (highest first) ranks by the two-vector volume ``|sin theta|`` (smallest first), blind to
    signs as GRAM's volume is."""
    _validate.tensor("query", query, 2, finite=False)
    _validate.tensor("gallery", gallery, 2, finite=False)
    _validate.same_width("query", query, "gallery", gallery)
    return (query @ gallery.T).abs()
