"""Exercise checkers: run the learner's function and the reference on the same random
inputs and say, kindly, how close they are.

    check.function(my_clip_loss, tutorlib.objectives.losses.clip_loss, inputs)
    check.close(my_value, reference_value)

Where the reference is differentiable, ``check.function`` also compares the gradients with
respect to every floating-point tensor input: a loss that uses ``math.exp`` on the logit scale gives
the right number and no gradient to the temperature. A failure names the trial (``make_inputs`` may
be a dict ``{"with ties": fn, ...}``) and, where it recognises one, the likely mistake.

A failing check raises ``ExerciseError`` (an ``AssertionError``) with a message that says what
differs, so a notebook run stops at the first exercise that is not right."""
from __future__ import annotations

import inspect

import torch

from .mistakes import mistake_hint, ratio_hint, shape_hint


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


def _compare(got, want, atol: float, rtol: float, where: str = "", n: int | None = None) -> float:
    if isinstance(want, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(want):
            raise ExerciseError(f"{where}expected {len(want)} outputs, got {_describe(got)}")
        return max([_compare(g, w, atol, rtol, f"{where}output {i}: ", n) for i, (g, w)
                    in enumerate(zip(got, want))] or [0.0])
    if isinstance(want, (int, float)) and not isinstance(want, bool):
        want = torch.tensor(float(want))
        if isinstance(got, (int, float)) and not isinstance(got, bool):
            got = torch.tensor(float(got))
    if not isinstance(got, torch.Tensor):
        raise ExerciseError(f"{where}expected {_describe(want)}, got {_describe(got)}")
    if got.shape != want.shape:
        raise ExerciseError(f"{where}expected shape {tuple(want.shape)}, got {tuple(got.shape)}"
                            f"{shape_hint(got, want)}")
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    if not bool(torch.isfinite(got).all()):
        raise ExerciseError(f"{where}your result contains NaN or inf")
    diff = (got - want).abs()
    worst = diff.max().item() if diff.numel() else 0.0
    if not torch.allclose(got, want, atol=atol, rtol=rtol):
        i = int(diff.flatten().argmax())
        raise ExerciseError(f"{where}values differ: largest difference {worst:.3g} at flat "
                            f"index {i} (yours {got.flatten()[i].item():.6g}, reference "
                            f"{want.flatten()[i].item():.6g}).{ratio_hint(got, want, n)}")
    return worst


def _arg_names(learner, reference, n: int) -> list[str]:
    """How to name each of ``n`` positional arguments in a verdict: the learner's own parameter
    names (the stub's), else the reference's, else the position counted from 0."""
    for fn in (learner, reference):
        try:
            params = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):
            continue
        names = []
        for p in params:
            if p.kind is p.VAR_POSITIONAL:            # def volume(*vectors): vectors[0], vectors[1]...
                names += [f"`{p.name}[{k}]`" for k in range(n - len(names))]
            elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                names.append(f"`{p.name}`")
        if len(names) >= n:
            return names[:n]
    return [f"argument {i} (counting from 0)" for i in range(n)]


def _gradients(fn, args, idx, weights):
    """``fn`` on fresh leaf copies of the float tensors ``args[idx]``; the gradients of
    ``sum(weights * fn(...))`` with respect to them (None where there is no path)."""
    leaves = [a.detach().clone().requires_grad_(True) if i in idx else a
              for i, a in enumerate(args)]
    out = fn(*leaves)
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        return None
    w = weights(out.shape)
    return torch.autograd.grad((out * w.to(out.dtype)).sum(), [leaves[i] for i in idx],
                               allow_unused=True)


def _compare_gradients(learner, reference, args, where, atol, rtol, g):
    idx = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor) and a.is_floating_point()]
    weights = {}

    def w(shape):                        # the same random weights for both functions
        return weights.setdefault(tuple(shape),
                                  torch.randn(tuple(shape), generator=g, dtype=torch.float64))
    want = _gradients(reference, args, idx, w) if idx else None
    if want is None or all(gw is None for gw in want):
        return None                      # nothing differentiable to compare
    try:
        got = _gradients(learner, args, idx, w)
    except Exception as e:
        raise ExerciseError(
            f"{where}the values match, but your function fails when its inputs require "
            f"gradients: {type(e).__name__}: {e} (an in-place change of an input?)") from e
    names = _arg_names(learner, reference, len(args))
    worst = 0.0
    for i, k in enumerate(idx):
        if want[i] is None:
            continue
        if got is None or got[i] is None:
            raise ExerciseError(f"{where}the values match, but no gradient flows to {names[k]}: "
                                "did you use math.exp, float(), .item() or torch.no_grad() "
                                "on it? Training could not change it.")
        worst = max(worst, _compare(got[i], want[i], max(atol, 1e-5), rtol,
                                    f"{where}gradient of {names[k]}: "))
    return worst


