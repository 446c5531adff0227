"""Exercise checkers: run the learner's function and the reference on the same random
inputs and say, kindly, how close they are.

    check.function(my_clip_loss, tutorlib.losses.clip_loss, inputs)
    check.close(my_value, reference_value)

A failing check raises ``ExerciseError`` (an ``AssertionError``) with a message that
says what differs, so a notebook run stops at the first exercise that is not right.
"""
from __future__ import annotations

import torch


class ExerciseError(AssertionError):
    """Raised when a learner's answer differs from the reference."""


class Difference(float):
    """The largest difference found: a float that a notebook does not echo (the checker
    has already printed its verdict), so a check on a cell's last line shows one line."""

    def _ipython_display_(self):
        pass


def _describe(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    return f"{type(x).__name__} {x!r}"[:120]


def _compare(got, want, atol: float, rtol: float, where: str = "") -> float:
    if isinstance(want, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(want):
            raise ExerciseError(f"{where}expected {len(want)} outputs, got {_describe(got)}")
        return max([_compare(g, w, atol, rtol, f"{where}output {i}: ") for i, (g, w)
                    in enumerate(zip(got, want))] or [0.0])
    if isinstance(want, (int, float)) and not isinstance(want, bool):
        want = torch.tensor(float(want))
        if isinstance(got, (int, float)) and not isinstance(got, bool):
            got = torch.tensor(float(got))
    if not isinstance(got, torch.Tensor):
        raise ExerciseError(f"{where}expected {_describe(want)}, got {_describe(got)}")
    if got.shape != want.shape:
        hint = " (did you forget to sum or average?)" if got.numel() > want.numel() else ""
        raise ExerciseError(f"{where}expected shape {tuple(want.shape)}, got {tuple(got.shape)}{hint}")
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    if not bool(torch.isfinite(got).all()):
        raise ExerciseError(f"{where}your result contains NaN or inf")
    diff = (got - want).abs()
    worst = diff.max().item() if diff.numel() else 0.0
    if not torch.allclose(got, want, atol=atol, rtol=rtol):
        i = int(diff.flatten().argmax())
        raise ExerciseError(
            f"{where}values differ: largest difference {worst:.3g} at flat index {i} "
            f"(yours {got.flatten()[i].item():.6g}, reference {want.flatten()[i].item():.6g})")
    return worst


def function(learner, reference, make_inputs, trials: int = 3, atol: float = 1e-5,
             rtol: float = 1e-4, name: str | None = None, seed: int = 0) -> float:
    """Call ``learner(*args)`` and ``reference(*args)`` for ``trials`` random inputs
    ``make_inputs() -> args tuple``; print how close they are; return the largest
    difference. Raises ``ExerciseError`` with a helpful message when they differ."""
    if not callable(learner):
        raise ValueError(f"learner: got {type(learner).__name__}, expected your function")
    for arg, fn in (("reference", reference), ("make_inputs", make_inputs)):
        if not callable(fn):
            raise ValueError(f"{arg}: got {type(fn).__name__}, expected a callable")
    name = name or getattr(learner, "__name__", "your function")
    g = torch.random.get_rng_state()
    torch.manual_seed(seed)
    worst = 0.0
    try:
        for t in range(trials):
            args = make_inputs()
            args = args if isinstance(args, tuple) else (args,)
            want = reference(*args)
            try:
                got = learner(*args)
            except NotImplementedError as e:
                raise ExerciseError(f"{name} is not written yet: {e}".rstrip(": ")) from None
            except Exception as e:      # the learner's bug: say where, keep it short
                raise ExerciseError(f"{name} raised {type(e).__name__}: {e}") from e
            worst = max(worst, _compare(got, want, atol, rtol, f"{name}, trial {t + 1}: "))
    finally:
        torch.random.set_rng_state(g)
    inputs = "its test input" if trials == 1 else f"{trials} random inputs"
    print(f"✅ {name} matches the reference on {inputs} "
          f"(largest difference {worst:.2g}).")
    return Difference(worst)


def close(got, want, atol: float = 1e-5, rtol: float = 1e-4, name: str = "your result") -> float:
    """Compare one value (number, tensor or tuple of them) with the reference."""
    worst = _compare(got, want, atol, rtol, f"{name}: ")
    print(f"✅ {name} matches the reference (largest difference {worst:.2g}).")
    return Difference(worst)
