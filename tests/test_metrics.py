"""tutorlib.evaluation.metrics on hand-made examples."""
import math

import pytest
import torch

from tutorlib.evaluation import metrics


def _angles(degrees):
    """Unit vectors in 2-D at the given angles."""
    a = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([a.cos(), a.sin()], 1)


def test_recall_perfect():
    x = torch.eye(5)
    for k in (1, 2, 5, 10):
        assert metrics.recall_at_k(x, x, k) == 1.0
    assert metrics.recall_at_k(3 * x, x + 0.01, 1) == 1.0       # normalised inside


def test_recall_reversed_order():
    # gallery i sits exactly on query (n-1-i): every query's nearest item is the wrong one
    q = _angles([0, 20, 50, 90])
    g = q.flip(0)                       # the right item of query i is at angle q[n-1-i]
    # ranks of the right item: q0 -> 4th, q1 -> 3rd (0, 20, 30 deg away), q2 -> 2nd, q3 -> 4th
    assert metrics.recall_at_k(q, g, 1) == 0.0
    assert metrics.recall_at_k(q, g, 2) == pytest.approx(0.25)
    assert metrics.recall_at_k(q, g, 3) == pytest.approx(0.5)
    assert metrics.recall_at_k(q, g, 4) == 1.0


def test_recall_hand_example():
    q = _angles([0, 90, 180])
    g = _angles([10, 160, 100])
    # q0 (0): g0 is nearest (10 deg): hit at 1.
    # q1 (90): g2 (10 deg), then g1 (70 deg), then g0 (80 deg): hit at 2.
    # q2 (180): g1 (20 deg), then g2 (80 deg), then g0: hit at 2.
    assert metrics.recall_at_k(q, g, 1) == pytest.approx(1 / 3)
    assert metrics.recall_at_k(q, g, 2) == pytest.approx(1.0)


def test_recall_positives_ties():
    q = _angles([0, 90])
    g = _angles([5, 85, 180])
    pos = torch.tensor([[False, False, True], [True, True, False]])
    # query 0's top-1 is g0 (not a positive); query 1's top-1 is g1 (a positive)
    assert metrics.recall_at_k(q, g, 1, positives=pos) == pytest.approx(0.5)
    # query 1 has two positives: either counts, and it counts once
    pos2 = torch.tensor([[True, False, False], [True, True, False]])
    assert metrics.recall_at_k(q, g, 1, positives=pos2) == 1.0
    # non-square gallery works with positives, and k beyond the gallery is capped
    assert metrics.recall_at_k(q, g, 10, positives=pos) == 1.0
    # integer positives are accepted like bools
    assert metrics.recall_at_k(q, g, 1, positives=pos.long()) == pytest.approx(0.5)


def test_retrieval_keys_and_transpose():
    img = _angles([0, 90, 180])
    txt = _angles([10, 160, 100])
    r = metrics.retrieval(img, txt)
    assert set(r) == {"i2t@1", "t2i@1", "i2t@5", "t2i@5"}
    assert r["i2t@1"] == pytest.approx(1 / 3)
    # t2i: t0 (10) -> img0: hit; t1 (160) -> img2 (20 deg): miss; t2 (100) -> img1: miss
    assert r["t2i@1"] == pytest.approx(1 / 3)
    assert r["i2t@5"] == 1.0 and r["t2i@5"] == 1.0
    assert set(metrics.retrieval(img, txt, ks=(2,))) == {"i2t@2", "t2i@2"}
    # 2 images, 3 texts: positives [N_img, N_txt], transposed for text -> image
    img2, txt3 = _angles([0, 90]), _angles([10, 80, 170])
    pos = torch.tensor([[True, False, True], [False, True, False]])
    r = metrics.retrieval(img2, txt3, ks=(1,), positives=pos)
    assert r["i2t@1"] == 1.0                       # img0 -> t0, img1 -> t1
    assert r["t2i@1"] == pytest.approx(2 / 3)      # t2 (170) -> img1, but only img0 fits it