def _cases(make_inputs, trials: int) -> list:
    if isinstance(make_inputs, dict):
        if not make_inputs or not all(callable(f) for f in make_inputs.values()):
            raise ValueError(f"make_inputs: got a dict {list(make_inputs)!r}, expected "
                             "descriptions mapped to callables that return argument tuples")
        return list(make_inputs.items())
    if not callable(make_inputs):
        raise ValueError(f"make_inputs: got {type(make_inputs).__name__}, expected a callable "
                         "or a dict of them")
    return [(None, make_inputs)] * trials


def function(learner, reference, make_inputs, trials: int = 3, atol: float = 1e-5,
             rtol: float = 1e-4, name: str | None = None, seed: int = 0,
             gradients: bool = True, mistakes: list | None = None) -> float:
    """Call ``learner(*args)`` and ``reference(*args)`` on ``trials`` random inputs
    ``make_inputs() -> args tuple`` (or once on each case of a dict ``{"with ties": fn}``);
    compare the values and, with ``gradients=True`` where the reference is
    differentiable, the gradients with respect to every floating-point tensor input.
    ``mistakes``: extra ``(wrong_function, message)`` pairs to recognise. Prints how close
    the answer is and returns the largest difference; raises ``ExerciseError`` naming the
    trial and, where it can, the likely mistake."""
    if not callable(learner):
        raise ValueError(f"learner: got {type(learner).__name__}, expected your function")
    if not callable(reference):
        raise ValueError(f"reference: got {type(reference).__name__}, expected a callable")
    cases = _cases(make_inputs, trials)
    name = name or getattr(learner, "__name__", "your function")
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    worst, compared = 0.0, False
    try:
        for t, (label, make) in enumerate(cases):
            args = make()
            args = args if isinstance(args, tuple) else (args,)
            where = f"{name}, trial {t + 1}" + (f" ({label})" if label else "") + ": "
            want = reference(*args)
            try:
                got = learner(*args)
            except NotImplementedError as e:
                raise ExerciseError(f"{name} is not written yet: {e}".rstrip(": ")) from None
            except Exception as e:      # the learner's bug: say where, keep it short
                raise ExerciseError(f"{where}{name} raised {type(e).__name__}: {e}") from e
            n = next((len(a) for a in args if isinstance(a, torch.Tensor) and a.ndim >= 1), None)
            try:
                worst = max(worst, _compare(got, want, atol, rtol, where, n))
            except ExerciseError as e:
                raise ExerciseError(
                    f"{e}{mistake_hint(got, reference, args, mistakes or [])}") from None
            grad_diff = (_compare_gradients(learner, reference, args, where, atol, rtol, g)
                         if gradients else None)
            if grad_diff is not None:
                worst, compared = max(worst, grad_diff), True
    finally:
        torch.random.set_rng_state(state)
    inputs = ("its test input" if len(cases) == 1 and cases[0][0] is None else
              "; ".join(lbl for lbl, _ in cases) if cases[0][0] else f"{len(cases)} random inputs")
    grads = " (values and gradients)" if compared else ""
    print(f"✅ {name} matches the reference on {inputs}{grads} (largest difference {worst:.2g}).")
    return Difference(worst)


def close(got, want, atol: float = 1e-5, rtol: float = 1e-4, name: str = "your result") -> float:
    """Compare one value (number, tensor or tuple of them) with the reference."""
    worst = _compare(got, want, atol, rtol, f"{name}: ")
    print(f"✅ {name} matches the reference (largest difference {worst:.2g}).")
    return Difference(worst)


