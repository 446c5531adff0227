"""tutorlib.objectives.binding: the Gram volume, GRAM's loss, ImageBind's anchored loss, all pairs."""
import math

import pytest
import torch
import torch.nn.functional as F

from tutorlib.objectives import binding, losses


def unit(*shape):
    return F.normalize(torch.randn(*shape), dim=-1)


def test_volume_against_a_loop_and_two_vectors_against_sin():
    vs = [unit(6, 8) for _ in range(4)]
    got = binding.volume(*vs, eps=0)
    for n in range(6):
        m = torch.stack([v[n] for v in vs])
        assert torch.isclose(got[n], torch.linalg.det(m @ m.T).clamp_min(0).sqrt(), atol=1e-5)
    a, b = unit(10, 5), unit(10, 5)
    sin = (1 - (a * b).sum(-1) ** 2).clamp_min(0).sqrt()
    torch.testing.assert_close(binding.volume(a, b, eps=0), sin, atol=1e-5, rtol=1e-4)


def test_volume_is_invariant_to_order_sign_and_scale():
    a, b, c = unit(7, 6), unit(7, 6), unit(7, 6)
    v = binding.volume(a, b, c)
    torch.testing.assert_close(binding.volume(c, a, b), v)
    torch.testing.assert_close(binding.volume(-a, 3 * b, c), v, atol=1e-5, rtol=1e-4)   # unit vectors: scale ignored
    assert binding.volume(a, a, b, eps=0).abs().max() < 1e-3                             # two parallel: no volume
    e = torch.eye(4)
    torch.testing.assert_close(binding.volume(e[:1], e[1:2], e[2:3], eps=0), torch.ones(1))


def test_volume_matrix_is_the_volume_of_text_i_with_tuple_j():
    t, i, a = unit(5, 8), unit(4, 8), unit(4, 8)
    V = binding.volume_matrix(t, [i, a])
    for r in range(5):
        for c in range(4):
            assert torch.isclose(V[r, c], binding.volume(t[r:r + 1], i[c:c + 1], a[c:c + 1])[0], atol=1e-5)


def test_gram_loss_is_the_symmetric_smoothed_cross_entropy_of_minus_volumes():
    t, i, a, v = (unit(6, 8) for _ in range(4))
    s = torch.tensor(math.log(1 / 0.07))
    V = binding.volume_matrix(t, [i, a, v])
    want = sum(F.cross_entropy(-s.exp() * M, torch.arange(6), label_smoothing=0.1) for M in (V, V.T)) / 2
    torch.testing.assert_close(binding.gram_loss(t, [i, a, v], s), want)


def test_gradients_stay_finite_when_a_positive_volume_is_zero():
    x = unit(4, 8)
    t, i = x.clone().requires_grad_(), x.clone().requires_grad_()         # every positive: volume 0
    binding.gram_loss(t, [i, x.clone()], torch.tensor(2.0)).backward()
    assert torch.isfinite(t.grad).all() and torch.isfinite(i.grad).all()


def test_anchor_and_all_pairs_losses_are_sums_of_clip_losses():
    e = {m: unit(8, 6) for m in ("image", "text", "audio")}
    s = torch.tensor(2.0)
    want = losses.clip_loss(e["image"], e["text"], s) + losses.clip_loss(e["image"], e["audio"], math.log(20))
    got = binding.anchor_loss(e["image"], {"text": e["text"], "audio": e["audio"]}, {"text": s, "audio": math.log(20)})
    torch.testing.assert_close(got, want)
    pairs = [("image", "text"), ("image", "audio"), ("text", "audio")]
    torch.testing.assert_close(binding.all_pairs_loss(e, s), sum(losses.clip_loss(e[p], e[q], s) for p, q in pairs))


