"""tutorlib.training.stacked and fewpairs.train_runs: R small runs trained as one stacked run
get the weights, gradients and histories each run gets alone."""
import pytest
import torch
from torch import nn

from tutorlib.methods import fewpairs
from tutorlib.models.heads import mlp
from tutorlib.training import stacked, train


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _heads(i, h, o, seeds=(0, 1, 2)):
    out = []
    for seed in seeds:
        torch.manual_seed(seed)
        out.append(mlp(i, h, o))
    return out


def test_stacked_forward_is_each_module_and_unstack_gives_them_back():
    heads = _heads(6, 8, 4)
    s = stacked.Stacked(heads)
    x = _randn(3, 5, 6)
    torch.testing.assert_close(s(x), torch.stack([h(x[r]) for r, h in enumerate(heads)]), rtol=0, atol=1e-6)
    back = s.unstack()
    assert all(torch.equal(a.state_dict()[k], v) for a, b in zip(heads, back) for k, v in b.state_dict().items())
    groups = s.param_groups(0.1)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0] and all(p.ndim == 3 for g in groups for p in g["params"])


def test_a_summed_loss_gives_each_run_its_own_gradient():
    """The gradient on run r's slice is run r's gradient alone (a mean over runs would divide
    it by R, which AdamW would nearly hide)."""
    heads = _heads(48, 32, 16)
    s = stacked.Stacked(heads)
    x, y = _randn(3, 64, 48), _randn(3, 64, 16, seed=1)
    sum(((z - t) ** 2).mean() for z, t in zip(s(x), y)).backward()
    for r, head in enumerate(heads):
        ((head(x[r]) - y[r]) ** 2).mean().backward()
        torch.testing.assert_close(s.weights[0].grad[r], head[0].weight.grad.T, rtol=0, atol=1e-7)
        torch.testing.assert_close(s.biases[1].grad[r, 0], head[2].bias.grad, rtol=0, atol=1e-7)


def test_training_stacked_equals_training_each_module_alone():
    """One AdamW over the stacked weights with the runs' losses summed is each run's own AdamW
    (weights decayed, biases not, as train.decay_groups does). Equal to float tolerance: at
    these shapes the CPU kernels agree to the last bit, at some smaller ones they round apart
    by about 1e-7."""
    x, y = _randn(3, 64, 48), _randn(3, 64, 16, seed=1)
    heads = _heads(48, 32, 16)
    s = stacked.Stacked(heads)
    kw = dict(steps=8, lr=0.05, warmup=2, progress=False)
    train.fit(lambda i: sum(((z - t) ** 2).mean() for z, t in zip(s(x), y)), s.param_groups(0.5), range(8), **kw)
    for r, head in enumerate(heads):
        train.fit(lambda i: ((head(x[r]) - y[r]) ** 2).mean(), train.decay_groups(head.parameters(), 0.5), range(8), **kw)
        got = s.unstack()[r].state_dict()
        for k, v in head.state_dict().items():
            torch.testing.assert_close(got[k], v, rtol=0, atol=1e-6)


def test_stacked_checks_its_modules_and_input():
    with pytest.raises(ValueError, match="modules: got none"):
        stacked.Stacked([])
    with pytest.raises(ValueError, match=r"modules: got a LayerNorm, expected"):
        stacked.Stacked([nn.LayerNorm(4)])
    with pytest.raises(ValueError, match=r"modules: got a Sequential with \['Dropout'\]"):
        stacked.Stacked([nn.Sequential(nn.Linear(6, 4), nn.Dropout(0.1))])
    with pytest.raises(ValueError, match=r"modules: got layer 0 with weight shapes \[\(8, 6\), \(9, 6\)\]"):
        stacked.Stacked([mlp(6, 8, 4), mlp(6, 9, 4)])
    with pytest.raises(ValueError, match=r"modules: got layers \['Linear'\] beside"):
        stacked.Stacked([mlp(6, 8, 4), nn.Linear(6, 4)])
    with pytest.raises(ValueError, match=r"x: got shape \(2, 5, 6\) of torch.float32, expected \[3, B, 6\]"):
        stacked.Stacked([nn.Linear(6, 4)] * 3)(_randn(2, 5, 6))
    with pytest.raises(ValueError, match="x: got shape .* of torch.float64"):
        stacked.Stacked([nn.Linear(6, 4)])(_randn(1, 5, 6).double())
    with pytest.raises(ValueError, match="weight_decay"):
        stacked.Stacked([nn.Linear(6, 4)]).param_groups(-1)