def test_recall_bad_input():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="query_emb"):
        metrics.recall_at_k(x[0], x)
    with pytest.raises(ValueError, match="gallery_emb"):
        metrics.recall_at_k(x, x.tolist())
    with pytest.raises(ValueError, match="query_emb"):
        metrics.recall_at_k(x, torch.randn(4, 2))
    with pytest.raises(ValueError, match="query_emb"):
        metrics.recall_at_k(x, torch.randn(5, 3))            # no positives: must pair
    with pytest.raises(ValueError, match=r"^k:"):
        metrics.recall_at_k(x, x, 0)
    with pytest.raises(ValueError, match="positives"):
        metrics.recall_at_k(x, x, 1, positives=torch.ones(4, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="query_emb"):
        metrics.recall_at_k(torch.full((4, 3), float("nan")), x)


def test_recall_at_1_can_leave_the_query_out():
    x = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.9, -0.1]])
    same = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.bool)
    assert metrics.recall_at_k(x, x, 1, positives=same) == 1.0                 # everyone finds itself
    # left out: 0 -> 2 (miss), 1 -> 0 (hit), 2 -> 0 (miss)
    assert metrics.recall_at_k(x, x, 1, positives=same, exclude_self=True) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="exclude_self"):
        metrics.recall_at_k(x, x, 1, exclude_self=True)


def test_map_against_a_hand_computed_example():
    # one query; gallery ranked by cosine: items 0 (rel), 1 (not), 2 (rel), 3 (not)
    q = torch.tensor([[1.0, 0.0]])
    g = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.5, 0.5], [0.0, 1.0]])
    ap = metrics.mean_average_precision(q, g, torch.tensor([7]), torch.tensor([7, 1, 7, 2]))
    assert ap == pytest.approx((1 / 1 + 2 / 3) / 2)
    # exclude_self: the query itself (row 0) would be a free hit
    x = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.9, -0.1]])
    lab = torch.tensor([0, 0, 1])
    # query 0 ranks [2 (not), 1 (rel)] -> AP 1/2; query 1 ranks [0 (rel), 2] -> 1; query 2 has none
    assert metrics.mean_average_precision(x, x, lab, lab, exclude_self=True) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="query_labels"):
        metrics.mean_average_precision(q, g, torch.tensor([7, 8]), torch.tensor([7, 1, 7, 2]))
    with pytest.raises(ValueError, match="gallery_labels"):
        metrics.mean_average_precision(q, g, torch.tensor([7]), torch.tensor([0.5, 1, 7, 2]))
    with pytest.raises(ValueError, match=r"^query_labels: no query has a relevant"):
        metrics.mean_average_precision(q, g, torch.tensor([9]), torch.tensor([7, 1, 7, 2]))


def test_zero_shot_accuracy():
    classes = _angles([0, 90, 180])
    images = _angles([10, 80, 100, 170, -20])
    labels = torch.tensor([0, 1, 1, 2, 2])
    # predictions: 0, 1, 1, 2, 0  -> 4 of 5 right
    assert metrics.zero_shot_accuracy(images, classes, labels) == pytest.approx(0.8)
    assert metrics.zero_shot_accuracy(images, classes, torch.tensor([0, 1, 1, 2, 0])) == 1.0
    assert metrics.zero_shot_accuracy(images, classes, torch.tensor([1, 0, 0, 0, 1])) == 0.0


def test_zero_shot_bad_input():
    classes, images = _angles([0, 90]), _angles([10, 80])
    with pytest.raises(ValueError, match="labels"):
        metrics.zero_shot_accuracy(images, classes, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="labels"):
        metrics.zero_shot_accuracy(images, classes, torch.tensor([0, -1]))
    with pytest.raises(ValueError, match="labels"):
        metrics.zero_shot_accuracy(images, classes, torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="labels"):
        metrics.zero_shot_accuracy(images, classes, torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match="class_emb"):
        metrics.zero_shot_accuracy(images, torch.randn(2, 3), torch.tensor([0, 1]))


