"""tutorlib.objectives.losses: CLIP (with and without NegCLIP swap negatives), SigLIP and CWCL
losses against independent implementations."""
import math

import pytest
import torch
import torch.nn.functional as F

from tutorlib.objectives import losses

try:                                   # transformers < 5
    from transformers.models.clip.modeling_clip import clip_loss as hf_clip_loss
except ImportError:                    # transformers >= 5 renamed it
    from transformers.models.clip.modeling_clip import image_text_contrastive_loss as hf_clip_loss


def _emb(n=6, d=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=dtype), torch.randn(n, d, generator=g, dtype=dtype))


def _unit(n, d, seed=0):
    """n random unit vectors of width d, in float64."""
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)


def _loop_clip_loss(x, y, logit_scale):
    """Symmetric InfoNCE with explicit loops, in float64."""
    x = [[a / math.sqrt(sum(b * b for b in v)) for a in v] for v in x.double().tolist()]
    y = [[a / math.sqrt(sum(b * b for b in v)) for a in v] for v in y.double().tolist()]
    s = math.exp(float(logit_scale))
    n = len(x)
    logits = [[s * sum(a * b for a, b in zip(x[i], y[j])) for j in range(n)] for i in range(n)]
    i2t = t2i = 0.0
    for i in range(n):
        row = logits[i]
        i2t += -row[i] + math.log(sum(math.exp(v) for v in row))
        col = [logits[j][i] for j in range(n)]
        t2i += -col[i] + math.log(sum(math.exp(v) for v in col))
    return (i2t / n + t2i / n) / 2


def _soft_clip_loss(x, y, logit_scale, targets):
    """Soft-target CLIP loss with log-softmax, written from the definition."""
    x, y = torch.nn.functional.normalize(x, dim=-1), torch.nn.functional.normalize(y, dim=-1)
    logits = logit_scale.exp() * x @ y.T
    t = targets.double()
    p_i = t / t.sum(1, keepdim=True)                 # image i -> its captions
    p_t = (t / t.sum(0, keepdim=True)).T             # caption j -> its images
    li = -(p_i * logits.log_softmax(1)).sum(1).mean()
    lt = -(p_t * logits.T.log_softmax(1)).sum(1).mean()
    return (li + lt) / 2


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("scale", [0.0, 1.0, math.log(1 / 0.07)])
def test_clip_loss_equals_loops(seed, scale):
    x, y = _emb(seed=seed)
    got = losses.clip_loss(x, y, scale)
    assert got.ndim == 0
    want = _loop_clip_loss(x, y, scale)
    assert math.isclose(got.item(), want, rel_tol=1e-6)       # a Python float scale is float32
    exact = losses.clip_loss(x, y, torch.tensor(scale, dtype=torch.float64))
    assert math.isclose(exact.item(), want, rel_tol=1e-10, abs_tol=1e-12)


def test_clip_loss_equals_transformers():
    x, y = _emb(8, 16, seed=3)
    scale = torch.tensor(2.5, dtype=torch.float64)
    logits_per_text = scale.exp() * (torch.nn.functional.normalize(y, dim=-1)
                                     @ torch.nn.functional.normalize(x, dim=-1).T)
    want = hf_clip_loss(logits_per_text)
    assert torch.allclose(losses.clip_loss(x, y, scale), want, rtol=1e-10, atol=1e-12)


def test_similarity_is_the_cosine():
    x, y = _emb(4, 3)
    sim = losses.similarity(x, y)
    assert sim.abs().max() <= 1 + 1e-12
    assert torch.allclose(losses.similarity(x, x).diagonal(), torch.ones(4, dtype=torch.float64))
    assert losses.similarity(x, y[:2]).shape == (4, 2)


def test_clip_loss_scale_invariant():
    x, y = _emb(seed=4)
    a = losses.clip_loss(x, y, 2.0)
    rows = torch.tensor([0.5, 3.0, 10.0, 0.1, 7.0, 1.0], dtype=torch.float64)[:, None]
    assert torch.allclose(losses.clip_loss(x * rows, 4.0 * y, 2.0), a, atol=1e-12)


def test_clip_loss_perfect_pairs_is_low():
    eye = torch.eye(5, dtype=torch.float64)
    assert losses.clip_loss(eye, eye, math.log(100)) < 1e-10
    assert math.isclose(losses.clip_loss(eye, eye, -50.0).item(), math.log(5), rel_tol=1e-6)


def test_clip_loss_logit_scale_gradient():
    x, y = _emb(5, 4, seed=5)
    s = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s_: losses.clip_loss(x, y, s_), (s,))
    xs, ys = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b, s_: losses.clip_loss(a, b, s_), (xs, ys, s))
    # and a plain central finite difference
    loss = losses.clip_loss(x, y, s)
    (g,) = torch.autograd.grad(loss, s)
    h = 1e-6
    fd = (_loop_clip_loss(x, y, 1.3 + h) - _loop_clip_loss(x, y, 1.3 - h)) / (2 * h)
    assert math.isclose(g.item(), fd, rel_tol=1e-5, abs_tol=1e-8)