def test_bad_input_names_the_argument():
    a, b = unit(4, 8), unit(4, 8)
    with pytest.raises(ValueError, match="at least two"):
        binding.volume(a)
    with pytest.raises(ValueError, match="rows"):
        binding.volume(a, unit(3, 8))
    with pytest.raises(ValueError, match="width"):
        binding.volume(a, unit(4, 7))
    with pytest.raises(ValueError, match="others"):
        binding.volume_matrix(a, [])
    with pytest.raises(ValueError, match="rows"):
        binding.gram_loss(a, [unit(3, 8), unit(3, 8)], 1.0)
    with pytest.raises(ValueError, match="logit_scales"):
        binding.anchor_loss(a, {"text": b}, {"audio": 1.0})
    with pytest.raises(ValueError, match="embeddings"):
        binding.all_pairs_loss({"image": a}, 1.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        binding.gram_loss(a, [b], 1.0, label_smoothing=1.5)


def test_heads_and_fit_joint_train_every_modality():
    torch.manual_seed(0)
    heads = binding.Heads({"image": 5, "text": 7}, dim=4, hidden=8)
    feats = {"image": torch.randn(40, 5), "text": torch.randn(40, 7)}
    s = torch.nn.Parameter(torch.tensor(1.0))
    before = {k: v.clone() for k, v in heads.state_dict().items()}
    h = binding.fit_joint(heads, feats, lambda e: binding.all_pairs_loss(e, s), [s], steps=3, batch_size=8, progress=False)
    assert len(h["loss"]) == 3 and s.item() != 1.0
    assert all(not torch.equal(v, before[k]) for k, v in heads.state_dict().items())
    with pytest.raises(ValueError, match="feats"):
        binding.fit_joint(heads, {"audio": torch.randn(4, 3)}, lambda e: 0, steps=1)
    with pytest.raises(ValueError, match="rows"):
        binding.fit_joint(heads, {"image": torch.randn(4, 5), "text": torch.randn(5, 7)}, lambda e: 0, steps=1)


def _four(n=16, w=(5, 7, 4, 6), seed=0):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(n, k, generator=g) for m, k in zip(("image", "text", "audio", "video"), w)}


def test_method_loss_is_each_method_s_own_loss():
    e = {m: unit(8, 6) for m in ("image", "text", "audio", "video")}
    s = torch.tensor(2.0)
    torch.testing.assert_close(binding.method_loss("ImageBind", s, 3.0)(e), binding.anchor_loss(
        e["image"], {m: e[m] for m in ("text", "audio", "video")}, {"text": s, "audio": 3.0, "video": 3.0}))
    torch.testing.assert_close(binding.method_loss("all pairs", s)(e), binding.all_pairs_loss(e, s))
    torch.testing.assert_close(binding.method_loss("GRAM", s)(e),
                               binding.gram_loss(e["text"], [e["image"], e["audio"], e["video"]], s))
    with pytest.raises(ValueError, match="method: got 'CLIP'"):
        binding.method_loss("CLIP", s)


def test_train_heads_starts_every_method_alike_and_can_continue_another_model():
    feats = _four()
    a, ha = binding.train_heads("GRAM", feats, 4, steps=2, batch_size=8, seed=3, progress=False)
    b, _ = binding.train_heads("GRAM", feats, 4, steps=2, batch_size=8, seed=3, progress=False)
    assert len(ha["loss"]) == 2 and not a.training
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())       # seeded
    torch.manual_seed(3)
    fresh = binding.Heads({m: x.shape[1] for m, x in feats.items()}, 4)                  # the start of every method
    c, _ = binding.train_heads("all pairs", feats, 4, start=fresh, steps=1, lr=1e-12, batch_size=8, progress=False)
    for k, v in c.state_dict().items():
        torch.testing.assert_close(v, fresh.state_dict()[k], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="start: got Linear"):
        binding.train_heads("GRAM", feats, 4, start=torch.nn.Linear(2, 2), steps=1)
    with pytest.raises(ValueError, match="method"):
        binding.train_heads("gram", feats, 4, steps=1)


def test_heads_embed_every_modality_without_gradient():
    feats = _four(n=6)
    heads = binding.Heads({m: x.shape[1] for m, x in feats.items()}, 4, hidden=8)
    e = heads.embed(feats)
    assert list(e) == list(feats) and not any(v.requires_grad for v in e.values())
    for m, x in feats.items():
        torch.testing.assert_close(e[m], heads(m, x))
    with pytest.raises(ValueError, match="feats: got list"):
        heads.embed([feats["image"]])


def test_tuple_geometry_of_orthogonal_and_identical_tuples():
    basis = torch.eye(4)[None].expand(5, 4, 4)
    spread = {m: basis[:, k] for k, m in enumerate(("text", "image", "audio", "video"))}
    geo = binding.tuple_geometry(spread)
    assert geo["cos(image, audio)"] == geo["cos(image, video)"] == geo["cos(text, image)"] == 0
    assert geo["Vol(image, audio, video)"] == pytest.approx(1, abs=1e-5)
    assert geo["dist(text, span)"] == pytest.approx(1, abs=1e-5)          # the text is orthogonal to their span
    same = {m: spread["image"] for m in spread}
    geo = binding.tuple_geometry(same)
    assert geo["cos(image, audio)"] == pytest.approx(1) and geo["Vol(image, audio, video)"] < 2e-3
    with pytest.raises(ValueError, match=r"emb: got no \['video'\]"):
        binding.tuple_geometry({m: spread[m] for m in ("text", "image", "audio")})