def test_alignment():
    x = torch.randn(6, 4)
    assert metrics.alignment(x, x) == pytest.approx(0.0, abs=1e-12)
    assert metrics.alignment(x, 5 * x) == pytest.approx(0.0, abs=1e-10)
    # orthogonal unit pairs: ||x - y||^2 = 2, so alpha=2 gives 2 and alpha=1 gives sqrt 2
    a, b = _angles([0, 45]), _angles([90, 135])
    assert metrics.alignment(a, b) == pytest.approx(2.0)
    assert metrics.alignment(a, b, alpha=1) == pytest.approx(math.sqrt(2))
    # antipodal: ||x - y|| = 2
    assert metrics.alignment(a, -a) == pytest.approx(4.0)


def test_uniformity_explicit_formula():
    x = _angles([0, 90, 200, 310])
    for t in (1.0, 2.0, 0.5):
        terms = [math.exp(-t * float((x[i] - x[j]).pow(2).sum()))
                 for i in range(4) for j in range(4) if i != j]
        want = math.log(sum(terms) / len(terms))
        assert metrics.uniformity(x, t) == pytest.approx(want, rel=1e-6)
    # three points 120 degrees apart: every squared distance is 3
    tri = _angles([0, 120, 240])
    assert metrics.uniformity(tri) == pytest.approx(-6.0)
    # collapsed points: the worst possible value, 0
    assert metrics.uniformity(torch.ones(5, 3)) == pytest.approx(0.0, abs=1e-6)
    assert metrics.uniformity(tri) < metrics.uniformity(_angles([0, 10, 20]))


def test_modality_gap():
    x = torch.randn(7, 5)
    assert metrics.modality_gap(x, x) == pytest.approx(0.0, abs=1e-7)
    assert metrics.modality_gap(x, 3 * x) == pytest.approx(0.0, abs=1e-6)
    e = torch.zeros(4, 3)
    e[:, 0] = 1
    assert metrics.modality_gap(e, -e) == pytest.approx(2.0)
    assert metrics.modality_gap(2 * e, -e[:2]) == pytest.approx(2.0)   # sizes may differ
    assert metrics.modality_gap(_angles([0, 90]), _angles([180, 270])) == pytest.approx(math.sqrt(2))


def test_geometry_bad_input():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"\by\b"):
        metrics.alignment(x, torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"\by\b"):
        metrics.alignment(x, torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"^x\b"):
        metrics.alignment(x[0], x[0])
    with pytest.raises(ValueError, match=r"^x\b"):
        metrics.uniformity(x[:1])
    with pytest.raises(ValueError, match=r"^t:"):
        metrics.uniformity(x, t=0)
    with pytest.raises(ValueError, match=r"^x\b"):
        metrics.uniformity(torch.tensor([[float("inf"), 0.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match=r"\by\b"):
        metrics.modality_gap(x, torch.randn(4, 5))
    with pytest.raises(ValueError, match=r"^x\b"):
        metrics.modality_gap("x", x)


def test_binding_accuracy_counts_true_above_swapped():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    true = torch.tensor([[1.0, 0.1], [0.0, 2.0], [1.0, 0.0]])
    swapped = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])     # last: a tie, one half
    assert metrics.binding_accuracy(x, true, swapped) == pytest.approx(2.5 / 3)
    assert metrics.binding_accuracy(x, swapped, true) == pytest.approx(0.5 / 3)


def test_binding_accuracy_bad_input():
    with pytest.raises(ValueError, match="true_emb"):
        metrics.binding_accuracy(torch.randn(3, 4), torch.randn(2, 4), torch.randn(3, 4))
    with pytest.raises(ValueError, match="swapped_emb"):
        metrics.binding_accuracy(torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 5))