def _feats(n=60):
    return {"image": _randn(n, 3, 16), "text": _randn(n, 24, seed=1),
            "attrs": torch.randint(0, 2, (n, 2, 4), generator=torch.Generator().manual_seed(2))}


RUNS = [dict(n_pairs=40, method="clip", seed=0), dict(n_pairs=50, method="structure", seed=1, lam=3.0),
        dict(n_pairs=40, method="cwcl", seed=2, cwcl_source="own"),
        dict(n_pairs=45, method="cwcl+structure", seed=3, cwcl_source="attributes", layer=0),
        dict(n_pairs=20, method="clip", seed=4),                           # batch 20: a group of its own
        dict(n_pairs=40, method="structure", seed=5, lr=0.02),            # another rate: its own group
        dict(n_pairs=40, method="clip", seed=6, steps=5)]                 # fewer steps: its own group
KW = dict(steps=8, warmup=2, lam_warmup=3, batch_size=32, hidden=12, embed_dim=8, lr=0.05, weight_decay=0.5)


@pytest.mark.parametrize("at_once", [8, 2])
def test_runs_trained_together_equal_runs_trained_one_by_one(monkeypatch, at_once):
    """The issue's equality test: few-pairs runs of every method, with their own seeds, pair
    counts, layers and settings, trained together (in chunks of 8, or of 2 to exercise the
    chunking) get the weights and histories they get alone."""
    monkeypatch.setattr(fewpairs, "RUNS_AT_ONCE", at_once)
    feats = _feats()
    together = fewpairs.train_runs(feats, [{**KW, **r} for r in RUNS])
    for run, (ip, tp, hist) in zip(RUNS, together):
        args = {k: v for k, v in {**KW, **run}.items() if k not in ("n_pairs", "method", "seed")}
        ip1, tp1, hist1 = fewpairs.train_projectors(feats, run["n_pairs"], run["method"], seed=run["seed"], **args)
        for a, b in ((ip, ip1), (tp, tp1)):
            for k, v in a.state_dict().items():
                torch.testing.assert_close(v, b.state_dict()[k], rtol=0, atol=1e-6)
        assert len(hist["loss"]) == args["steps"] and hist["loss"] == pytest.approx(hist1["loss"], abs=1e-6)
        assert ("structure" in hist) == ("structure" in run["method"])
        assert hist.get("structure", []) == pytest.approx(hist1.get("structure", []), abs=1e-6)


def test_train_runs_checks_its_runs_and_names_a_run_whose_loss_breaks():
    feats = _feats()
    with pytest.raises(ValueError, match="runs: got \\[\\], expected a non-empty list"):
        fewpairs.train_runs(feats, [])
    with pytest.raises(ValueError, match="runs: got \\{'n_pairs': 20\\}, expected a non-empty list"):
        fewpairs.train_runs(feats, {"n_pairs": 20})
    with pytest.raises(ValueError, match="runs: got an item \\{'method': 'clip'\\}"):
        fewpairs.train_runs(feats, [dict(method="clip")])
    with pytest.raises(FloatingPointError, match="the clip run with 20 pairs and seed 7: its loss became"):
        fewpairs.train_runs(feats, [dict(n_pairs=20, seed=3, steps=3), dict(n_pairs=20, seed=7, steps=3, tau=1e-40)])
