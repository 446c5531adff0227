"""tutorlib.training.train.fit: the course's one training loop."""
import math

import pytest
import torch

from tutorlib.objectives import losses
from tutorlib.zoo import pretrained
from tutorlib.training import train


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 3, generator=g)
    w_true = torch.tensor([[1.5], [-2.0], [0.5]])
    y = x @ w_true + 0.3
    return x, y, w_true


def test_loss_decreases_and_history():
    x, y, w_true = _problem()
    w = torch.zeros(3, 1, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)

    def loss_fn(batch):
        xb, yb = batch
        return ((xb @ w + b - yb) ** 2).mean()

    hist = train.fit(loss_fn, [w, b], [(x, y)], steps=150, lr=0.05, progress=False)
    assert set(hist) == {"loss", "lr", "time"}
    assert all(len(v) == 150 for v in hist.values())
    assert hist["loss"][-1] < 0.05 * hist["loss"][0]
    assert torch.allclose(w.detach(), w_true, atol=0.2)
    assert all(b2 >= b1 for b1, b2 in zip(hist["time"], hist["time"][1:]))
    # cosine schedule from the base lr down towards zero
    assert hist["lr"][0] == pytest.approx(0.05)
    assert hist["lr"][-1] < 0.01 * 0.05
    assert all(l2 <= l1 + 1e-12 for l1, l2 in zip(hist["lr"], hist["lr"][1:]))


def test_warmup_schedule():
    w = torch.zeros(1, requires_grad=True)
    hist = train.fit(lambda _: (w - 1).pow(2).sum(), [w], lambda s: None, steps=10, lr=0.1,
                     warmup=4, progress=False)
    assert hist["lr"][:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert hist["lr"][4] == pytest.approx(0.1)
    assert hist["lr"][-1] < 0.1


def test_extra_logged_keys():
    w = torch.zeros(2, requires_grad=True)

    def loss_fn(batch):
        loss = (w - batch).pow(2).sum()
        return {"loss": loss, "norm": w.detach().norm(), "const": 3}

    hist = train.fit(loss_fn, [w], [torch.ones(2)], steps=7, progress=False)
    assert len(hist["norm"]) == 7 and hist["const"] == [3.0] * 7
    assert len(hist["loss"]) == 7
    assert hist["norm"][-1] > hist["norm"][0]
    assert all(isinstance(v, float) for v in hist["norm"])


def test_after_step_called_every_step():
    w = torch.zeros(1, requires_grad=True)
    seen = []

    def after(step):
        seen.append(step)
        with torch.no_grad():
            w.clamp_(max=0.5)

    train.fit(lambda _: (w - 2).pow(2).sum(), [w], [None], steps=12, lr=0.5, after_step=after,
              progress=False)
    assert seen == list(range(12))
    assert w.item() <= 0.5


def test_iterable_is_cycled_and_callable_gets_step():
    w = torch.zeros(1, requires_grad=True)
    got = []

    def loss_fn(batch):
        got.append(batch)
        return (w * batch).sum()

    train.fit(loss_fn, [w], [1.0, 2.0, 3.0], steps=7, progress=False)
    assert got == [1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0]
    got.clear()
    train.fit(loss_fn, [w], (b for b in [5.0, 6.0]), steps=5, progress=False)  # a generator
    assert got == [5.0, 6.0, 5.0, 6.0, 5.0]
    got.clear()
    train.fit(loss_fn, [w], lambda step: float(step * 10), steps=4, progress=False)
    assert got == [0.0, 10.0, 20.0, 30.0]


def test_param_groups_and_module_parameters():
    model = torch.nn.Linear(3, 1)
    x, y, _ = _problem(1)
    groups = [{"params": [model.weight], "lr": 0.05}, {"params": [model.bias], "lr": 0.01}]
    hist = train.fit(lambda b: ((model(b[0]) - b[1]) ** 2).mean(), groups, [(x, y)], steps=50,
                     progress=False)
    assert hist["loss"][-1] < hist["loss"][0]
    hist = train.fit(lambda b: ((model(b[0]) - b[1]) ** 2).mean(), model.parameters(), [(x, y)],
                     steps=5, lr=0.01, progress=True)
    assert len(hist["loss"]) == 5


def test_given_optimizer_is_used():
    w = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)
    train.fit(lambda _: (w - 1).pow(2).sum(), [], [None], steps=1, optimizer=opt, progress=False)
    # one SGD step from 0 with gradient -2 and lr 0.1 (cosine scale 1 at step 0)
    assert w.item() == pytest.approx(0.2)


