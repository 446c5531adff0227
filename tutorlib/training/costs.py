"""What training costs: the time of one step, the largest block of memory a computation
allocates, and a table of trainable parameters, steps,
wall time and shares per stage (lesson 05's "what each stage costs"). Two benches use them:
``loss_cost`` here times CLIP's and FILIP's losses on random tokens (lesson 07), and
``tutorlib.objectives.distributed.distributed_costs`` measures the distributed loss forms
inside each process with this module's tools (lesson 09).

    costs.loss_cost("FILIP", 64, patches=16, tokens=13, dim=128, keep=0.25)
    launch.run(distributed.distributed_costs, 2, forms, [512, 1024], 128)[0]      # rank 0's table
"""
from __future__ import annotations

import contextlib
import os
import sys
import time

import torch

from ..core import _validate


def step_time(fn, repeat: int = 2) -> float:
    """The fastest of ``repeat`` timed calls of ``fn()``, in seconds, after one untimed
    warm-up call (the first call pays for allocation and caches)."""
    if not callable(fn):
        raise ValueError(f"fn: got {type(fn).__name__}, expected a callable with no arguments")
    _validate.positive_int("repeat", repeat)
    fn()                                            # warm-up, not timed
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def largest_allocation(fn) -> int:
    """The largest single block of CPU memory, in bytes, allocated while ``fn()`` runs (read
    from ``torch.profiler``'s memory events): for a similarity, its biggest intermediate
    (FILIP's ``[N, M, P, L]`` token-pair cosines, CLIP's ``[N, M]`` matrix)."""
    from torch.profiler import ProfilerActivity, profile
    if not callable(fn):
        raise ValueError(f"fn: got {type(fn).__name__}, expected a callable with no arguments")
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max([e.cpu_memory_usage for e in prof.events()] + [0])


def saved_for_backward(fn) -> int:
    """Bytes of the tensors autograd keeps for the backward pass while ``fn()`` runs its forward
    pass (each storage counted once): what a loss holds in memory until ``backward()``."""
    if not callable(fn):
        raise ValueError(f"fn: got {type(fn).__name__}, expected a callable with no arguments")
    kept = {}

    def pack(t):
        kept[(t.untyped_storage().data_ptr(), t.dtype)] = t.untyped_storage().nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(kept.values())


@contextlib.contextmanager
def _quiet_stderr():
    """The profiler's C++ side logs every start and stop to file descriptor 2: silence it."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _check_stages(stages: dict, end_to_end: int, reference: str) -> None:
    if not isinstance(stages, dict) or not stages:
        raise ValueError(f"stages: got {type(stages).__name__}, "
                         "expected a non-empty dict {name: (params, history)}")
    for name, row in stages.items():
        if not (isinstance(row, (tuple, list)) and len(row) == 2):
            raise ValueError(f"stages[{name!r}]: got {row!r:.60}, "
                             "expected (trainable parameters, history or None)")
        _validate.positive_int(f"stages[{name!r}][0]", row[0])
        history = row[1]
        if history is not None and not (isinstance(history, dict) and history.get("loss")
                                        and history.get("time")):
            raise ValueError(f"stages[{name!r}][1]: got {type(history).__name__}, "
                             "expected a fit history or None")
    _validate.positive_int("end_to_end", end_to_end)
    if reference not in stages:
        raise ValueError(f"reference: got {reference!r}, expected one of {list(stages)}")


def cost_table(stages: dict, end_to_end: int, reference: str):
    """A ``pandas.DataFrame`` with a row per ``stages`` entry ``{name: (trainable parameters,
    train.fit history or None)}`` and a last row "end to end (all towers)" with
    ``end_to_end`` parameters. Columns: trainable params; steps and wall time (s) (from the
    history); the share of the ``reference`` stage's parameters and of end to end's."""
    import pandas as pd
    _check_stages(stages, end_to_end, reference)
    rows = {**stages, "end to end (all towers)": (end_to_end, None)}
    params = [n for n, _ in rows.values()]
    steps = [None if h is None else len(h["loss"]) for _, h in rows.values()]
    wall = [None if h is None else round(h["time"][-1], 1) for _, h in rows.values()]
    table = pd.DataFrame({"trainable params": params, "steps": pd.array(steps, "Int64"),
                          "wall time (s)": pd.array(wall, "Float64").astype(float)},
                         index=list(rows))
    table[f"share of {reference}"] = (table["trainable params"] / stages[reference][0]).round(4)
    table["share of end to end"] = (table["trainable params"] / end_to_end).round(5)
    return table
