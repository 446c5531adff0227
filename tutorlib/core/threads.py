"""The threads torch may use: capped on import to the CPUs this process really has.

PyTorch sizes its thread pool from the host's cores. In a container with a CPU quota (Binder
gives one CPU of a many-core host; Docker, Kubernetes and Slurm jobs alike) neither
``os.cpu_count()`` nor the affinity mask shows the quota, and torch's threads then outnumber
the CPUs and wait on each other, tens of times slower. ``tutorlib`` calls ``cap_threads()`` on
import.
"""
from __future__ import annotations

import math
import os

import torch


def _check_root(root) -> None:
    if not isinstance(root, (str, os.PathLike)):
        raise ValueError(f"root: got {type(root).__name__}, expected the cgroup folder's path")


def cpu_quota(root: str = "/sys/fs/cgroup") -> float | None:
    """The CPUs this process's container may use, as its cgroup's quota / period (1.0 on
    Binder), or None where no quota is set. Neither ``os.cpu_count()`` nor the affinity mask
    shows a quota: both report the host's cores. Reads cgroup v2's ``cpu.max`` ("100000
    100000"; "max 100000" is no quota), else v1's ``cpu/cpu.cfs_quota_us`` (-1: none) over
    ``cpu.cfs_period_us``, under ``root``."""
    _check_root(root)

    def read(*parts):
        try:
            with open(os.path.join(root, *parts)) as f:
                return f.read().split()
        except (OSError, UnicodeDecodeError):
            return None
    v2 = read("cpu.max")
    if v2 is not None:
        quota, period = (v2 + [None, None])[:2]
    else:
        for folder in ("cpu", "cpu,cpuacct"):
            q, p = read(folder, "cpu.cfs_quota_us"), read(folder, "cpu.cfs_period_us")
            if q and p:
                quota, period = q[0], p[0]
                break
        else:
            return None
    try:
        quota, period = float(quota), float(period)
    except (TypeError, ValueError):                     # "max", missing or unreadable
        return None
    return quota / period if quota > 0 and period > 0 else None


def cap_threads(root: str = "/sys/fs/cgroup") -> int:
    """Cap torch's compute threads at the CPUs this process may use: the affinity mask and
    the cgroup quota (``cpu_quota``), whichever is smaller, at least one. PyTorch sizes its
    pool from the host's cores, so on Binder (one CPU of a many-core host) or in a Docker,
    Kubernetes or Slurm job its threads would outnumber the CPUs and wait on each other, tens
    of times slower. ``tutorlib`` calls this on import; an ``OMP_NUM_THREADS`` or
    ``MKL_NUM_THREADS`` that the user set wins. Returns the thread count torch now uses."""
    _check_root(root)
    if os.environ.get("OMP_NUM_THREADS", "").strip() or os.environ.get("MKL_NUM_THREADS", "").strip():
        return torch.get_num_threads()
    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:                              # macOS, Windows: no affinity mask
        allowed = os.cpu_count() or 1
    quota = cpu_quota(root)
    if quota is not None:
        allowed = min(allowed, max(1, math.floor(quota)))
    if torch.get_num_threads() > allowed:
        torch.set_num_threads(allowed)
    return torch.get_num_threads()
