"""tutorlib.core.ops: pooling over real tokens and running a function in chunks."""
import pytest
import torch

from tutorlib.core import ops
from tutorlib.methods import progressive


def test_masked_mean():
    x = torch.arange(12.0).view(1, 4, 3)
    assert torch.equal(ops.masked_mean(x, None), x.mean(1))
    mask = torch.tensor([[True, False, True, False]])
    assert torch.equal(ops.masked_mean(x, mask), (x[0, 0] + x[0, 2])[None] / 2)
    assert progressive.masked_mean is ops.masked_mean          # lesson 05's reference is this one


def test_masked_mean_bad_input():
    x = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="^x:"):
        ops.masked_mean(x[0], None)
    with pytest.raises(ValueError, match="^mask: got 1 rows with no real token"):
        ops.masked_mean(x, torch.tensor([[True, False, False], [False, False, False]]))
    with pytest.raises(ValueError, match="^mask: got torch.float32"):
        ops.masked_mean(x, torch.ones(2, 3))


def test_in_chunks_equals_one_call_for_tensors_and_lists():
    x = torch.randn(2503, 4)
    assert torch.equal(ops.in_chunks(lambda b: b * 2, x, 1000), x * 2)
    calls = []
    out = ops.in_chunks(lambda b: calls.append(len(b)) or torch.tensor([len(s) for s in b]), ["ab", "c"] * 5, 4)
    assert calls == [4, 4, 2] and out.tolist() == [2, 1] * 5


def test_in_chunks_bad_input():
    with pytest.raises(ValueError, match="^fn:"):
        ops.in_chunks(3, torch.zeros(2))
    with pytest.raises(ValueError, match="^size:"):
        ops.in_chunks(lambda b: b, torch.zeros(2), 0)
    with pytest.raises(ValueError, match="^items: got 0 rows"):
        ops.in_chunks(lambda b: b, torch.zeros(0))


def test_last_real_is_the_last_true_of_each_row():
    from tutorlib.core import ops
    mask = torch.tensor([[True, True, False, False], [True, True, True, True], [True, False, True, False]])
    assert ops.last_real(mask).tolist() == [1, 3, 2]
