"""A tuple with one member swapped (lesson 06): can a score tell it from the matched tuple?

Take scene i's caption with its image, sound and video; swap one member for another scene's
(a partner drawn by ``random_partner``) and score both tuples. The ROC AUC of matched against
mismatched scores says how well a score sees the swap: 0.5 is blind, 1 separates them. The
design is paired (each swapped tuple keeps its scene's caption and other members), so the
paired win rate, how often a scene's matched tuple outscores its own swapped one, is reported
too (``measure="win rate"``).

    partner = random_partner(allowed, generator)        # [N]: a scene per scene, -1 if none
    auc = mismatch_auc(heads, caption_feats, {"image": fi, "audio": fa, "video": fv},
                       partner, score)                   # DataFrame: score x swapped member
    se = null_se(n, "auc")                               # one standard error of a blind score
"""
from __future__ import annotations

import torch

from ..core import _validate
from . import metrics


def random_partner(allowed: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """For each row i of ``allowed`` ``[N, M]`` bool, one column j drawn uniformly among its
    True entries with ``generator`` (row by row, one draw per row that has any), or -1 for a
    row with none: ``[N]`` long."""
    _validate.tensor("allowed", allowed, 2, floating=False)
    if allowed.dtype != torch.bool:
        raise ValueError(f"allowed: got dtype {allowed.dtype}, expected a bool mask")
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator: got {type(generator).__name__}, expected a torch.Generator")
    picks = [row.nonzero()[:, 0] for row in allowed]
    return torch.tensor([int(p[torch.randint(len(p), (1,), generator=generator)]) if len(p) else -1
                         for p in picks], dtype=torch.long)


def _check(text, feats, partner, score) -> None:
    _validate.tensor("text", text, 2, finite=False)
    if not isinstance(feats, dict) or not feats:
        raise ValueError(f"feats: got {type(feats).__name__}, expected a dict {{member: [N, w]}}")
    for name, f in feats.items():
        _validate.tensor(f"feats[{name!r}]", f, 2, finite=False)
        _validate.same_rows("text", text, f"feats[{name!r}]", f)
    _validate.tensor("partner", partner, 1, floating=False)
    _validate.same_rows("text", text, "partner", partner)
    if not bool((partner >= 0).any()) or int(partner.max()) >= len(text):
        raise ValueError(f"partner: expected row indices in 0..{len(text) - 1} (-1: none), "
                         "and at least one row with a partner")
    if not callable(score):
        raise ValueError(f"score: got {type(score).__name__}, expected a callable "
                         "(text [n, d], {member: [n, d]}) -> {score name: [n]}")


def null_se(n: int, measure: str = "auc") -> float:
    """One standard error of a blind score (0.5) over ``n`` scenes: for the AUC of n matched
    against n swapped tuples, sqrt((2n + 1) / (12 n^2)) (Mann-Whitney); for the paired win
    rate, 0.5 / sqrt(n) (a fair coin per scene)."""
    n = _validate.positive_int("n", n)
    _validate.one_of("measure", measure, MEASURES)
    return ((2 * n + 1) / (12 * n * n)) ** 0.5 if measure == "auc" else 0.5 / n ** 0.5


MEASURES = ("auc", "win rate")


def _win_rate(matched: torch.Tensor, wrong: torch.Tensor) -> float:
    return ((matched > wrong).float() + 0.5 * (matched == wrong).float()).mean().item()


@torch.no_grad()
def mismatch_auc(heads, text: torch.Tensor, feats: dict, partner: torch.Tensor, score,
                 measure: str = "auc"):
    """The ROC AUC (or, with ``measure="win rate"``, the paired win rate: the share of scenes
    whose matched tuple scores above its own swapped one, ties one half) of matched against
    mismatched tuples, for every score and every member.

    ``heads(name, x)`` embeds features (a ``binding.Heads``); ``text`` ``[N, w]`` are the
    captions' features, ``feats`` ``{member: [N, w_member]}`` the tuple's members (row i of
    each: scene i); ``partner`` ``[N]`` (``random_partner``) the scene whose member replaces
    row i's (rows with -1 are left out). ``score(t [n, d], members {name: [n, d]})`` returns
    ``{score name: [n]}``, higher for a matched tuple. Returns a ``pandas.DataFrame``: a row
    per score, a column per swapped member, ``metrics.roc_auc`` (or the win rate) in each cell."""
    import pandas as pd
    _check(text, feats, partner, score)
    _validate.one_of("measure", measure, MEASURES)
    compare = metrics.roc_auc if measure == "auc" else _win_rate
    keep = partner >= 0
    t = heads("text", text[keep])
    x = {m: heads(m, f[keep]) for m, f in feats.items()}
    matched, columns = score(t, x), {}
    for swapped in x:
        wrong = score(t, {**x, swapped: heads(swapped, feats[swapped][partner[keep]])})
        columns[swapped] = {s: compare(matched[s], wrong[s]) for s in matched}
    return pd.DataFrame(columns)
