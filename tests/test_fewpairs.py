"""tutorlib.methods.fewpairs: projectors on frozen features, trained and scored (lesson 08); the
measures it uses have their own files (test_representations, test_structure, test_selfsup,
test_losses_cwcl)."""
import pytest
import torch

from tutorlib.methods import fewpairs, neighbourhoods
from tutorlib.objectives import structure
from tutorlib import world


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_projector_training_is_seeded_and_checks_its_input():
    n = 40
    feats = {"image": _randn(n, 3, 16), "text": _randn(n, 24, seed=1)}
    a = fewpairs.train_projectors(feats, 20, "cwcl+structure", seed=1, steps=5)
    b = fewpairs.train_projectors(feats, 20, "cwcl+structure", seed=1, steps=5)
    assert a[2]["loss"] == b[2]["loss"] and "structure" in a[2]
    with pytest.raises(ValueError, match="n_pairs: got 41"):
        fewpairs.train_projectors(feats, 41, "clip", steps=5)
    with pytest.raises(ValueError, match="method"):
        fewpairs.train_projectors(feats, 10, "siglip", steps=5)
    with pytest.raises(ValueError, match="overrides"):
        fewpairs.train_projectors(feats, 10, "clip", step=5)
    with pytest.raises(ValueError, match="cwcl_source"):
        fewpairs.hyperparameters(cwcl_source="audio")
    ip, tp, _ = a
    with pytest.raises(ValueError, match="^feats: has no 'positives'"):     # a train split is not scored
        fewpairs.evaluate(ip, tp, {**feats, "attrs": torch.zeros(n, 2, 4, dtype=torch.long)})


def test_projector_pair_is_seeded_and_projects_both_sides():
    a, b = fewpairs.ProjectorPair(6, 5, seed=3, out_dim=4), fewpairs.ProjectorPair(6, 5, seed=3, out_dim=4)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    zi, zt = a(_randn(7, 6), _randn(7, 5, seed=1))
    assert zi.shape == zt.shape == (7, 4)
    torch.testing.assert_close(zi, a.image(_randn(7, 6)))
    with pytest.raises(ValueError, match="seed"):
        fewpairs.ProjectorPair(6, 5, seed=-1)


