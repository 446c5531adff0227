"""Lesson 08's pieces against loop implementations written from the papers' equations:
linear CKA and mutual kNN, CWCL's weights and loss, STRUCTURE's neighbourhoods, JS
divergence and regulariser, SimCLR's NT-Xent; the reductions the issue names (w = I is
CLIP, R = 0 for identical inputs) and clear errors on bad input."""
import math

import pytest
import torch
import torch.nn.functional as F

from tutorlib.methods import fewpairs
from tutorlib.objectives import losses, structure
from tutorlib.evaluation import representations
from tutorlib.zoo import selfsup
from tutorlib import world


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---- CKA and mutual kNN --------------------------------------------------------------
def _loop_cka(x, y):
    """CKA through the Gram matrices: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), K = XXᵀ, H centring."""
    n = len(x)
    h = torch.eye(n, dtype=torch.float64) - 1.0 / n
    k, l_ = h @ (x.double() @ x.double().T) @ h, h @ (y.double() @ y.double().T) @ h
    return float((k * l_).sum() / ((k * k).sum() * (l_ * l_).sum()).sqrt())


def test_linear_cka_equals_the_gram_form_and_its_invariances():
    x, y = _randn(40, 6), _randn(40, 9, seed=1)
    assert representations.linear_cka(x, y) == pytest.approx(_loop_cka(x, y), abs=1e-9)
    q, _ = torch.linalg.qr(_randn(6, 6, seed=2))
    assert representations.linear_cka(x, 3.0 * x @ q + 5.0) == pytest.approx(1.0, abs=1e-9)
    assert representations.linear_cka(x, y) < 0.5


def test_mutual_knn_equals_the_loop():
    x, y = _randn(30, 5), _randn(30, 7, seed=1)
    k = 4

    def neighbours(z, i):
        z = F.normalize(z.double(), dim=-1)
        sims = [(float(z[i] @ z[j]), j) for j in range(len(z)) if j != i]
        return {j for _, j in sorted(sims, reverse=True)[:k]}
    loop = sum(len(neighbours(x, i) & neighbours(y, i)) / k for i in range(30)) / 30
    assert representations.mutual_knn(x, y, k) == pytest.approx(loop, abs=1e-12)
    assert representations.mutual_knn(x, 2 * x, k) == 1.0


def test_similarity_measures_reject_bad_input():
    with pytest.raises(ValueError, match="x and y"):
        representations.linear_cka(_randn(10, 3), _randn(11, 3))
    with pytest.raises(ValueError, match="k: got 10"):
        representations.mutual_knn(_randn(10, 3), _randn(10, 3), k=10)
    with pytest.raises(ValueError, match="constant"):
        representations.linear_cka(torch.ones(5, 3), _randn(5, 3))
    with pytest.raises(ValueError, match="at least 3"):
        representations.linear_cka(_randn(2, 3), _randn(2, 3))


# ---- CWCL ----------------------------------------------------------------------------
def _loop_cwcl_direction(u, v, w, scale):
    """-1/N Σ_i (1/Σ_j w_ij) Σ_j w_ij log softmax_j(s ⟨u_i, v_j⟩), by hand."""
    u, v = F.normalize(u, dim=-1), F.normalize(v, dim=-1)
    n, total = len(u), 0.0
    for i in range(n):
        logits = [scale * float(u[i] @ v[j]) for j in range(n)]
        log_z = math.log(sum(math.exp(l) for l in logits))
        total += -sum(float(w[i, j]) * (logits[j] - log_z) for j in range(n)) / float(w[i].sum())
    return total / n


def test_cwcl_weights_follow_the_paper():
    p = _randn(7, 5)
    w = losses.cwcl_weights(p)
    pn = F.normalize(p, dim=-1)
    torch.testing.assert_close(w, (pn @ pn.T / 2 + 0.5).fill_diagonal_(1.0))
    assert bool((w >= 0).all() & (w <= 1).all())
    torch.testing.assert_close(w, w.T)
    centred = losses.cwcl_weights(p + 10.0, centre=True)          # a cone: raw weights all near 1
    assert losses.cwcl_weights(p + 10.0).min() > 0.99 > centred.min()


def test_cwcl_loss_equals_the_loop_in_each_direction():
    zi, zt = _randn(6, 4), _randn(6, 4, seed=1)
    w_i, w_t = losses.cwcl_weights(_randn(6, 8, seed=2)), losses.cwcl_weights(_randn(6, 3, seed=3))
    scale = 7.0
    got = losses.cwcl_loss(zi, zt, torch.tensor(math.log(scale)), i2t_weights=w_i, t2i_weights=w_t)
    want = (_loop_cwcl_direction(zi, zt, w_i, scale) + _loop_cwcl_direction(zt, zi, w_t, scale)) / 2
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_cwcl_with_identity_weights_is_the_clip_loss():
    zi, zt, s = _randn(8, 5), _randn(8, 5, seed=1), torch.tensor(2.0)
    eye = torch.eye(8)
    clip = losses.clip_loss(zi, zt, s)
    torch.testing.assert_close(losses.cwcl_loss(zi, zt, s, eye, eye), clip)
    torch.testing.assert_close(losses.cwcl_loss(zi, zt, s), clip)


