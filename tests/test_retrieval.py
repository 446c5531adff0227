"""tutorlib.evaluation.retrieval against plain loops: positives by modality pair, recall@k
from scores and from embeddings, and the query x gallery table."""
import math

import pytest
import torch

from tutorlib.evaluation import metrics, retrieval


def _world(n=12, m=9, seed=0):
    """``n`` one-object scenes over few values (so scenes repeat) and ``m`` captions that name
    only some attributes (so a caption fits several scenes)."""
    g = torch.Generator().manual_seed(seed)
    attrs = torch.full((n, 2, 4), -1, dtype=torch.long)
    attrs[:, 0] = torch.randint(0, 2, (n, 4), generator=g)
    spec = torch.full((m, 9), -1, dtype=torch.long)
    spec[:, :4] = torch.randint(0, 2, (m, 4), generator=g)
    spec[:, :4][torch.rand(m, 4, generator=g) < 0.4] = -1          # unnamed attributes
    spec[:, 8] = 0                                                 # no relation
    return attrs, spec


def _satisfies_loop(attrs, spec):
    out = torch.zeros(len(attrs), len(spec), dtype=torch.bool)
    for i in range(len(attrs)):
        for j in range(len(spec)):
            out[i, j] = all(spec[j, k] < 0 or attrs[i, 0, k] == spec[j, k] for k in range(4))
    return out


def _recall_loop(scores, positives, k):
    """For each query, sort the gallery by score (highest first, ties by index) and look at k."""
    hits = 0
    for i in range(len(scores)):
        order = sorted(range(scores.shape[1]), key=lambda j: (-float(scores[i, j]), j))
        hits += any(bool(positives[i, j]) for j in order[:k])
    return hits / len(scores)


def test_scene_positives_match_a_loop_in_every_direction():
    attrs, spec = _world()
    pos = retrieval.scene_positives(attrs, spec)
    sat = _satisfies_loop(attrs, spec)
    same = torch.tensor([[bool((attrs[i, 0] == attrs[j, 0]).all()) for j in range(len(attrs))]
                         for i in range(len(attrs))])
    assert torch.equal(pos("image", "text"), sat) and torch.equal(pos("audio", "text"), sat)
    assert torch.equal(pos("text", "image"), sat.T) and torch.equal(pos("text", "video"), sat.T)
    assert torch.equal(pos("image", "audio"), same) and torch.equal(pos("video", "video"), same)
    assert pos.chance("image", "text") == pytest.approx(sat.float().mean().item())
    assert pos.chance("audio", "image") == pytest.approx(same.float().mean().item())
    assert bool(same.diagonal().all())


def test_scene_positives_refuse_what_they_cannot_answer():
    attrs, spec = _world()
    pos = retrieval.scene_positives(attrs, spec)
    with pytest.raises(ValueError, match="query, gallery: got 'text' twice"):
        pos("text", "text")
    with pytest.raises(ValueError, match="query: got int"):
        pos(0, "text")
    with pytest.raises(ValueError, match="same_object: got shape"):
        retrieval.ScenePositives(torch.ones(3, 2, dtype=torch.bool), torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="satisfies: got dtype"):
        retrieval.ScenePositives(torch.ones(3, 2), torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="attrs: got a tensor of shape"):
        retrieval.scene_positives(attrs[:, 0], spec)


@pytest.mark.parametrize("k", [1, 2, 3, 7])
def test_recall_from_scores_matches_a_loop(k):
    g = torch.Generator().manual_seed(k)
    scores = torch.randn(15, 7, generator=g)
    positives = torch.rand(15, 7, generator=g) < 0.2
    assert retrieval.recall_from_scores(scores, positives, k) == pytest.approx(_recall_loop(scores, positives, k))


def test_recall_from_scores_breaks_a_tie_at_k1_for_the_first_item():
    scores = torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0]])
    positives = torch.tensor([[True, False, False], [False, False, True]])
    assert retrieval.recall_from_scores(scores, positives) == 0.5       # row 0: item 0 wins; row 1: item 1
    assert retrieval.recall_from_scores(-scores, positives.float()) == 0.0    # a 0/1 mask works too


def test_recall_from_scores_validates():
    s, p = torch.randn(4, 3), torch.ones(4, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"positives: got shape \(3, 4\), expected \(4, 3\)"):
        retrieval.recall_from_scores(s, p.T)
    with pytest.raises(ValueError, match="k: got 4, expected at most the 3 gallery items"):
        retrieval.recall_from_scores(s, p, 4)
    with pytest.raises(ValueError, match="k: got 0"):
        retrieval.recall_from_scores(s, p, 0)
    with pytest.raises(ValueError, match="scores: got list"):
        retrieval.recall_from_scores([[1.0]], p)


def _embeddings(n=12, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(n, d, generator=g) for m in ("image", "text", "audio")}


def test_recall_is_metrics_recall_at_k_with_the_pairs_positives():
    attrs, spec = _world(n=12, m=12)
    pos, emb = retrieval.scene_positives(attrs, spec), _embeddings()
    for q, g in (("image", "text"), ("text", "audio"), ("audio", "image")):
        for k in (1, 3):
            got = retrieval.recall(emb, pos, q, g, k)
            assert got == metrics.recall_at_k(emb[q], emb[g], k, pos(q, g))
            cos = torch.nn.functional.normalize(emb[q], dim=-1) @ torch.nn.functional.normalize(emb[g], dim=-1).T
            assert got == pytest.approx(_recall_loop(cos, pos(q, g), k))


def test_recall_table_fills_every_direction_by_cosine_or_by_a_score():
    attrs, spec = _world(n=12, m=12)
    pos, emb = retrieval.scene_positives(attrs, spec), _embeddings()
    table = retrieval.recall_table(emb, pos, ("audio", "image", "text"), k=2)
    assert list(table.index) == list(table.columns) == ["audio", "image", "text"]
    assert (table.index.name, table.columns.name) == ("query", "gallery")
    for q in table.index:
        for g in table.columns:
            if q == g:
                assert math.isnan(table.loc[q, g])
            else:
                assert table.loc[q, g] == retrieval.recall(emb, pos, q, g, 2)
    neg_dist = lambda a, b: -torch.cdist(a, b)                     # noqa: E731
    by_distance = retrieval.recall_table(emb, pos, score=neg_dist)
    assert list(by_distance.index) == list(emb)
    assert by_distance.loc["text", "image"] == pytest.approx(
        _recall_loop(-torch.cdist(emb["text"], emb["image"]), pos("text", "image"), 1))


def test_recall_table_validates():
    attrs, spec = _world(n=12, m=12)
    pos, emb = retrieval.scene_positives(attrs, spec), _embeddings()
    with pytest.raises(ValueError, match=r"modalities: got \['video'\]"):
        retrieval.recall_table(emb, pos, ("image", "video"))
    with pytest.raises(ValueError, match="modalities: got \\['image'\\], expected at least two"):
        retrieval.recall_table(emb, pos, ("image",))
    with pytest.raises(ValueError, match="emb: got list"):
        retrieval.recall_table([emb["image"]], pos)
    with pytest.raises(ValueError, match="positives: got Tensor"):
        retrieval.recall_table(emb, pos("image", "text"))
    with pytest.raises(ValueError, match="score: got str"):
        retrieval.recall_table(emb, pos, score="cosine")
