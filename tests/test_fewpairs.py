"""tutorlib.methods.fewpairs: projectors on frozen features, trained and scored (lesson 08); the
measures it uses have their own files (test_representations, test_structure, test_selfsup,
test_losses_cwcl)."""
import pytest
import torch

from tutorlib.methods import fewpairs
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


def test_evaluate_reports_the_mean_of_both_recalls(monkeypatch):
    n = 30
    attrs = torch.full((n, 2, 4), -1, dtype=torch.long)
    attrs[:, 0] = torch.randint(0, 2, (n, 4), generator=torch.Generator().manual_seed(0))
    feats = {"image": _randn(n, 3, 16), "text": _randn(n, 24, seed=1), "attrs": attrs,
             "positives": torch.eye(n, dtype=torch.bool)}
    monkeypatch.setattr(fewpairs, "class_features", lambda attr: _randn(len(world.ATTRIBUTES[attr]), 24, seed=2))
    ip, tp, _ = fewpairs.train_projectors(feats, 20, "clip", seed=1, steps=3)
    out = fewpairs.evaluate(ip, tp, feats)
    assert out["recall@1"] == (out["i2t@1"] + out["t2i@1"]) / 2


def test_neighbourhood_divergence_is_the_mean_regulariser_over_batches():
    feats = {"image": _randn(50, 3, 8), "text": _randn(50, 12, seed=1)}
    proj_i, proj_t = torch.nn.Linear(8, 4), torch.nn.Linear(12, 4)
    got = fewpairs.neighbourhood_divergence(proj_i, proj_t, feats, batch_size=16, batches=3, seed=4)
    g, loop = torch.Generator().manual_seed(4), []
    for _ in range(3):
        b = torch.randperm(50, generator=g)[:16]
        xi, xt = feats["image"][b, -1], feats["text"][b]
        with torch.no_grad():
            loop.append(((structure.regulariser(xi, proj_i(xi)) + structure.regulariser(xt, proj_t(xt))) / 2).item())
    assert got == pytest.approx(sum(loop) / 3)
    same = fewpairs.neighbourhood_divergence(lambda x: x, lambda x: x, feats, batch_size=16, seed=4)
    assert same < 1e-6                                                     # nothing moved: every neighbourhood kept
    with pytest.raises(ValueError, match="project_img, project_txt"):
        fewpairs.neighbourhood_divergence(proj_i, None, feats)
    with pytest.raises(ValueError, match="batches: got 0"):
        fewpairs.neighbourhood_divergence(proj_i, proj_t, feats, batches=0)
