"""tutorlib.zoo.selfsup: SimCLR's NT-Xent loss and the views it learns from."""
import math

import pytest
import torch
import torch.nn.functional as F

from tutorlib import world
from tutorlib.zoo import selfsup


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


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
