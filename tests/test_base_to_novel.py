"""tutorlib.methods.base_to_novel: lesson 03's testbed and runs, on a tiny frozen model."""
import math

import pytest
import torch

from test_prompts import clip  # noqa: F401  (the same tiny model as CoOp's tests)
from tutorlib import world
from tutorlib.methods import base_to_novel, prompts, restore

BASE, NOVEL = ["red circle", "blue circle", "red square"], ["red star", "green star"]


def test_class_names_and_labels_agree():
    names = base_to_novel.class_names("base")
    assert len(names) == len(world.BASE_SHAPES) * len(world.COLOURS) and names[0] == "red circle"
    images, labels = base_to_novel.shape_colour_scenes("novel", 40, seed=0)
    assert images.shape[0] == len(labels) == 40 and images.dtype == torch.uint8
    t = world.tensors(world.load_world("novel", n=40, seed=0), ["shape", "colour"])
    novel = base_to_novel.class_names("novel")
    assert [novel[y] for y in labels.tolist()] == \
        [f"{world.COLOURS[c]} {world.SHAPES[s]}" for s, c in zip(t["shape"].tolist(), t["colour"].tolist())]
    with pytest.raises(ValueError, match="half"):
        base_to_novel.class_names("train")
    with pytest.raises(ValueError, match="n"):
        base_to_novel.shape_colour_scenes("base", 0, seed=0)


def test_features_and_states_in_chunks_equal_the_whole(clip):
    images = (torch.rand(7, 3, 32, 32) * 255).to(torch.uint8)
    with torch.no_grad():
        whole = clip.encode_image(world.images_float(images))
        states = clip.image_tower.hidden(world.images_float(images), 1)
    assert torch.allclose(base_to_novel.image_features(clip, images, chunk_size=3), whole, atol=1e-6)
    assert torch.allclose(base_to_novel.image_states(clip.image_tower, images, 1, chunk_size=2), states, atol=1e-6)
    with pytest.raises(ValueError, match="images"):
        base_to_novel.image_features(clip, images[0])


def test_few_shot_indices():
    labels = torch.tensor([0, 1, 2, 0, 1, 0, 0, 1, 1, 0])
    idx = base_to_novel.few_shot_indices(labels, 2, seed=3, n_classes=3)
    assert labels[idx].tolist() == [0, 0, 1, 1, 2]          # class by class; class 2 has only one picture
    assert len(set(idx.tolist())) == 5
    assert torch.equal(idx, base_to_novel.few_shot_indices(labels, 2, seed=3, n_classes=3))
    draws = {tuple(base_to_novel.few_shot_indices(labels, 2, seed=s, n_classes=3).tolist()) for s in range(8)}
    assert len(draws) > 1                                    # the seed picks the pictures
    assert len(base_to_novel.few_shot_indices(labels, 2, seed=0, n_classes=4)) == 5   # no picture of class 3
    with pytest.raises(ValueError, match="labels"):
        base_to_novel.few_shot_indices(labels.float(), 2, seed=0, n_classes=3)
    with pytest.raises(ValueError, match="shots"):
        base_to_novel.few_shot_indices(labels, 0, seed=0, n_classes=3)


