"""tutorlib.core._validate: every check names the argument, what it got and what it expected."""
import math

import pytest
import torch

from tutorlib.core import _validate


@pytest.mark.parametrize("call, message", [
    (lambda: _validate.tensor("x", [1.0]), r"^x: got list, expected a torch.Tensor$"),
    (lambda: _validate.tensor("x", torch.zeros(2), 2), r"^x: got a tensor of shape \(2,\), expected 2 dimensions$"),
    (lambda: _validate.tensor("x", torch.zeros(2, dtype=torch.long)), r"^x: got dtype torch.int64, expected"),
    (lambda: _validate.tensor("x", torch.tensor([1.0, math.nan])), r"^x: contains NaN"),
    (lambda: _validate.same_rows("a", torch.zeros(2, 3), "b", torch.zeros(3, 3)), r"^a and b: got 2 and 3 rows"),
    (lambda: _validate.same_width("a", torch.zeros(2, 3), "b", torch.zeros(2, 4)), r"^a and b: got widths 3 and 4"),
    (lambda: _validate.positive_int("n", 0), r"^n: got 0, expected a positive integer$"),
    (lambda: _validate.positive_int("n", True), r"^n: got True"),
    (lambda: _validate.positive_number("t", math.inf), r"^t: got inf, expected a positive number$"),
    (lambda: _validate.non_negative_number("w", -1), r"^w: got -1, expected a number >= 0$"),
    (lambda: _validate.one_of("split", "tran", ("train", "test")), r"^split: got 'tran', expected one of"),
    (lambda: _validate.scalar("s", torch.zeros(2)), r"^s: got a tensor of shape \(2,\), expected a scalar$"),
    (lambda: _validate.finite(a=torch.zeros(1), b=torch.tensor([math.inf])), r"^b: contains NaN"),
    (lambda: _validate.overrides({"steps": 1}, {"stpes": 2}), r"^overrides: got unknown names \['stpes'\]"),
])
def test_each_check_names_what_was_wrong(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_good_input_passes_through():
    x = torch.ones(2, 3)
    assert _validate.tensor("x", x, 2) is x
    assert _validate.positive_int("n", 3) == 3 and _validate.positive_number("t", 2) == 2.0
    assert _validate.scalar("s", 1.5).shape == () and _validate.scalar("s", torch.ones(1, 1)).shape == ()
    assert _validate.overrides({"a": 1, "b": 2}, {"b": 3}) == {"a": 1, "b": 3}
    _validate.finite(a=torch.zeros(2), ids=torch.zeros(2, dtype=torch.long))    # integers are skipped
    assert _validate.tensor("x", torch.tensor([math.nan]), finite=False).isnan().all()
