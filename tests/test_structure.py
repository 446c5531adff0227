"""tutorlib.objectives.structure: STRUCTURE's neighbourhoods, JS divergence, regulariser and warm-up."""
import math

import pytest
import torch
import torch.nn.functional as F

from tutorlib.objectives import structure


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


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


def _loop_divergence(p, q, official=False):
    """Per row, in float64 Python, m = (p + q) / 2: Jensen-Shannon ½ KL(p ‖ m) + ½ KL(q ‖ m), or
    (``official``) the authors' code's ½ KL(m ‖ q) + ½ KL(m ‖ p)."""
    kl = lambda a, b: sum(x * math.log(x / y) for x, y in zip(a, b) if x > 0)    # noqa: E731
    out = []
    for pi, qi in zip(p.tolist(), q.tolist()):
        m = [(a + b) / 2 for a, b in zip(pi, qi)]
        out.append((kl(m, qi) + kl(m, pi)) / 2 if official else (kl(pi, m) + kl(qi, m)) / 2)
    return out


def _loop_js(p, q):
    return _loop_divergence(p, q)


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


def _loop_official(p, q):
    return _loop_divergence(p, q, official=True)


def test_official_divergence_is_kl_from_the_mixture_and_unbounded():
    x, y = _randn(9, 4), _randn(9, 6, seed=1)
    px, py = structure.neighbourhoods(x.double(), 0.5), structure.neighbourhoods(y.double(), 0.5)
    got = structure.official_divergence(px, py)
    assert got.tolist() == pytest.approx(_loop_official(px, py), rel=1e-9)
    # the authors' two calls (clip_loss.py:121-129), summed over rows and divided by N
    m, eps = (px + py) / 2, 1e-12
    code = 0.5 * (F.kl_div((py + eps).log(), m + eps, reduction="batchmean")
                  + F.kl_div((px + eps).log(), m + eps, reduction="batchmean"))
    assert got.mean().item() == pytest.approx(code.item(), rel=1e-9)
    # not Jensen-Shannon: the two differ, and only JS is bounded by ln 2
    assert not torch.allclose(got, structure.js_divergence(px, py))
    sharp_p = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    sharp_q = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    assert structure.js_divergence(sharp_p, sharp_q).tolist() == pytest.approx([math.log(2)] * 2)
    assert bool((structure.official_divergence(sharp_p, sharp_q) > 10 * math.log(2)).all())
    assert structure.official_divergence(px, px).abs().max().item() < 1e-9


def test_regulariser_takes_either_divergence_and_names_a_bad_one():
    x, z = _randn(10, 5), _randn(10, 3, seed=1)
    px, pz = structure.neighbourhoods(x, 0.3), structure.neighbourhoods(z, 0.3)
    got = structure.regulariser(x, z, 0.3, divergence="official")
    assert got.item() == pytest.approx(structure.official_divergence(px, pz).mean().item(), rel=1e-6)
    assert structure.regulariser(x, x, 0.3, levels=2, divergence="official").item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="divergence: got 'kl', expected one of"):
        structure.regulariser(x, z, divergence="kl")
    with pytest.raises(ValueError, match="p and q: got shapes"):
        structure.official_divergence(px, pz[:3])