def _run_both(rank, world_size, learner, reference, make_inputs, mistakes=()):
    """In one process: both functions on this rank's inputs, their outputs and input gradients,
    then each known wrong version's output (``None`` where it fails on these inputs). Every rank
    calls the same functions in the same order, so their collectives meet."""
    args = make_inputs(rank, world_size)
    args = args if isinstance(args, tuple) else (args,)
    out = []
    for fn in (learner, reference):
        leaves = [a.detach().clone().requires_grad_(True)
                  if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args]
        value = fn(*leaves)
        value.backward()
        out.append((value.detach(), [a.grad for a in leaves
                                     if isinstance(a, torch.Tensor) and a.is_floating_point()]))
    wrong = []
    for fn, _ in mistakes:
        try:
            with torch.no_grad():
                wrong.append(fn(*args).detach())
        except Exception:                     # a variant that does not fit these inputs
            wrong.append(None)
    return out, wrong


def _wrong_on_every_rank(learner_values, wrong_values, mistakes) -> str:
    """The message of the first known mistake whose value equals the learner's on every rank."""
    for k, (_, message) in enumerate(mistakes):
        values = [w[k] for w in wrong_values]
        if all(v is not None and torch.allclose(g.double(), v.double(), atol=1e-5, rtol=1e-4)
               for g, v in zip(learner_values, values)):
            return f" Likely cause: {message}."
    return ""


def across_processes(learner, reference, make_inputs, world_size: int = 2, atol: float = 1e-5,
                     rtol: float = 1e-4, name: str | None = None, timeout: float = 90.0,
                     mistakes: list | None = None) -> float:
    """Run ``learner`` and ``reference`` inside ``world_size`` processes joined by
    ``torch.distributed`` (``launch.run``), each on ``make_inputs(rank, world_size) -> args``;
    compare every rank's scalar output first, then every rank's gradients with respect to the
    float inputs (a wrong loss on one rank sends wrong gradients to the others' rows through the
    gathers, so the values say where the mistake is). ``mistakes``: ``(wrong_function,
    message)`` pairs, run in every process too, named when one matches the learner's values
    on every rank (e.g. ``mistakes.local_loss_mistakes()``). ``timeout`` seconds at most: a
    learner's collective that the other ranks never join hangs. Prints how close they are and
    returns the largest difference; raises ``ExerciseError`` naming the rank that differs."""
    from ..training import launch
    if not callable(learner) or not callable(reference) or not callable(make_inputs):
        raise ValueError("learner, reference, make_inputs: expected three callables")
    mistakes = list(mistakes or [])
    if not all(isinstance(m, tuple) and len(m) == 2 and callable(m[0]) for m in mistakes):
        raise ValueError(f"mistakes: got {mistakes!r:.80}, expected (wrong_function, message) pairs")
    name = name or getattr(learner, "__name__", "your function")
    try:
        per_rank = launch.run(_run_both, world_size, learner, reference, make_inputs, mistakes,
                              timeout=timeout)
    except TimeoutError as e:
        raise ExerciseError(f"{name} did not finish in {timeout:g} s: does every rank call the "
                            f"same collectives? ({e})") from None
    except RuntimeError as e:
        last = str(e).strip().splitlines()[-1]
        if last.startswith("NotImplementedError"):
            raise ExerciseError(
                f"{name} is not written yet: {last.partition(': ')[2]}".rstrip(": ")) from None
        raise ExerciseError(f"{name} failed inside a process: {e}") from None
    worst = 0.0
    for rank, (((got, _), (want, _)), _) in enumerate(per_rank):        # every loss value first
        try:
            worst = max(worst, _compare(got, want, atol, rtol, f"{name}, rank {rank} of {world_size}: "))
        except ExerciseError as e:
            hint = _wrong_on_every_rank([r[0][0][0] for r in per_rank], [r[1] for r in per_rank],
                                        mistakes)
            raise ExerciseError(f"{e}{hint}") from None
    for rank, (((_, got_grads), (_, want_grads)), _) in enumerate(per_rank):
        where = f"{name}, rank {rank} of {world_size}: "
        for k, (g, w) in enumerate(zip(got_grads, want_grads)):
            if w is not None and g is None:
                raise ExerciseError(f"{where}no gradient reaches input {k}: "
                                    "did the gather drop it?")
            if w is not None:
                worst = max(worst, _compare(g, w, max(atol, 1e-5), rtol,
                                            f"{where}gradient of input {k}: "))
    print(f"✅ {name} matches the reference in each of {world_size} processes, "
          f"values and gradients (largest difference {worst:.2g}).")
    return Difference(worst)