def test_soft_targets_identity_equals_plain():
    x, y = _emb(seed=6)
    eye = torch.eye(6, dtype=torch.bool)
    assert torch.allclose(losses.clip_loss(x, y, 2.0, targets=eye), losses.clip_loss(x, y, 2.0),
                          atol=1e-12)


def test_soft_targets_equal_definition():
    x, y = _emb(6, 4, seed=7)
    t = torch.eye(6, dtype=torch.bool)
    t[0, 3] = t[3, 0] = t[2, 5] = True                 # duplicate captions
    s = torch.tensor(1.7, dtype=torch.float64)
    got = losses.clip_loss(x, y, s, targets=t)
    assert torch.allclose(got, _soft_clip_loss(x, y, s, t), atol=1e-6)
    assert not torch.allclose(got, losses.clip_loss(x, y, s), atol=1e-6)


def test_soft_targets_bad_input():
    x, y = _emb(4, 3)
    with pytest.raises(ValueError, match="targets"):
        losses.clip_loss(x, y, 1.0, targets=torch.eye(3, dtype=torch.bool))
    t = torch.eye(4, dtype=torch.bool)
    t[2, 2] = False
    with pytest.raises(ValueError, match="targets"):
        losses.clip_loss(x, y, 1.0, targets=t)


def _siglip_reference(x, y, logit_scale, logit_bias):
    x, y = x.double().tolist(), y.double().tolist()
    x = [[a / math.sqrt(sum(b * b for b in v)) for a in v] for v in x]
    y = [[a / math.sqrt(sum(b * b for b in v)) for a in v] for v in y]
    n = len(x)
    total = 0.0
    for i in range(n):
        for j in range(n):
            z = 1.0 if i == j else -1.0
            logit = math.exp(logit_scale) * sum(a * b for a, b in zip(x[i], y[j])) + logit_bias
            total += math.log1p(math.exp(-z * logit))     # -log sigmoid(z * logit)
    return total / n


@pytest.mark.parametrize("scale, bias", [(math.log(10), -10.0), (0.0, 0.0), (2.0, 1.5)])
def test_siglip_loss_equals_formula(scale, bias):
    x, y = _emb(5, 4, seed=8)
    got = losses.siglip_loss(x, y, torch.tensor(scale, dtype=torch.float64),
                             torch.tensor(bias, dtype=torch.float64))
    assert got.ndim == 0
    want = _siglip_reference(x, y, scale, bias)
    assert math.isclose(got.item(), want, rel_tol=1e-10)
    assert math.isclose(losses.siglip_loss(x, y, scale, bias).item(), want, rel_tol=1e-5)


def test_siglip_gradients():
    x, y = _emb(4, 3, seed=9)
    s = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s_, b_: losses.siglip_loss(x, y, s_, b_), (s, b))


