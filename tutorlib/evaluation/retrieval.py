"""Retrieval between modalities, scored against the world's ground truth (lessons 05-07).

Many test scenes share a caption, and two scenes may hold the same object on different
backgrounds. So a retrieved item is correct when it *matches*: for a caption, every scene
that satisfies it (``world.matches``); between two scene modalities (image, audio, video),
every scene with the same object. ``ScenePositives`` holds both masks and answers
``positives(query, gallery)`` for any ordered pair of modalities. ``recall`` scores one
direction with it, ranked by cosine (``metrics.recall_at_k``) or by any other score, and
``recall_table`` every direction, as a query x gallery table; ``recall_from_scores`` is
recall@k of one score matrix.

    positives = scene_positives(attrs, caption_spec)        # attrs [N, 2, 4], specs [N, 9]
    positives("text", "image")                               # [N captions, N scenes] bool
    positives.chance("image", "audio")                       # the share of positives
    recall(emb, positives, "text", "audio", k=1)             # emb: {modality: [N, d]}
    table = recall_table({"image": img, "text": txt, "audio": aud}, positives)   # DataFrame
    recall_from_scores(-volumes, positives("text", "image"))  # rank by any score, highest first
"""
from __future__ import annotations

import torch

from ..core import _validate
from .. import world
from . import metrics


class ScenePositives:
    """Which gallery items are correct for each query, by (query modality, gallery modality).

    ``satisfies`` ``[N scenes, M captions]`` bool: scene i satisfies caption j.
    ``same_object`` ``[N, N]`` bool: scenes i and j hold the same object.
    ``positives(query, gallery)`` is ``satisfies.T`` ``[M, N]`` for a caption query
    (``query == text``), ``satisfies`` ``[N, M]`` for a scene query against captions, and
    ``same_object`` ``[N, N]`` between two scene modalities (the same modality included).
    """

    def __init__(self, satisfies: torch.Tensor, same_object: torch.Tensor, text: str = "text"):
        _validate.tensor("satisfies", satisfies, 2, floating=False)
        _validate.tensor("same_object", same_object, 2, floating=False)
        for name, mask in (("satisfies", satisfies), ("same_object", same_object)):
            if mask.dtype != torch.bool:
                raise ValueError(f"{name}: got dtype {mask.dtype}, expected a bool mask")
        if same_object.shape != (len(satisfies), len(satisfies)):
            n = len(satisfies)
            raise ValueError(f"same_object: got shape {tuple(same_object.shape)}, expected "
                             f"[{n}, {n}] (a row and a column per scene)")
        if not isinstance(text, str):
            raise ValueError(f"text: got {type(text).__name__}, expected the captions' modality")
        self.satisfies, self.same_object, self.text = satisfies, same_object, text

    def __call__(self, query: str, gallery: str) -> torch.Tensor:
        """The positives ``[N_query, N_gallery]`` bool of ``query`` against ``gallery`` items."""
        for name, modality in (("query", query), ("gallery", gallery)):
            if not isinstance(modality, str):
                raise ValueError(f"{name}: got {type(modality).__name__}, expected a modality")
        if query == gallery == self.text:
            raise ValueError(f"query, gallery: got {query!r} twice, expected at most one caption "
                             "side (scenes say which captions match; captions say nothing of "
                             "each other)")
        if query == self.text:
            return self.satisfies.T
        return self.satisfies if gallery == self.text else self.same_object

    def chance(self, query: str, gallery: str) -> float:
        """The share of positives among all (query, gallery) pairs: a random ranking's recall@1."""
        return self(query, gallery).float().mean().item()