def test_sign_blind_similarity_ranks_by_the_two_vector_volume():
    q, g = unit(6, 5), unit(9, 5)
    sim = binding.sign_blind_similarity(q, g)
    vol = torch.stack([binding.volume(q[i:i + 1].expand(9, 5), g, eps=0) for i in range(6)])   # [6, 9]: |sin|
    torch.testing.assert_close(sim, (q @ g.T).abs())
    assert torch.equal(sim.argmax(1), vol.argmin(1))
    torch.testing.assert_close(binding.sign_blind_similarity(q, -g), sim)
    with pytest.raises(ValueError, match="query and gallery: got widths"):
        binding.sign_blind_similarity(q, unit(3, 4))


def test_the_seed_defaults_to_tutorlib_seed(monkeypatch):
    """None means TUTORLIB_SEED, as everywhere in the course (it was a fixed 0 here)."""
    feats = _four()
    monkeypatch.setenv("TUTORLIB_SEED", "3")
    a, _ = binding.train_heads("GRAM", feats, 4, steps=2, batch_size=8, progress=False)
    b, _ = binding.train_heads("GRAM", feats, 4, steps=2, batch_size=8, seed=3, progress=False)
    c, _ = binding.train_heads("GRAM", feats, 4, steps=2, batch_size=8, seed=0, progress=False)
    same = lambda x, y: all(torch.equal(p, q) for p, q in zip(x.state_dict().values(), y.state_dict().values()))  # noqa: E731
    assert same(a, b) and not same(a, c)


def test_the_official_root_has_a_unit_slope_and_nan_only_at_an_exact_zero():
    for theta in (1e-1, 1e-3, 1e-5):                 # float64: the volume |sin theta| is Lipschitz
        a = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
        b = torch.tensor([[math.cos(theta), math.sin(theta)]], dtype=torch.float64, requires_grad=True)
        binding.volume(a, b, eps=None).sum().backward()
        assert b.grad.norm().item() == pytest.approx(math.cos(theta), abs=1e-6)    # d|sin|/dθ
    x = unit(3, 5).requires_grad_()
    binding.volume(x, x.detach().clone(), eps=None).sum().backward()       # det G = 0 exactly
    assert torch.isnan(x.grad).any()
    y = unit(3, 5).requires_grad_()                                         # the default: finite, vanishing
    binding.volume(y, y.detach().clone()).sum().backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().max() < 1e-3
    with pytest.raises(ValueError, match="eps: got -1"):
        binding.volume(x, x, eps=-1)


def test_initial_heads_are_every_method_s_start_and_the_history_tracks_the_geometry():
    feats = _four()
    start = binding.initial_heads({m: x.shape[1] for m, x in feats.items()}, 4, seed=3)
    c, h = binding.train_heads("GRAM", feats, 4, steps=2, lr=1e-12, batch_size=8, seed=3, progress=False)
    for k, v in c.state_dict().items():
        torch.testing.assert_close(v, start.state_dict()[k], atol=1e-6, rtol=0)
    assert len(h["Vol(image, audio, video)"]) == 2 and len(h["cos(image, audio)"]) == 2
    assert all(0 <= v <= 1 for v in h["Vol(image, audio, video)"])


def test_members_fixed_keeps_the_value_and_cuts_the_members_volume_gradient():
    t, i, a, v = (unit(6, 8).requires_grad_() for _ in range(4))
    s = torch.tensor(2.0)
    full, fixed = binding.gram_loss(t, [i, a, v], s), binding.gram_loss(t, [i, a, v], s, members_fixed=True)
    torch.testing.assert_close(full, fixed)
    g_full = torch.autograd.grad(full, [i])[0]
    g_fixed = torch.autograd.grad(fixed, [i])[0]
    assert not torch.allclose(g_full, g_fixed)
    h = binding.train_heads(binding.ABLATION, _four(), 4, steps=2, batch_size=8, seed=0, progress=False)[1]
    assert len(h["1/tau"]) == 2 and h["1/tau"][0] == pytest.approx(1 / 0.07, rel=0.05)