def _scored_feats(monkeypatch, n=30):
    """Random features of a scored split (single-object scenes, the diagonal as positives),
    with random class prompts in place of MiniLM's."""
    attrs = torch.full((n, 2, 4), -1, dtype=torch.long)
    attrs[:, 0] = torch.randint(0, 2, (n, 4), generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(fewpairs, "class_features", lambda attr: _randn(len(world.ATTRIBUTES[attr]), 24, seed=2))
    return {"image": _randn(n, 3, 16), "text": _randn(n, 24, seed=1), "attrs": attrs,
            "positives": torch.eye(n, dtype=torch.bool)}


def test_evaluate_reports_the_mean_of_both_recalls(monkeypatch):
    feats = _scored_feats(monkeypatch)
    ip, tp, _ = fewpairs.train_projectors(feats, 20, "clip", seed=1, steps=3)
    out = fewpairs.evaluate(ip, tp, feats)
    assert out["recall@1"] == (out["i2t@1"] + out["t2i@1"]) / 2
    rec, zs = (fewpairs.evaluate(ip, tp, feats, scores=s) for s in ("retrieval", "zero-shot"))
    assert rec == {k: out[k] for k in ("i2t@1", "t2i@1", "recall@1")}      # each part alone, the same numbers
    assert zs == {k: v for k, v in out.items() if k not in rec}
    with pytest.raises(ValueError, match="^scores: got"):
        fewpairs.evaluate(ip, tp, feats, scores="recall")
    no_truth = {k: v for k, v in feats.items() if k != "positives"}
    assert "zero-shot" in fewpairs.evaluate(ip, tp, no_truth, scores="zero-shot")  # zero-shot needs no positives


def test_sweep_trains_each_labelled_setting_and_scores_it(monkeypatch):
    feats = _scored_feats(monkeypatch)
    kw = dict(steps=3, hidden=8, embed_dim=4)
    rows = fewpairs.sweep(feats, feats, feats, {"A": ("clip", {}), "B": ("structure", {"lam": 2.0, "layer": 0})}, [10, 20], [0, 1],
                          progress=False, **kw)
    assert [(r["method"], r["pairs"], r["seed"]) for r in rows][:4] == [("A", 10, 0), ("A", 10, 1), ("B", 10, 0), ("B", 10, 1)]
    ip, tp, _ = fewpairs.train_projectors(feats, 20, "structure", seed=1, lam=2.0, layer=0, **kw)   # the last row, alone
    assert rows[-1]["i2t@1"] == fewpairs.evaluate(ip, tp, feats, layer=0)["i2t@1"]      # scored on the layer it trained on
    assert [r["method"] for r in fewpairs.sweep(feats, feats, feats, ["clip"], [10], [0], progress=False, **kw)] == ["clip"]
    for bad in ({"A": "clip"}, ["clip", "clip"], ["siglip"], "clip"):
        with pytest.raises(ValueError, match="^methods: got"):
            fewpairs.sweep(feats, feats, feats, bad, [10], [0], **kw)
    with pytest.raises(ValueError, match="^pair_counts: got \\[\\]"):
        fewpairs.sweep(feats, feats, feats, ["clip"], [], [0], **kw)


def test_neighbourhood_divergence_is_the_mean_regulariser_over_batches():
    feats = {"image": _randn(50, 3, 8), "text": _randn(50, 12, seed=1)}
    proj_i, proj_t = torch.nn.Linear(8, 4), torch.nn.Linear(12, 4)
    got = neighbourhoods.neighbourhood_divergence(proj_i, proj_t, feats, batch_size=16, batches=3, seed=4)
    g, loop = torch.Generator().manual_seed(4), []
    for _ in range(3):
        b = torch.randperm(50, generator=g)[:16]
        xi, xt = feats["image"][b, -1], feats["text"][b]
        with torch.no_grad():
            loop.append(((structure.regulariser(xi, proj_i(xi)) + structure.regulariser(xt, proj_t(xt))) / 2).item())
    assert got == pytest.approx(sum(loop) / 3)
    same = neighbourhoods.neighbourhood_divergence(lambda x: x, lambda x: x, feats, batch_size=16, seed=4)
    assert same < 1e-6                                                     # nothing moved: every neighbourhood kept
    with pytest.raises(ValueError, match="project_img, project_txt"):
        neighbourhoods.neighbourhood_divergence(proj_i, None, feats)
    with pytest.raises(ValueError, match="batches: got 0"):
        neighbourhoods.neighbourhood_divergence(proj_i, proj_t, feats, batches=0)


def test_attribute_vectors_give_the_true_overlap_and_check_their_input():
    attrs = torch.tensor([[[0, 1, 0, 4], [-1, -1, -1, -1]],      # one object
                          [[0, 1, 0, 4], [-1, -1, -1, -1]],      # the same scene's attributes
                          [[2, 3, 1, 0], [-1, -1, -1, -1]],      # shares nothing
                          [[0, 1, 1, 0], [2, 3, 1, 4]]])         # two objects
    v = fewpairs.attribute_vectors(attrs)
    assert v.shape == (4, sum(len(world.ATTRIBUTES[a]) for a in ("shape", "colour", "size", "position")))
    assert v.sum(1).tolist() == [4, 4, 4, 8]
    w = fewpairs.cwcl_targets(v, form="cosine")
    assert w[0, 1] == 1 and w[0, 2] == 0 and 0 < w[0, 3] < 1
    assert torch.allclose(fewpairs.cwcl_targets(v), 0.5 * w + 0.5)           # the paper's form of the same cosine
    with pytest.raises(ValueError, match=r"attrs: got shape \(4, 2, 3\)"):
        fewpairs.attribute_vectors(attrs[:, :, :3])
    with pytest.raises(ValueError, match="form"):
        fewpairs.cwcl_targets(v, form="sharp")


def test_optimum_margin_reads_the_targets_at_the_loss_minimum():
    w = torch.tensor([[1.0, 0.9, 0.5], [0.9, 1.0, 1.0], [0.5, 1.0, 1.0]])
    got = fewpairs.optimum_margin(w)
    assert got["weight margin"] == pytest.approx((0.1 + 0 + 0) / 3)
    assert got["share margin"] == pytest.approx(0.1 / 2.4 / 3)
    assert got["true share"] == pytest.approx((1 / 2.4 + 1 / 2.9 + 1 / 2.5) / 3)
    assert got["ties"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="weights: got shape"):
        fewpairs.optimum_margin(torch.ones(2, 3))


def test_oracle_cwcl_trains_and_untrained_projectors_are_the_starting_point():
    n = 40
    attrs = torch.full((n, 2, 4), -1, dtype=torch.long)
    attrs[:, 0] = torch.randint(0, 2, (n, 4), generator=torch.Generator().manual_seed(0))
    feats = {"image": _randn(n, 3, 16), "text": _randn(n, 24, seed=1), "attrs": attrs}
    ip0, tp0 = fewpairs.untrained_projectors(feats, seed=2)
    ip, tp, h = fewpairs.train_projectors(feats, 20, "cwcl", seed=2, steps=1, lr=1e-12,
                                          cwcl_source="attributes", cwcl_form="cosine")
    torch.testing.assert_close(ip(feats["image"][:, -1]), ip0(feats["image"][:, -1]))   # one step of lr 1e-12
    assert torch.equal(fewpairs.pair_indices(n, 20, 2)[:5],
                       torch.randperm(n, generator=torch.Generator().manual_seed(2))[:5])
    with pytest.raises(ValueError, match="cwcl_form"):
        fewpairs.hyperparameters(cwcl_form="sharp")
    with pytest.raises(ValueError, match="divergence"):
        fewpairs.hyperparameters(divergence="kl")
    with pytest.raises(ValueError, match="n_pairs: got 41"):
        fewpairs.pair_indices(n, 41)


def test_recall_among_scores_groups_of_the_given_rows():
    n = 12
    attrs = torch.full((n, 2, 4), -1, dtype=torch.long)
    attrs[:, 0] = torch.stack([torch.arange(n) % 6, torch.arange(n) // 6, torch.zeros(n, dtype=torch.long),
                               torch.zeros(n, dtype=torch.long)], 1)
    spec = torch.full((n, 9), -1, dtype=torch.long)
    spec[:, :4], spec[:, 8] = attrs[:, 0], 0
    x = _randn(n, 8)
    feats = {"image": x[:, None], "text": x, "attrs": attrs, "full_spec": spec}
    same = lambda z: z
    assert fewpairs.recall_among(same, same, feats, torch.arange(n), group=4) == 1.0
    with pytest.raises(ValueError, match="group: got 13"):
        fewpairs.recall_among(same, same, feats, torch.arange(n), group=13)


def test_neighbours_kept_is_one_for_a_rotation_and_near_chance_for_a_shuffle():
    feats = {"image": _randn(60, 2, 8), "text": _randn(60, 12, seed=1)}
    q, _ = torch.linalg.qr(_randn(8, 8, seed=2))
    q2, _ = torch.linalg.qr(_randn(12, 12, seed=3))
    assert neighbourhoods.neighbours_kept(lambda x: x @ q, lambda x: 3 * x @ q2, feats, k=5) == pytest.approx(1.0)
    perm = torch.randperm(60, generator=torch.Generator().manual_seed(4))
    assert neighbourhoods.neighbours_kept(lambda x: x[perm], lambda x: x[perm], feats, k=5) < 0.3
    with pytest.raises(ValueError, match="project_img, project_txt"):
        neighbourhoods.neighbours_kept(None, lambda x: x, feats)


def test_match_weights_are_the_retrieval_ground_truth_and_train():
    attrs = torch.full((4, 2, 4), -1, dtype=torch.long)
    attrs[:, 0] = torch.tensor([[0, 1, 0, 4], [0, 1, 0, 4], [2, 3, 1, 0], [0, 1, 1, 4]])
    spec = torch.full((4, 9), -1, dtype=torch.long)
    spec[:, :4], spec[:, 8] = attrs[:, 0], 0
    w = fewpairs.match_weights(attrs, spec)
    torch.testing.assert_close(w, world.matches(attrs, spec).float().fill_diagonal_(1.0))
    assert w[0, 1] == 1 and w[0, 2] == 0                     # the same caption; a false one
    torch.testing.assert_close(fewpairs.match_weights(attrs, spec, "paper"), (w / 2 + 0.5).fill_diagonal_(1.0))
    with pytest.raises(ValueError, match="form"):
        fewpairs.match_weights(attrs, spec, "sharp")
    n = 30
    many = attrs.repeat(8, 1, 1)[:n]
    feats = {"image": _randn(n, 2, 6), "text": _randn(n, 10, seed=1), "attrs": many,
             "full_spec": spec.repeat(8, 1)[:n]}
    _, _, h = fewpairs.train_projectors(feats, 12, "cwcl", seed=0, steps=2, cwcl_source="matches",
                                        cwcl_form="cosine")
    assert len(h["loss"]) == 2


def test_neighbourhood_entropy_is_log_n_for_a_constant_map_and_checks_input():
    x = _randn(40, 6)
    frozen, flat = neighbourhoods.neighbourhood_entropy(lambda z: torch.ones(len(z), 3), x, batch_size=16)
    assert flat == pytest.approx(torch.log(torch.tensor(16.0)).item(), abs=1e-5) and frozen < flat
    same = neighbourhoods.neighbourhood_entropy(lambda z: z, x, batch_size=16)
    assert same[0] == pytest.approx(same[1])
    with pytest.raises(ValueError, match="project: got NoneType"):
        neighbourhoods.neighbourhood_entropy(None, x)
    with pytest.raises(ValueError, match="x"):
        neighbourhoods.neighbourhood_entropy(lambda z: z, x[0])
