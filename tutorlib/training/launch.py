"""Run one function in N processes joined by ``torch.distributed``, from a notebook or a script.

    def work(rank, world_size, x):          # defined anywhere, a notebook cell included
        return torch.distributed.get_rank() * x
    launch.run(work, 2, 10)                  # -> [0, 10], one result per rank

Each process gets ``MASTER_ADDR``/``MASTER_PORT`` (a free localhost port), ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK``, as ``torchrun`` would set them, joins the process group
(``gloo`` by default, for CPU tensors; ``backend="nccl"`` when each rank uses its own GPU), runs
``fn(rank, world_size, *args)``, returns its result and leaves the group. The function and its
arguments travel by ``dill`` (which can send a function defined in a notebook); results come
back as NumPy arrays turned into tensors again. A process that raises stops the others and
the error names its rank; one that hangs hits ``timeout``.

On Linux, processes start from a fork server: the server imports torch and this module once,
the first time ``run`` is called, and every process after that is a fork of it, ready in a
fraction of a second; elsewhere (macOS, where forking after torch is unsafe, and Windows), or
with ``start_method="spawn"``, every process imports torch again, a second or more each. Each
process gets the environment the notebook has at launch time. A forked process runs the code
of ``tutorlib`` as the server imported it at the first launch: after editing the library
(``%autoreload`` included), restart the kernel or pass ``start_method="spawn"``. The server
stays up, idle, until the kernel exits.

``ddp.data_parallel`` is one such function: a model trained with ``DistributedDataParallel`` on
CLIP's loss, with the global batch's negatives gathered or each process's own (lesson 09):

    launch.run(ddp.data_parallel, 2, make_model, {"image": x, "text": y}, "gathered", 100, 128, 0)
"""
from __future__ import annotations

import os
import queue as queue_lib
import socket
import sys
import time
import traceback
from datetime import timedelta

import torch

from ..core import _validate


def free_port() -> int:
    """A TCP port on localhost that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_backend() -> str:
    """``gloo``: the course's process functions work on CPU tensors, which ``nccl`` cannot
    carry; pass ``backend="nccl"`` to ``run`` for functions that put each rank on its own GPU
    (``torch.cuda.device_count()`` must reach the number of processes)."""
    return "gloo"


def _plain(x):
    """Results as picklable plain values: tensors to NumPy (never shared memory)."""
    if isinstance(x, torch.Tensor):
        return ("__tensor__", x.detach().cpu().numpy())
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_plain(v) for v in x)
    return x


def _unplain(x):
    if isinstance(x, tuple) and len(x) == 2 and x[0] == "__tensor__":
        return torch.from_numpy(x[1])
    if isinstance(x, dict):
        return {k: _unplain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_unplain(v) for v in x)
    return x


def _worker(rank, world_size, port, backend, payload, results, timeout, environ):
    import dill
    import torch.distributed as dist
    os.environ.clear()                            # the launching process's, not the server's
    os.environ.update(environ)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)                      # N processes share the machine's cores
    try:
        if backend == "nccl":
            torch.cuda.set_device(rank)
        dist.init_process_group(backend, rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=timeout + 30))
        fn, args = dill.loads(payload)
        # fails here, not in a queue thread
        results.put((rank, "ok", dill.dumps(_plain(fn(rank, world_size, *args)))))
    except BaseException:  # noqa: BLE001 - every failure goes back to the parent
        results.put((rank, "error", traceback.format_exc()))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _stop(procs) -> None:
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(5)
        if p.is_alive():
            p.kill()


START_METHODS = ("forkserver", "spawn")
PRELOAD = ("torch", "torch.distributed", "dill", __name__)


def context(start_method: str | None = None):
    """The multiprocessing context ``run`` starts processes from: ``"forkserver"`` on Linux
    (its server preloads torch, dill and this module, besides any modules already asked
    for), ``"spawn"`` elsewhere."""
    import multiprocessing as mp
    from multiprocessing import forkserver
    if start_method is None:
        start_method = "forkserver" if sys.platform.startswith("linux") else "spawn"
    _validate.one_of("start_method", start_method, START_METHODS)
    if start_method not in mp.get_all_start_methods():
        raise ValueError(f"start_method: got {start_method!r}, expected one of this platform's "
                         f"{tuple(m for m in START_METHODS if m in mp.get_all_start_methods())}")
    ctx = mp.get_context(start_method)
    if start_method == "forkserver":
        asked = list(getattr(getattr(forkserver, "_forkserver", None), "_preload_modules", None) or [])
        ctx.set_forkserver_preload(asked + [m for m in PRELOAD if m not in asked])
    return ctx


def run(fn, world_size: int = 2, *args, backend: str | None = None, timeout: float = 300.0,
        start_method: str | None = None) -> list:
    """``fn(rank, world_size, *args)`` in ``world_size`` processes; returns the results, rank order.
    ``start_method``: ``"forkserver"`` (the default on Linux) or ``"spawn"`` (elsewhere).

    Raises ``RuntimeError`` naming the first rank that raised (with its traceback) or died, and
    ``TimeoutError`` naming the ranks that had not finished after ``timeout`` seconds."""
    import dill
    if not callable(fn):
        raise ValueError(f"fn: got {type(fn).__name__}, "
                         "expected a function fn(rank, world_size, *args)")
    _validate.positive_int("world_size", world_size)
    timeout = _validate.positive_number("timeout", timeout)
    backend = backend or default_backend()
    _validate.one_of("backend", backend, ("gloo", "nccl"))
    ctx = context(start_method)
    results = ctx.Queue()
    payload = dill.dumps((fn, args), recurse=True)
    port = free_port()
    environ = dict(os.environ)
    procs = [ctx.Process(target=_worker, args=(r, world_size, port, backend, payload, results,
                                               timeout, environ), daemon=True) for r in range(world_size)]
    for p in procs:
        p.start()
    out, deadline = {}, time.monotonic() + timeout
    try:
        while len(out) < world_size:
            try:
                rank, status, value = results.get(timeout=0.2)
            except queue_lib.Empty:
                dead = [r for r, p in enumerate(procs) if r not in out and not p.is_alive()]
                if dead and results.empty():
                    raise RuntimeError(f"rank {dead[0]} of {world_size} exited "
                                       f"(code {procs[dead[0]].exitcode}) "
                                       "without reporting a result") from None
                if time.monotonic() > deadline:
                    waiting = sorted(set(range(world_size)) - set(out))
                    raise TimeoutError(f"ranks {waiting} of {world_size} "
                                       f"had not finished after {timeout:g} s") from None
                continue
            if status == "error":
                raise RuntimeError(f"rank {rank} of {world_size} raised:\n{value}")
            out[rank] = _unplain(dill.loads(value))
    finally:
        _stop(procs)
    return [out[r] for r in range(world_size)]
