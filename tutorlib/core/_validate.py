"""Argument validation shared by the public functions: each error names the argument,
what it got and what it expected. (Grading exercises is `tutorlib.course.check`.)"""
from __future__ import annotations

import math

import torch


def tensor(name: str, x, ndim: int | None = None, *, floating: bool = True,
           finite: bool = True) -> torch.Tensor:
    """``x`` is a tensor (of ``ndim`` dimensions, floating-point). ``finite=True`` also reads
    every value (one device synchronisation): entry points that run once per call keep it;
    what runs inside a training step passes ``finite=False``, since ``train.fit`` checks
    the loss every step and a NaN anywhere reaches it."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: got {type(x).__name__}, expected a torch.Tensor")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name}: got a tensor of shape {tuple(x.shape)}, "
                         f"expected {ndim} dimensions")
    if floating and not x.is_floating_point():
        raise ValueError(f"{name}: got dtype {x.dtype}, expected a floating-point tensor")
    if finite and x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return x


def same_rows(a_name: str, a: torch.Tensor, b_name: str, b: torch.Tensor) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{a_name} and {b_name}: got {a.shape[0]} and {b.shape[0]} rows, "
                         "expected the same number (row i of one pairs with row i of the other)")


def same_width(a_name: str, a: torch.Tensor, b_name: str, b: torch.Tensor) -> None:
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"{a_name} and {b_name}: got widths {a.shape[-1]} and {b.shape[-1]}, "
                         "expected the same embedding width")


def positive_int(name: str, x) -> int:
    if isinstance(x, bool) or not isinstance(x, int) or x <= 0:
        raise ValueError(f"{name}: got {x!r}, expected a positive integer")
    return x


def positive_number(name: str, x) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x <= 0:
        raise ValueError(f"{name}: got {x!r}, expected a positive number")
    return float(x)


def non_negative_number(name: str, x) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x < 0:
        raise ValueError(f"{name}: got {x!r}, expected a number >= 0")
    return float(x)


def one_of(name: str, x, options) -> None:
    if x not in options:
        raise ValueError(f"{name}: got {x!r}, expected one of {tuple(options)}")


def pair(image_emb, text_emb) -> None:
    """Two ``[N, d]`` embedding batches, row i of one paired with row i of the other
    (shapes and types only: ``finite`` checks the values)."""
    tensor("image_emb", image_emb, 2, finite=False)
    tensor("text_emb", text_emb, 2, finite=False)
    same_rows("image_emb", image_emb, "text_emb", text_emb)
    same_width("image_emb", image_emb, "text_emb", text_emb)


def loss_inputs(image_emb, text_emb, logit_scale, **more: torch.Tensor) -> torch.Tensor:
    """A contrastive loss's inputs: two paired ``[N, d]`` batches and a scalar log-scale,
    types and shapes checked, values (with any ``more``) checked once for NaN or inf.
    Returns the scale as a 0-d tensor."""
    pair(image_emb, text_emb)
    logit_scale = scalar("logit_scale", logit_scale, finite=False)
    finite(image_emb=image_emb, text_emb=text_emb, logit_scale=logit_scale, **more)
    return logit_scale


def scalar(name: str, x, *, finite: bool = True) -> torch.Tensor:
    """A number or a one-element tensor, as a 0-d tensor."""
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        x = torch.tensor(float(x))
    tensor(name, x, finite=finite)
    if x.numel() != 1:
        raise ValueError(f"{name}: got a tensor of shape {tuple(x.shape)}, expected a scalar")
    return x.reshape(())


def finite(**named: torch.Tensor) -> None:
    """Every floating tensor in ``named`` free of NaN and inf, checked with one device
    synchronisation for all of them (each ``isfinite`` read on a GPU waits for the GPU);
    the error names the first offender."""
    values = [t for t in named.values() if t.is_floating_point()]
    if not values:
        return
    dev = values[0].device
    if bool(torch.stack([torch.isfinite(t).all().to(dev) for t in values]).all()):
        return
    for name, t in named.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name}: contains NaN or infinite values")


def overrides(defaults: dict, changes: dict) -> dict:
    """``defaults`` updated with ``changes`` (a recipe's keyword overrides), refusing names it
    lacks."""
    unknown = set(changes) - set(defaults)
    if unknown:
        raise ValueError(f"overrides: got unknown names {sorted(unknown)}, "
                         f"expected some of {sorted(defaults)}")
    return {**defaults, **changes}


def recipe_or_overrides(r, changes: dict, make):
    """A trainer's recipe: ``r`` as given, or ``make()`` (built from ``changes``) when ``r``
    is None; both at once is refused (change a recipe with ``r.replace(...)``)."""
    if r is None:
        return make()
    if changes:
        raise ValueError(f"overrides: got {sorted(changes)} beside a recipe r, "
                         "expected one of them (change a recipe with r.replace(...))")
    if not hasattr(r, "entry"):
        raise ValueError(f"r: got {type(r).__name__}, expected a recipes.Recipe")
    return r
