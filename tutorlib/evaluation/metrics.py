"""How good is an embedding space? Retrieval, zero-shot accuracy, and its geometry.

All take embeddings ``[N, d]`` (normalised inside where it matters).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core import _validate


def _emb(name, x):
    return F.normalize(_validate.tensor(name, x, 2).float(), dim=-1)


def _self_mask(q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``[N, N]`` True on the diagonal: each query's own item, when query and gallery are
    the same set (row i = item i)."""
    _validate.same_rows("query_emb", q, "gallery_emb", g)
    return torch.eye(len(q), dtype=torch.bool, device=q.device)


def _checked(query_emb, gallery_emb, k, positives, exclude_self):
    """``recall_at_k``'s inputs, checked: ``(query [Nq, d], gallery [Ng, d], positives [Nq, Ng])``."""
    q, g = _emb("query_emb", query_emb), _emb("gallery_emb", gallery_emb)
    _validate.same_width("query_emb", q, "gallery_emb", g)
    _validate.positive_int("k", k)
    if positives is None and exclude_self:
        raise ValueError("exclude_self: got True without positives, expected a positives mask "
                         "(the default positives are the diagonal it would remove)")
    if positives is None:
        _validate.same_rows("query_emb", q, "gallery_emb", g)
        positives = torch.eye(len(q), dtype=torch.bool, device=q.device)
    elif positives.shape != (len(q), len(g)):
        raise ValueError(f"positives: got shape {tuple(positives.shape)}, "
                         f"expected [{len(q)}, {len(g)}]")
    return q, g, positives


def _recall(sim: torch.Tensor, k: int, positives: torch.Tensor, rankable: int) -> float:
    """Recall@k from query-by-gallery similarities ``sim`` ``[Nq, Ng]``."""
    top = sim.topk(min(k, rankable), dim=1).indices
    return positives.bool().gather(1, top).any(1).float().mean().item()


def recall_at_k(query_emb: torch.Tensor, gallery_emb: torch.Tensor, k: int = 1,
                positives: torch.Tensor | None = None, exclude_self: bool = False) -> float:
    """Fraction of queries with a correct item among their top ``k`` gallery items.

    ``positives`` ``[Nq, Ng]`` bool marks every correct gallery item (default: the
    diagonal). Ties: an item counts as correct if *any* positive is in the top k, so a
    scene whose caption is identical to another scene's is not punished for the other.
    ``exclude_self=True`` when query and gallery are the same set (row i = item i): each
    query's own item is left out of its ranking.
    """
    q, g, positives = _checked(query_emb, gallery_emb, k, positives, exclude_self)
    sim = q @ g.T
    if exclude_self:
        sim = sim.masked_fill(_self_mask(q, g), -float("inf"))
    return _recall(sim, k, positives, len(g) - int(exclude_self))


def retrieval(image_emb, text_emb, ks=(1, 5), positives=None) -> dict[str, float]:
    """Recall@k both ways: ``{"i2t@1": ..., "t2i@1": ..., ...}``. ``positives``
    ``[N_img, N_txt]`` as in ``recall_at_k`` (its transpose is used for text->image). One
    similarity matrix serves both ways: text->image ranks its transpose (on the CPU the same
    numbers as text @ imageᵀ, to the last bit, at the course's sizes)."""
    if isinstance(ks, int) or not list(ks):
        raise ValueError(f"ks: got {ks!r}, expected a non-empty list of k")
    img, txt, positives = _checked(image_emb, text_emb, max(_validate.positive_int("ks", k) for k in ks),
                                   positives, False)
    sim, out = img @ txt.T, {}
    for k in ks:
        out[f"i2t@{k}"] = _recall(sim, k, positives, len(txt))
        out[f"t2i@{k}"] = _recall(sim.T, k, positives.T, len(img))
    return out


def zero_shot_accuracy(image_emb: torch.Tensor, class_emb: torch.Tensor,
                       labels: torch.Tensor, tie_tol: float = 1e-6) -> float:
    """Accuracy of predicting ``argmax_c cos(image_i, class_c)``: images ``[N, d]``,
    one prompt embedding per class ``[C, d]``, true class indices ``[N]``.

    When k classes tie for the top (cosines within ``tie_tol``, e.g. prompts a word-level
    tokenizer reads as the same ``a <unk>``), the true class among them scores 1/k: the
    expected accuracy of breaking the tie at random, not a free win for class 0."""
    x, c = _emb("image_emb", image_emb), _emb("class_emb", class_emb)
    _validate.same_width("image_emb", x, "class_emb", c)
    _validate.tensor("labels", labels, 1, floating=False)
    _validate.same_rows("image_emb", x, "labels", labels)
    if bool((labels < 0).any()) or bool((labels >= len(c)).any()):
        raise ValueError(f"labels: expected class indices in 0..{len(c) - 1}")
    _validate.non_negative_number("tie_tol", tie_tol)
    sims = x @ c.T
    top = sims >= sims.max(1, keepdim=True).values - tie_tol     # [N, C] tied for the top
    hit = top.gather(1, labels.to(x.device)[:, None]).squeeze(1).float()
    return (hit / top.sum(1)).mean().item()


def alignment(x: torch.Tensor, y: torch.Tensor, alpha: float = 2.0) -> float:
    """Wang & Isola (2020): E ||x_i - y_i||^alpha over matched, normalised pairs
    (lower: better aligned)."""
    x, y = _emb("x", x), _emb("y", y)
    _validate.same_rows("x", x, "y", y)
    _validate.same_width("x", x, "y", y)
    return (x - y).norm(dim=1).pow(alpha).mean().item()