def test_sgd_recipe_is_coops_budget():
    steps, warmup, batches, make = base_to_novel.sgd_recipe(70, 1, batch=32, epochs=5, lr=0.1, momentum=0.9,
                                                             weight_decay=5e-4)
    assert (steps, warmup) == (5 * (70 // 32), 2)             # Dassl's drop_last: 2 batches an epoch
    epoch = torch.cat([batches(s) for s in range(2)])
    assert all(len(batches(s)) == 32 for s in range(10))     # only full batches
    assert len(set(epoch.tolist())) == 64                    # 64 distinct rows, 6 dropped this epoch
    assert not torch.equal(epoch, torch.cat([batches(s) for s in range(2, 4)]))   # in a fresh order
    assert torch.equal(batches(4), batches(4))
    dropped = [set(range(70)) - set(torch.cat([batches(2 * e + s) for s in range(2)]).tolist())
               for e in range(5)]
    assert len({frozenset(d) for d in dropped}) > 1           # a different remainder each epoch
    steps, warmup, batches, _ = base_to_novel.sgd_recipe(240, 0, batch=32, epochs=200, lr=0.1,
                                                         momentum=0.9, weight_decay=5e-4)
    assert (steps, warmup) == (1400, 7)                       # CoOp's 16 shots of 15 classes
    steps, warmup, batches, _ = base_to_novel.sgd_recipe(20, 1, batch=32, epochs=3, lr=0.1,
                                                         momentum=0.9, weight_decay=0.0)
    assert (steps, warmup) == (3, 1) and sorted(batches(0).tolist()) == list(range(20))
    opt = make([torch.nn.Parameter(torch.zeros(2))])
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9
    with pytest.raises(ValueError, match="batch"):
        base_to_novel.sgd_recipe(70, 1, batch=0, epochs=5, lr=0.1, momentum=0.9, weight_decay=0.0)


@pytest.fixture
def coop(tok, clip):
    torch.manual_seed(0)
    pool_y, test_y, novel_y = torch.arange(3).repeat(4), torch.arange(3).repeat(2), torch.arange(2).repeat(3)
    feats = {k: base_to_novel.image_features(clip, torch.rand(len(y), 3, 32, 32))
             for k, y in (("pool", pool_y), ("base", test_y), ("novel", novel_y))}
    return base_to_novel.CoOpRuns(clip.text_tower, tok, BASE, NOVEL, clip.logit_scale.detach(),
                                  pool=(feats["pool"], pool_y), base=(feats["base"], test_y),
                                  novel=(feats["novel"], novel_y), steps=6, lr=1e-2, warmup=1,
                                  sgd=dict(batch=4, epochs=2, lr=1e-2, momentum=0.9, weight_decay=5e-4))


def test_coop_runs_train_only_the_context_and_repeat(tok, clip, coop):
    before = {k: v.clone() for k, v in clip.state_dict().items()}
    learner, trace = coop.train(2, run_seed=1, trace_every=2)
    start = prompts.word_embeddings(clip.text_tower, tok, "a photo of a")
    assert learner.n_ctx == 4 and not torch.allclose(learner.ctx.detach(), start)
    assert [t[0] for t in trace] == [2, 4, 6] and all(0 <= t[1] <= 1 and 0 <= t[2] <= 1 for t in trace)
    assert trace[-1][3] == pytest.approx((learner.ctx - start).norm().item(), abs=1e-5)
    assert all(torch.equal(v, before[k]) for k, v in clip.state_dict().items())
    again, _ = coop.train(2, run_seed=1)
    assert torch.equal(again.ctx, learner.ctx)                # the seed fixes the run
    b, n = coop.accuracies(learner)
    assert 0 <= b <= 1 and 0 <= n <= 1
    sgd, sgd_trace = coop.train(2, run_seed=1, n_ctx=3, init=None, optimizer="sgd", trace_every=1)
    assert sgd.n_ctx == 3 and len(sgd_trace) == coop.sgd_recipe(6, 1)[0] == 2      # 2 epochs of 1 batch (drop_last)
    _, last = coop.train(2, run_seed=1, trace_every=4)       # 6 steps: traced at 4 and at the end
    assert [t[0] for t in last] == [4, 6]
    middle, _ = coop.train(1, run_seed=0, position="middle")
    assert middle.position == "middle"
    with pytest.raises(ValueError, match="optimizer"):
        coop.train(2, run_seed=1, optimizer="adam")


def test_t_quantiles_and_mean_interval():
    assert base_to_novel.t975(2) == 4.303 and base_to_novel.t975(4) == 2.776
    assert 2.04 < base_to_novel.t975(30) < 2.045 and 1.96 < base_to_novel.t975(10_000) < 1.961
    mean, low, high = base_to_novel.mean_interval([1.0, 2.0, 3.0])      # sd 1, 3 runs
    assert mean == 2.0 and high - mean == pytest.approx(4.303 / math.sqrt(3))
    with pytest.raises(ValueError, match="values"):
        base_to_novel.mean_interval([1.0])


def test_gain_ratio_is_fiellers_interval():
    g = torch.Generator().manual_seed(0)
    baseline = torch.rand(5, generator=g, dtype=torch.float64)
    method = baseline + 0.10 + 0.01 * torch.randn(5, generator=g, dtype=torch.float64)
    control = baseline + 0.08 + 0.01 * torch.randn(5, generator=g, dtype=torch.float64)
    ratio, low, high = base_to_novel.gain_ratio(control.tolist(), method.tolist(), baseline.tolist())
    a, m = control - baseline, method - baseline
    assert ratio == pytest.approx((a.mean() / m.mean()).item()) and low < ratio < high
    t = base_to_novel.t975(4)
    for rho in (low, high):        # at each end, the mean of a - rho * m is t standard errors from 0
        d = a - rho * m
        assert abs(d.mean().item()) == pytest.approx(t * d.std().item() / math.sqrt(5), rel=1e-6)
    same = base_to_novel.gain_ratio(method.tolist(), method.tolist(), baseline.tolist())
    assert same[:3] == pytest.approx((1.0, 1.0, 1.0))         # a control that is the method
    noise = [0.02, -0.03, 0.01]                                  # no clear gain: no ratio measured
    assert base_to_novel.gain_ratio([0.1] * 3, noise, [0.0] * 3)[1:] == (-math.inf, math.inf)
    with pytest.raises(ValueError, match="same runs"):
        base_to_novel.gain_ratio([0.1, 0.2], [0.1, 0.2, 0.3], [0.0, 0.0, 0.0])


def test_coop_runs_bad_input(tok, clip, coop):
    feats, labels = coop.pool
    kwargs = dict(base=coop.base, novel=coop.novel, steps=6, lr=1e-2, warmup=1)
    with pytest.raises(ValueError, match="pool"):
        base_to_novel.CoOpRuns(clip.text_tower, tok, BASE, NOVEL, 1.0, pool=(feats, labels[:-1]), **kwargs)
    with pytest.raises(ValueError, match="pool"):
        base_to_novel.CoOpRuns(clip.text_tower, tok, BASE, NOVEL, 1.0, pool=feats, **kwargs)
    with pytest.raises(ValueError, match="novel_names"):
        base_to_novel.CoOpRuns(clip.text_tower, tok, BASE, [], 1.0, pool=coop.pool, **kwargs)
    no_sgd = base_to_novel.CoOpRuns(clip.text_tower, tok, BASE, NOVEL, 1.0, pool=coop.pool, **kwargs)
    with pytest.raises(ValueError, match="sgd"):
        no_sgd.train(2, run_seed=0, optimizer="sgd")


def test_prompted_runs(tok, clip, coop):
    torch.manual_seed(0)
    states = {k: torch.randn(len(getattr(coop, k)[0]), 1 + clip.image_tower.n_patches, clip.image_tower.width)
              for k in ("pool", "base", "novel")}
    frozen = clip.encode_text(tok([f"a photo of a {c}" for c in BASE])).detach()
    runs = base_to_novel.PromptedRuns(coop, clip, states, frozen, prompt_layer=1, batch_size=4)
    net, history = runs.train(dict(visual=True, lam=10.0, r_text=0.2, r_image=0.2), run_seed=0, shots=2)
    assert isinstance(net, restore.MultimodalPrompts) and len(history["loss"]) == coop.steps
    again, _ = runs.train(dict(visual=True, lam=10.0, r_text=0.2, r_image=0.2), run_seed=0, shots=2)
    assert torch.equal(again.text.ctx, net.text.ctx)
    r = runs.evaluate(net)
    assert set(r) == {"base", "novel", "H", "text shift", "image shift", "imbalance", "context drift",
                      "Gram ratio, text prompt", "Gram ratio, visual prompt"}
    assert r["imbalance"] == pytest.approx(abs(r["text shift"] - r["image shift"]))
    assert r["H"] == pytest.approx(prompts.harmonic_mean(r["base"], r["novel"]))
    coop_only, _ = runs.train(dict(visual=False, lam=0.0), run_seed=0, shots=2)
    assert runs.evaluate(coop_only)["Gram ratio, visual prompt"] == 1.0
    with pytest.raises(ValueError, match="setting"):
        runs.train(dict(visual=True), run_seed=0)
    with pytest.raises(ValueError, match="states"):
        base_to_novel.PromptedRuns(coop, clip, {"pool": states["pool"]}, frozen, prompt_layer=1, batch_size=4)
    with pytest.raises(ValueError, match="coop"):
        base_to_novel.PromptedRuns(None, clip, states, frozen, prompt_layer=1, batch_size=4)