def test_bad_input():
    w = torch.zeros(1, requires_grad=True)
    loss = lambda _: (w - 1).pow(2).sum()           # noqa: E731
    with pytest.raises(ValueError, match="params"):
        train.fit(loss, [], [None], steps=3)
    with pytest.raises(ValueError, match="steps"):
        train.fit(loss, [w], [None], steps=0)
    with pytest.raises(ValueError, match="steps"):
        train.fit(loss, [w], [None], steps=-1)
    with pytest.raises(ValueError, match="lr"):
        train.fit(loss, [w], [None], steps=3, lr=0)
    with pytest.raises(ValueError, match="loss_fn"):
        train.fit("loss", [w], [None], steps=3)
    with pytest.raises(ValueError, match="batches"):
        train.fit(loss, [w], 3, steps=3)
    with pytest.raises(ValueError, match="batches"):
        train.fit(loss, [w], [], steps=3, progress=False)
    with pytest.raises(ValueError, match="loss_fn"):
        train.fit(lambda _: (w - 1).pow(2), [w], [None], steps=3, progress=False)   # not scalar
    with pytest.raises(ValueError, match="loss_fn"):
        train.fit(lambda _: 1.0, [w], [None], steps=3, progress=False)


def test_nan_loss_raises():
    w = torch.zeros(1, requires_grad=True)
    calls = []

    def loss_fn(_):
        calls.append(1)
        value = (w - 1).pow(2).sum()
        return value * float("nan") if len(calls) == 3 else value

    with pytest.raises(FloatingPointError, match=r"^loss_fn: the loss became nan at step 2\b"):
        train.fit(loss_fn, [w], [None], steps=10, progress=False)
    assert len(calls) == 3
    with pytest.raises(FloatingPointError, match=r"^loss_fn: the loss became inf"):
        train.fit(lambda _: (w * math.inf).sum(), [w], [None], steps=2, progress=False)


def test_progress_false_prints_nothing(capsys):
    w = torch.zeros(1, requires_grad=True)
    hist = train.fit(lambda _: (w - 1).pow(2).sum(), [w], [None], steps=3, progress=False)
    out, err = capsys.readouterr()
    assert len(hist["loss"]) == 3
    assert "training" not in out + err


def test_decay_groups_follow_open_clip():
    """Weights decay; gains, biases, the class token and the logit scale do not."""
    from tutorlib import models
    from tutorlib.zoo import pretrained
    model = pretrained.build_mini_clip(embed_dim=16, depth=1)
    groups = pretrained.param_groups(model, lr=1e-3, text_lr_ratio=0.1, weight_decay=0.1)
    decay = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    for name, p in model.named_parameters():
        assert (id(p) in decay) == (p.ndim >= 2), name
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    text = {id(p) for p in model.text_tower.parameters()}
    assert all(g["lr"] == pytest.approx(1e-4) for g in groups if id(g["params"][0]) in text)
    with pytest.raises(ValueError, match="weight_decay"):
        train.decay_groups(model.parameters(), -0.1)


def test_train_step_is_the_recipe_step():
    """train_mini_clip runs train_step inside fit: one step of each from the same start agrees."""
    import copy
    from tutorlib import models, world
    from tutorlib.zoo import pretrained
    torch.manual_seed(0)
    a = pretrained.build_mini_clip(embed_dim=16, depth=1)
    b = copy.deepcopy(a)
    batch = (torch.rand(6, 3, 32, 32), world.Tokenizer()(["a red circle"] * 6), torch.eye(6, dtype=torch.bool))
    opt = torch.optim.AdamW(pretrained.param_groups(a, 1e-3, 0.1, 0.1), lr=1e-3)
    loss = pretrained.train_step(a, opt, batch)
    images, ids, targets = batch

    def loss_fn(_):
        i, t, s = b(images, ids)
        return losses.clip_loss(i, t, s, targets=targets)
    hist = train.fit(loss_fn, pretrained.param_groups(b, 1e-3, 0.1, 0.1), [batch], steps=1, lr=1e-3,
                     after_step=lambda s: losses.clamp_logit_scale_(b.logit_scale), progress=False)
    assert loss == pytest.approx(hist["loss"][0])
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), n