def test_cwcl_rejects_bad_weights():
    zi, zt, s = _randn(4, 3), _randn(4, 3, seed=1), torch.tensor(1.0)
    with pytest.raises(ValueError, match=r"i2t_weights: got shape \(3, 3\)"):
        losses.cwcl_loss(zi, zt, s, i2t_weights=torch.eye(3))
    with pytest.raises(ValueError, match="t2i_weights: expected weights >= 0"):
        losses.cwcl_loss(zi, zt, s, t2i_weights=-torch.eye(4))
    with pytest.raises(ValueError, match="centre"):
        losses.cwcl_weights(zi, centre="yes")


# ---- STRUCTURE -----------------------------------------------------------------------
def _loop_neighbourhoods(x, tau):
    z = F.normalize(x.double(), dim=-1)
    c = z - z.mean(0)
    n = len(x)
    p = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        e = [math.exp(float(c[i] @ c[j]) / tau) for j in range(n)]
        for j in range(n):
            p[i, j] = e[j] / sum(e)
    return p


def _loop_js(p, q):
    out = []
    for pi, qi in zip(p.tolist(), q.tolist()):
        m = [(a + b) / 2 for a, b in zip(pi, qi)]
        kl = lambda a, b: sum(x * math.log(x / y) for x, y in zip(a, b) if x > 0)
        out.append(kl(pi, m) / 2 + kl(qi, m) / 2)
    return out


def test_neighbourhoods_and_js_equal_the_loops():
    x, y = _randn(9, 4), _randn(9, 6, seed=1)
    px, py = structure.neighbourhoods(x, 0.5), structure.neighbourhoods(y, 0.5)
    torch.testing.assert_close(px.double(), _loop_neighbourhoods(x, 0.5), atol=1e-6, rtol=0)
    torch.testing.assert_close(px.sum(1), torch.ones(9))
    js = structure.js_divergence(px, py)
    assert js.tolist() == pytest.approx(_loop_js(px, py), abs=1e-6)
    assert bool((js >= 0).all() & (js <= math.log(2) + 1e-6).all())


def test_regulariser_levels_are_matrix_powers_and_zero_for_identical_inputs():
    x, z = _randn(10, 5), _randn(10, 3, seed=1)
    px, pz = structure.neighbourhoods(x, 0.3), structure.neighbourhoods(z, 0.3)
    one = structure.js_divergence(px, pz).mean()
    two = structure.js_divergence(px @ px, pz @ pz).mean()
    assert structure.regulariser(x, z, 0.3).item() == pytest.approx(one.item(), rel=1e-6)
    got = structure.regulariser(x, z, 0.3, levels=2, level_weights=[1.0, 3.0])
    assert got.item() == pytest.approx((one + 3 * two).item() / 2, rel=1e-5)
    assert structure.regulariser(x, x, 0.3, levels=3).item() == pytest.approx(0.0, abs=1e-7)
    q, _ = torch.linalg.qr(_randn(5, 5, seed=2))                  # a rotation keeps every neighbourhood
    assert structure.regulariser(x, 2 * x @ q).item() == pytest.approx(0.0, abs=1e-6)


def test_regulariser_sends_gradient_to_the_aligned_side_only():
    x = _randn(8, 5).requires_grad_()
    z = _randn(8, 3, seed=1).requires_grad_()
    structure.regulariser(x, z).backward()
    assert x.grad is None and z.grad is not None and z.grad.abs().sum() > 0


def test_structure_weight_warms_up_linearly_and_bad_input_is_named():
    assert [structure.weight(s, 10.0, 4) for s in (0, 1, 3, 9)] == [2.5, 5.0, 10.0, 10.0]
    with pytest.raises(ValueError, match="step"):
        structure.weight(-1)
    with pytest.raises(ValueError, match="level_weights"):
        structure.regulariser(_randn(4, 2), _randn(4, 2), levels=2, level_weights=[1.0])
    with pytest.raises(ValueError, match="frozen and aligned"):
        structure.regulariser(_randn(4, 2), _randn(5, 2))
    with pytest.raises(ValueError, match="tau"):
        structure.neighbourhoods(_randn(4, 2), tau=0)


# ---- SimCLR and the few-pairs pipeline ------------------------------------------------
def test_nt_xent_equals_the_loop():
    z1, z2, tau = _randn(5, 4), _randn(5, 4, seed=1), 0.5
    z = F.normalize(torch.cat([z1, z2]), dim=-1)
    total = 0.0
    for a in range(10):
        partner = (a + 5) % 10
        logits = [float(z[a] @ z[b]) / tau for b in range(10) if b != a]
        total += -(float(z[a] @ z[partner]) / tau - math.log(sum(math.exp(l) for l in logits)))
    assert selfsup.nt_xent(z1, z2, tau).item() == pytest.approx(total / 10, rel=1e-5)


def test_views_keep_the_objects_and_change_the_rest():
    sc = world.sample_scenes(6, seed=3)
    g = torch.Generator().manual_seed(0)
    a, b = selfsup.views(sc, g), selfsup.views(sc, g)
    assert a.shape == (6, 3, 32, 32) and float(a.min()) >= 0 and float(a.max()) <= 1
    assert not torch.equal(a, b)
    masks = world.object_masks(sc)[:, 0]                               # object 0's pixels
    inside = ((a - b).abs().mean(1)[masks]).mean()
    assert inside < 0.12                                               # the object's colour stays


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
        fewpairs.recipe(cwcl_source="audio")
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