def test_binding_accuracy_ties_count_one_half():
    x = torch.randn(10, 8)
    same = torch.randn(10, 8)
    assert metrics.binding_accuracy(x, same, same.clone()) == 0.5          # cannot tell them apart
    # a bag of words: the same token vectors averaged in another order (rounding differs)
    words = torch.randn(10, 3, 8)
    bag_true, bag_swap = words.mean(1), words.flip(1).mean(1)
    assert metrics.binding_accuracy(x, bag_true, bag_swap) == 0.5
    # one clear win, one clear loss, one tie: (1 + 0 + 0.5) / 3
    t = torch.tensor([[1.0, 0, 0], [1, 0, 0], [0, 0, 1]])
    s = torch.tensor([[0.0, 1, 0], [0, 1, 0], [0, 0, 1]])
    assert metrics.binding_accuracy(torch.eye(3), t, s) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="tie_tol"):
        metrics.binding_accuracy(x, same, same, tie_tol=-1)


def test_zero_shot_ties_score_one_over_k():
    """Identical prompts (a tokenizer that reads every class as 'a <unk>') score chance,
    not the share of class 0."""
    x = torch.randn(60, 4)
    labels = torch.arange(60) % 3
    same = torch.ones(3, 4)
    assert metrics.zero_shot_accuracy(x, same, labels) == pytest.approx(1 / 3)
    labels0 = torch.zeros(60, dtype=torch.long)                   # all class 0: argmax would give 1.0
    assert metrics.zero_shot_accuracy(x, same, labels0) == pytest.approx(1 / 3)
    two = torch.tensor([[1.0, 0, 0, 0], [1.0, 0, 0, 0], [0, 1.0, 0, 0]])   # classes 0, 1 tie
    e = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    assert metrics.zero_shot_accuracy(e, two, torch.tensor([0, 2])) == pytest.approx((0.5 + 1) / 2)
    with pytest.raises(ValueError, match="tie_tol"):
        metrics.zero_shot_accuracy(x, same, labels, tie_tol=-1.0)


def test_relative_alignment_against_a_loop():
    torch.manual_seed(0)
    x, y = torch.randn(7, 5), torch.randn(7, 5)
    xn, yn = torch.nn.functional.normalize(x, dim=-1), torch.nn.functional.normalize(y, dim=-1)
    want = sum(((yn[i] - xn[i]).pow(2).sum() - min((yn[i] - xn[j]).pow(2).sum() for j in range(7) if j != i)).item()
               for i in range(7)) / 7
    assert metrics.relative_alignment(x, y) == pytest.approx(want, abs=1e-5)
    assert metrics.relative_alignment(x, x) < 0                     # each caption on its image
    with pytest.raises(ValueError, match="text_emb"):
        metrics.relative_alignment(x, y[:3])


def test_roc_auc_counts_ordered_pairs_and_half_ties():
    from tutorlib.evaluation import metrics
    assert metrics.roc_auc(torch.tensor([3.0, 4.0]), torch.tensor([1.0, 2.0])) == 1.0
    assert metrics.roc_auc(torch.tensor([1.0]), torch.tensor([2.0])) == 0.0
    assert metrics.roc_auc(torch.tensor([1.0, 3.0]), torch.tensor([1.0, 2.0])) == 0.625   # (0.5 + 0 + 1 + 1) / 4
    with pytest.raises(ValueError, match="at least one"):
        metrics.roc_auc(torch.tensor([]), torch.tensor([1.0]))


def test_retrieval_both_ways_from_one_similarity_matrix_equals_ranking_each_way():
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(300, 32, generator=g), torch.randn(300, 32, generator=g)
    pos = torch.rand(300, 300, generator=g) < 0.01
    pos.fill_diagonal_(True)
    out = metrics.retrieval(img, txt, ks=(1, 5), positives=pos)
    for k in (1, 5):
        assert out[f"i2t@{k}"] == metrics.recall_at_k(img, txt, k, pos)
        assert out[f"t2i@{k}"] == metrics.recall_at_k(txt, img, k, pos.T)
    with pytest.raises(ValueError, match="ks: got 1"):
        metrics.retrieval(img, txt, ks=1)
    with pytest.raises(ValueError, match="ks"):
        metrics.retrieval(img, txt, ks=(0,))