def relative_alignment(image_emb: torch.Tensor, text_emb: torch.Tensor) -> float:
    """The alignment the m2-mix code reports (``rel_lalign_torch``): for each caption
    ``y_i`` (the anchor), ``||y_i - x_i||^2 - min_{j != i} ||y_i - x_j||^2`` over normalised
    ``[N, d]`` pairs, averaged. Negative: each caption is nearer its own image than any
    other; unlike Wang & Isola's alignment, it does not change when both clouds move."""
    x, y = _emb("image_emb", image_emb), _emb("text_emb", text_emb)
    _validate.same_rows("image_emb", x, "text_emb", y)
    _validate.same_width("image_emb", x, "text_emb", y)
    if len(x) < 2:
        raise ValueError(f"image_emb: got {len(x)} rows, expected at least 2")
    d = torch.cdist(y, x).pow(2)                                   # [N, N]: caption i to image j
    neg = d.masked_fill(torch.eye(len(x), dtype=torch.bool, device=d.device),
                        float("inf")).min(1).values
    return (d.diagonal() - neg).mean().item()


def uniformity(x: torch.Tensor, t: float = 2.0) -> float:
    """Wang & Isola (2020): log E exp(-t ||x_i - x_j||^2) over distinct pairs
    (lower: more uniform)."""
    x = _emb("x", x)
    if len(x) < 2:
        raise ValueError(f"x: got {len(x)} rows, expected at least 2")
    _validate.positive_number("t", t)
    return torch.pdist(x).pow(2).mul(-t).exp().mean().log().item()


def modality_gap(x: torch.Tensor, y: torch.Tensor) -> float:
    """Liang et al. (2022): the distance between the centroids of the two modalities'
    normalised embeddings, ||mean(x_hat) - mean(y_hat)||."""
    x, y = _emb("x", x), _emb("y", y)
    _validate.same_width("x", x, "y", y)
    return (x.mean(0) - y.mean(0)).norm().item()


def binding_accuracy(image_emb: torch.Tensor, true_emb: torch.Tensor, swapped_emb: torch.Tensor,
                     tie_tol: float = 1e-6) -> float:
    """The binding-swap test (after Yuksekgonul et al. 2023): how often an image is closer
    to its true caption ``[N, d]`` than to the same caption with two objects' attributes
    swapped ``[N, d]`` ("a red circle and a blue square" vs "a blue circle and a red
    square"). Chance is 0.5; a bag-of-words text encoder sits exactly there."""
    x, t, s = (_emb("image_emb", image_emb), _emb("true_emb", true_emb),
               _emb("swapped_emb", swapped_emb))
    _validate.same_rows("image_emb", x, "true_emb", t)
    _validate.same_rows("image_emb", x, "swapped_emb", s)
    _validate.same_width("image_emb", x, "true_emb", t)
    _validate.same_width("image_emb", x, "swapped_emb", s)
    _validate.non_negative_number("tie_tol", tie_tol)
    margin = (x * t).sum(-1) - (x * s).sum(-1)
    tie = margin.abs() <= tie_tol
    return ((margin > 0) & ~tie).float().add(0.5 * tie.float()).mean().item()


def mean_average_precision(query_emb: torch.Tensor, gallery_emb: torch.Tensor,
                           query_labels: torch.Tensor, gallery_labels: torch.Tensor,
                           exclude_self: bool = False) -> float:
    """mAP of ranking the gallery by cosine to each query; relevant = same label.

    For one query with relevant items at ranks r_1 < r_2 < ... (1-based), AP is the mean
    of precision@r_j = j / r_j; mAP averages AP over queries that have any relevant item.
    ``exclude_self=True`` when query and gallery are the same set (row i = item i): each
    query's own item is left out of its ranking.
    """
    q, g = _emb("query_emb", query_emb), _emb("gallery_emb", gallery_emb)
    _validate.same_width("query_emb", q, "gallery_emb", g)
    for name, lab, emb in (("query_labels", query_labels, q),
                           ("gallery_labels", gallery_labels, g)):
        _validate.tensor(name, lab, 1, floating=False)
        if lab.is_floating_point():
            raise ValueError(f"{name}: got dtype {lab.dtype}, expected integer class labels")
        _validate.same_rows(name.replace("labels", "emb"), emb, name, lab)
    sim = q @ g.T
    rel = query_labels.to(q.device)[:, None] == gallery_labels.to(q.device)[None, :]
    if exclude_self:
        eye = _self_mask(q, g)
        sim, rel = sim.masked_fill(eye, -float("inf")), rel & ~eye
    order = sim.argsort(dim=1, descending=True)
    hits = rel.gather(1, order).float()                                    # [Q, G] in rank order
    precision = hits.cumsum(1) / torch.arange(1, hits.shape[1] + 1, device=q.device)
    n_rel = hits.sum(1)
    keep = n_rel > 0
    if not bool(keep.any()):
        raise ValueError("query_labels: no query has a relevant gallery item, so mAP is undefined")
    return ((precision * hits).sum(1)[keep] / n_rel[keep]).mean().item()


def roc_auc(positive_scores: torch.Tensor, negative_scores: torch.Tensor) -> float:
    """The area under the ROC curve: the probability that a random positive scores above a
    random negative (ties count one half), the Mann-Whitney statistic over ``[P]`` and ``[Q]``.
    0.5 is chance; 1 separates them perfectly."""
    _validate.tensor("positive_scores", positive_scores, 1)
    _validate.tensor("negative_scores", negative_scores, 1)
    if not len(positive_scores) or not len(negative_scores):
        raise ValueError("positive_scores, negative_scores: expected at least one score in each")
    p, n = positive_scores[:, None].double(), negative_scores[None, :].double()
    return ((p > n).double().mean() + 0.5 * (p == n).double().mean()).item()