BAD = {
    "mismatched batch": (lambda x, y: (x, y[:4], 1.0), "image_emb"),
    "mismatched width": (lambda x, y: (x, y[:, :3], 1.0), "image_emb"),
    "1-D image": (lambda x, y: (x[0], y, 1.0), "image_emb"),
    "1-D text": (lambda x, y: (x, y[0], 1.0), "text_emb"),
    "NaN image": (lambda x, y: (torch.where(torch.arange(5) == 2, float("nan"), x), y, 1.0),
                  "image_emb"),
    "inf text": (lambda x, y: (x, y.clone().fill_(float("inf")), 1.0), "text_emb"),
    "int image": (lambda x, y: (x.long(), y, 1.0), "image_emb"),
    "list text": (lambda x, y: (x, y.tolist(), 1.0), "text_emb"),
    "vector scale": (lambda x, y: (x, y, torch.ones(2)), "logit_scale"),
    "NaN scale": (lambda x, y: (x, y, float("nan")), "logit_scale"),
    "string scale": (lambda x, y: (x, y, "1.0"), "logit_scale"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_clip_loss_bad_input(case):
    make, name = BAD[case]
    x, y = _emb(6, 5)
    with pytest.raises(ValueError, match=name):
        losses.clip_loss(*make(x, y))


@pytest.mark.parametrize("case", list(BAD))
def test_siglip_loss_bad_input(case):
    make, name = BAD[case]
    x, y = _emb(6, 5)
    with pytest.raises(ValueError, match=name):
        losses.siglip_loss(*make(x, y), -10.0)


def test_siglip_bad_bias():
    x, y = _emb(6, 5)
    with pytest.raises(ValueError, match="logit_bias"):
        losses.siglip_loss(x, y, 1.0, torch.zeros(3))


def test_clamp_logit_scale():
    for start, want in ((10.0, math.log(100)), (-3.0, 0.0), (2.0, 2.0), (math.log(100), math.log(100))):
        p = torch.nn.Parameter(torch.tensor(start))
        losses.clamp_logit_scale_(p)
        assert math.isclose(p.item(), want, rel_tol=1e-6)
        assert p.requires_grad
    p = torch.nn.Parameter(torch.tensor(5.0))
    losses.clamp_logit_scale_(p, max_scale=50.0)
    assert math.isclose(p.item(), math.log(50), rel_tol=1e-6)


def test_info_nce_is_cross_entropy_on_the_diagonal():
    from tutorlib.objectives import losses
    logits = torch.randn(6, 6, dtype=torch.float64)
    manual = -torch.stack([logits[i].log_softmax(0)[i] for i in range(6)]).mean()
    assert torch.allclose(losses.info_nce(logits), manual)
    with pytest.raises(ValueError, match="logits"):
        losses.info_nce(torch.randn(3, 4))


def test_swap_negatives_raise_the_loss_when_they_look_like_positives():
    """clip_loss_with_negatives (NegCLIP): extra captions in the image -> text softmax."""
    x, y = _unit(5, 8, 9), _unit(5, 8, 10)
    t = torch.tensor(math.log(10.0), dtype=torch.float64)
    far = -x[:2]                       # easy negatives: opposite the images
    near = x[:2] * 0.99 + 0.01 * y[:2]  # hard negatives: right on top of images 0 and 1
    base = losses.clip_loss(x, y, t)
    easy = losses.clip_loss_with_negatives(x, y, far, t)
    hard = losses.clip_loss_with_negatives(x, y, near, t)
    assert base <= easy + 1e-3 < hard
    with pytest.raises(ValueError, match="neg_text_emb"):
        losses.clip_loss_with_negatives(x, y, _unit(2, 7), t)


READS_PER_CALL = {          # host reads of a device value (bool() or .item()): each one waits for a GPU
    "clip_loss": (lambda x, y, s, t: losses.clip_loss(x, y, s), 1),
    "clip_loss with soft targets": (lambda x, y, s, t: losses.clip_loss(x, y, s, targets=t), 2),
    "NegCLIP": (lambda x, y, s, t: losses.clip_loss_with_negatives(x, y, y[:3], s), 1),
    "SigLIP": (lambda x, y, s, t: losses.siglip_loss(x, y, s, -10.0), 1),
}


@pytest.mark.parametrize("case", list(READS_PER_CALL))
def test_losses_read_the_device_once_per_call(case, monkeypatch):
    """Checks at the boundary: all finiteness checks of a loss share one synchronisation
    (soft targets add one more, for 'every row has a positive'), where there were 7 to 12."""
    fn, allowed = READS_PER_CALL[case]
    x, y = _emb(8, 4)
    s, t = torch.tensor(2.0, requires_grad=True), torch.eye(8, dtype=torch.bool)
    reads = []
    real_bool, real_item = torch.Tensor.__bool__, torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "__bool__", lambda self: reads.append(1) or real_bool(self))
    monkeypatch.setattr(torch.Tensor, "item", lambda self: reads.append(1) or real_item(self))
    fn(x, y, s, t)
    assert len(reads) == allowed


def test_clip_loss_with_negatives_soft_targets():
    """Identity targets give the plain NegCLIP loss; a duplicated caption as a target lowers it."""
    torch.manual_seed(0)
    x, y, n, t = torch.randn(6, 8), torch.randn(6, 8), torch.randn(3, 8), torch.tensor(2.0)
    eye = torch.eye(6, dtype=torch.bool)
    assert torch.allclose(losses.clip_loss_with_negatives(x, y, n, t, targets=eye),
                          losses.clip_loss_with_negatives(x, y, n, t), atol=1e-6)
    soft = eye.clone()
    soft[0, 1] = soft[1, 0] = soft[2, 4] = True                  # rows 0, 2 and columns 1, 4 hold two targets
    s = t.exp()
    xn, yn, nn = (torch.nn.functional.normalize(v, dim=-1) for v in (x, y, n))
    li = torch.cat([s * xn @ yn.T, s * xn @ nn.T], 1).log_softmax(1)[:, :6]       # extra columns: never targets
    lt = (s * yn @ xn.T).log_softmax(1)
    w = soft.float()
    expected = (-(w / w.sum(1, keepdim=True) * li).sum(1).mean()
                - ((w / w.sum(0, keepdim=True)).T * lt).sum(1).mean()) / 2
    assert torch.allclose(losses.clip_loss_with_negatives(x, y, n, t, targets=soft), expected, atol=1e-5)


# ---- CWCL (lesson 08): weighted targets ---------------------------------------------
def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


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
