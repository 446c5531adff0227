"""tutorlib.objectives.mixup: slerp on the sphere, the m^2-mix loss and the uni-modal mixups."""
import math

import pytest
import torch
import torch.nn.functional as F

from tutorlib.objectives import losses, mixup


def unit(n, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)


def test_slerp_endpoints_and_stays_on_the_sphere():
    a, b = unit(10, 5, 1), unit(10, 5, 2)
    assert torch.allclose(mixup.slerp(a, b, 1.0), a, atol=1e-6)
    assert torch.allclose(mixup.slerp(a, b, 0.0), b, atol=1e-6)
    for lam in (0.1, 0.5, 0.9):
        assert torch.allclose(mixup.slerp(a, b, lam).norm(dim=-1), torch.ones(10, dtype=torch.float64), atol=1e-6)


def test_slerp_walks_the_great_circle_at_constant_speed():
    a, b = unit(4, 3, 3), unit(4, 3, 4)
    theta = torch.acos((a * b).sum(-1))
    m = mixup.slerp(a, b, 0.25)
    # the angle to b is lam * theta, to a (1 - lam) * theta
    assert torch.allclose(torch.acos((m * b).sum(-1).clamp(-1, 1)), 0.25 * theta, atol=1e-5)
    assert torch.allclose(torch.acos((m * a).sum(-1).clamp(-1, 1)), 0.75 * theta, atol=1e-5)


def test_slerp_no_nan_for_identical_or_opposite_vectors():
    a = unit(3, 4)
    for b in (a.clone(), -a):
        out = mixup.slerp(a, b, 0.3)
        assert torch.isfinite(out).all()
    assert torch.allclose(mixup.slerp(a, a.clone(), 0.3), a, atol=1e-4)
    f = unit(3, 4).float()
    assert torch.isfinite(mixup.slerp(f, f.clone(), 0.5)).all()


def test_slerp_per_row_lambda_and_bad_input():
    a, b = unit(3, 4, 1), unit(3, 4, 2)
    lam = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    out = mixup.slerp(a, b, lam)
    assert torch.allclose(out[0], b[0], atol=1e-6) and torch.allclose(out[2], a[2], atol=1e-6)
    with pytest.raises(ValueError, match="lam"):
        mixup.slerp(a, b, 1.5)
    with pytest.raises(ValueError, match=r"^a and b:"):
        mixup.slerp(a, b[:2], 0.5)
    with pytest.raises(ValueError, match=r"^a:"):
        mixup.slerp(a[0], b[0], 0.5)


def reference_m2mix(x, y, lam, tau):
    """An independent, loop-based m^2-mix (Oh et al. 2022, Eq. 5)."""
    x, y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
    n = len(x)
    total = 0.0
    for anchor in (x, y):
        for i in range(n):
            row = []
            for j in range(n):
                if i == j:
                    row.append((x[i] * y[i]).sum())
                else:
                    th = torch.acos((x[j] * y[j]).sum().clamp(-1, 1))
                    m = (math.sin(lam * th) * x[j] + math.sin((1 - lam) * th) * y[j]) / math.sin(th)
                    row.append((anchor[i] * m).sum())
            row = torch.stack(row) / tau
            total = total - row.log_softmax(0)[i] / n
    return total


def test_m2mix_equals_an_independent_implementation():
    x, y = unit(6, 8, 5), unit(6, 8, 6)
    for lam in (0.2, 0.7):
        assert torch.allclose(mixup.m2mix_loss(x, y, lam, tau=0.07), reference_m2mix(x, y, lam, 0.07), atol=1e-6)


def test_m2mix_bad_input():
    x, y = unit(4, 8), unit(4, 8, 1)
    with pytest.raises(ValueError, match="tau"):
        mixup.m2mix_loss(x, y, 0.5, tau=0)
    with pytest.raises(ValueError, match="image_emb and text_emb"):
        mixup.m2mix_loss(x, y[:3], 0.5)
    with pytest.raises(ValueError, match="lam"):
        mixup.m2mix_loss(x, y, -0.1)


def test_unimodal_mixups_at_lambda_one_are_the_clip_loss():
    x, y = unit(6, 8, 7), unit(6, 8, 8)
    t = torch.tensor(2.0, dtype=torch.float64)
    plain = losses.clip_loss(x, y, t)
    assert torch.allclose(mixup.vmix_loss(x, y, 1.0, t), plain, atol=1e-5)
    assert torch.allclose(mixup.lmix_loss(x, y, 1.0, t), plain, atol=1e-5)
    assert torch.isfinite(mixup.vlmix_loss(x, y, 0.5, t))
