"""The course's test command, with nothing but Python (Windows, macOS, Linux; `make test` runs it too).

    python -m scripts.test              # everything: unit and slow tests, every notebook end to end, each cell twice
    python -m scripts.test --unit       # the library's tests alone, in a couple of minutes
    python -m scripts.test --notebooks  # the notebooks alone, each cell once (the quick check while editing one)
    python -m scripts.test --jobs 1     # one process (default: 2, one torch thread each)

Offline, the `quick` profile, and every notebook under nbval with each code cell run twice in
a row, as a student pressing Shift-Enter again would. Extra arguments go to pytest
(``python -m scripts.test -k mixup``).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "TUTORLIB_PROFILE": "quick", "MPLBACKEND": "Agg",
       "TQDM_MININTERVAL": "5"}            # nbval reads every message a kernel sends: slow bars keep it small
NBVAL = ["--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout=900", "--rerun-notebooks"]


def command(unit: bool = False, jobs: int = 2, extra=(), notebooks_once: bool = False) -> tuple[list[str], dict]:
    """The pytest command line and the environment it runs in; ``notebooks_once``: the
    notebooks alone, in one process, each cell run once (``make notebooks``). With ``jobs`` > 1 the test
    files spread over that many processes (one notebook stays in one process), each torch on
    one thread: on 2 cores that is about 1.45x the throughput of one process on two threads,
    while two processes of two threads each run 2x slower."""
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs: got {jobs!r}, expected a positive integer")
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
    env = dict(ENV)
    if unit and notebooks_once:
        raise ValueError("unit and notebooks_once: got both, expected at most one")
    if notebooks_once:
        cmd += [o for o in NBVAL if o != "--rerun-notebooks"] + ["notebooks"]
    elif unit:
        cmd += ["-m", "not slow", "tests"]
    else:
        if jobs > 1:
            cmd += ["-n", str(jobs), "--dist", "loadfile"]
            env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        cmd += ["tests", *NBVAL, "notebooks"]
    return cmd + list(extra), env


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unit", action="store_true", help="the library's tests alone (no slow tests, no notebooks)")
    parser.add_argument("--notebooks", action="store_true", help="the notebooks alone, each cell run once")
    parser.add_argument("--jobs", type=int, default=2, help="test processes (default 2)")
    args, extra = parser.parse_known_args(argv)
    cmd, env = command(args.unit, args.jobs, extra, notebooks_once=args.notebooks)
    print("running:", " ".join(cmd[1:]), flush=True)
    return subprocess.run(cmd, cwd=ROOT, env={**os.environ, **env}).returncode


if __name__ == "__main__":
    sys.exit(main())