def scene_positives(attrs: torch.Tensor, caption_spec: torch.Tensor) -> ScenePositives:
    """The positives of ``N`` scenes of one-object worlds and their ``M`` captions: ``attrs``
    ``[N, 2, 4]`` (``world.scene_attributes``), ``caption_spec`` ``[M, 9]`` long (the
    ``caption_spec`` tensor of the dataset). Two scenes hold the same object when their first
    objects agree on shape, colour, size and position."""
    satisfies = world.matches(attrs, caption_spec)                      # validates both
    same_object = (attrs[:, None, 0] == attrs[None, :, 0]).all(-1)      # [N, N]
    return ScenePositives(satisfies, same_object)


def recall_from_scores(scores: torch.Tensor, positives: torch.Tensor, k: int = 1) -> float:
    """Recall@k of a score matrix: the fraction of queries (rows of ``scores`` ``[Nq, Ng]``,
    higher = better) whose top ``k`` gallery items hold a positive (``positives`` ``[Nq, Ng]``
    bool). At ``k = 1`` a tie goes to the first gallery item, as ``argmax`` breaks it; to rank
    by a distance, pass its negation."""
    _validate.tensor("scores", scores, 2, finite=False)
    _validate.tensor("positives", positives, 2, floating=False)
    if positives.shape != scores.shape:
        raise ValueError(f"positives: got shape {tuple(positives.shape)}, expected "
                         f"{tuple(scores.shape)} (the shape of scores)")
    if _validate.positive_int("k", k) > scores.shape[1]:
        raise ValueError(f"k: got {k}, expected at most the {scores.shape[1]} gallery items")
    top = scores.argmax(1, keepdim=True) if k == 1 else scores.topk(k, dim=1).indices
    return positives.bool().gather(1, top.to(positives.device)).any(1).float().mean().item()


def _check_emb(emb, names, positives, score) -> None:
    if not isinstance(emb, dict) or not emb:
        raise ValueError(f"emb: got {type(emb).__name__}, expected a dict {{modality: [N, d]}}")
    missing = [m for m in names if m not in emb]
    if missing:
        raise ValueError(f"modalities: got {missing}, expected keys of emb {list(emb)}")
    if not callable(positives):
        raise ValueError(f"positives: got {type(positives).__name__}, expected a callable "
                         "(query, gallery) -> [Nq, Ng] bool, such as a ScenePositives")
    if score is not None and not callable(score):
        raise ValueError(f"score: got {type(score).__name__}, expected None (cosine) or a "
                         "callable (query_emb, gallery_emb) -> [Nq, Ng] scores")


def recall(emb: dict, positives, query: str, gallery: str, k: int = 1, score=None) -> float:
    """Recall@k of ``query`` items against ``gallery`` items: ``emb`` ``{modality: [N_m, d]}``,
    ``positives(query, gallery)`` -> ``[N_query, N_gallery]`` bool (a ``ScenePositives``).
    ``score=None`` ranks by cosine, ``metrics.recall_at_k(emb[query], emb[gallery], k,
    positives(query, gallery))``; otherwise ``score(emb[query], emb[gallery])`` ``[N_query,
    N_gallery]`` ranks, highest first (``recall_from_scores``)."""
    _check_emb(emb, [query, gallery], positives, score)
    if score is None:
        return metrics.recall_at_k(emb[query], emb[gallery], k, positives(query, gallery))
    return recall_from_scores(score(emb[query], emb[gallery]), positives(query, gallery), k)


def recall_table(emb: dict, positives, modalities=None, k: int = 1, score=None):
    """``recall`` of every ordered pair of ``modalities`` (default: ``emb``'s keys, in order) as
    a ``pandas.DataFrame``: index ``query``, columns ``gallery``, NaN on the diagonal."""
    import pandas as pd
    _check_emb(emb, [], positives, score)
    names = list(emb if modalities is None else modalities)
    if len(names) < 2:
        raise ValueError(f"modalities: got {names}, expected at least two modalities")
    _check_emb(emb, names, positives, score)
    table = pd.DataFrame({g: {q: recall(emb, positives, q, g, k, score) if q != g else float("nan")
                              for q in names} for g in names})
    return table.rename_axis(index="query", columns="gallery")
