"""Benchmarks (not tests): every notebook's wall time and peak memory, the world's
render throughput on one CPU core, and a mini-CLIP training step at batch 256.

    python -m scripts.benchmark                 # everything
    python -m scripts.benchmark --only 00 01    # some notebooks
    python -m scripts.benchmark --no-notebooks  # throughput only
    python -m scripts.benchmark --cold          # each notebook from an empty cache (a fresh Colab or Binder session)
    python -m scripts.benchmark --cold --one-core   # ... pinned to one CPU core, as Binder gives
    python -m scripts.benchmark --binder        # one core, each notebook from the cache Binder's image ships
    python -m scripts.benchmark --binder --report lessons/benchmarks/binder.md   # ... and a markdown table
    python -m scripts.benchmark --under-load    # training steps/s beside busy processes (a shared server)
    python -m scripts.benchmark --threads 1 2 --repeats 2 --report lessons/benchmarks/threads.md
                                                # every notebook at each thread count, alternating
    python -m scripts.benchmark --stacked --report lessons/benchmarks/stacked.md
                                                # lesson 08's runs one at a time and stacked, one core
    python -m scripts.benchmark --profile --report lessons/benchmarks/profile.md
                                                # where each notebook's time goes; training GFLOP/s
    python -m scripts.benchmark --against 25fcec5 --only 08 09 --repeats 3 --report lessons/benchmarks/issue-35.md
                                                # side by side with a commit: alternating, one core, one thread

Besides the kernel's own peak, each notebook's peak proportional set size (PSS) over the whole
process tree is sampled: the runner, the kernel and any worker processes the kernel starts
(lesson 09's), the memory a session's quota counts. The machine's load average is printed
before each notebook: a figure taken while anything else runs is noise, not a measurement.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGET_S, BUDGET_MIB = 75, 1536       # per notebook, `quick` on 2 CPU cores with warm caches (Binder gives ~2 GB)

_RUN_ONE = r"""
import json, resource, sys, time
import nbformat
from nbclient import NotebookClient
path = sys.argv[1]
nb = nbformat.read(path, as_version=4)
start = time.perf_counter()
NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": "notebooks"}}).execute()
wall = time.perf_counter() - start
kids = resource.getrusage(resource.RUSAGE_CHILDREN)          # the kernel and what it started, once reaped
print(json.dumps({"wall_s": wall, "peak_mib": kids.ru_maxrss / 1024, "cpu_s": kids.ru_utime + kids.ru_stime}))
"""


def tree_pss_mib(pid: int) -> float:
    """The proportional set size of process ``pid`` and all its descendants, in MiB (shared
    pages split between the processes that share them, so the sum is what they hold together)."""
    import psutil
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total / 2**20


def _pin(one_core: bool):
    """A ``preexec_fn`` that pins a child process to this process's first allowed core, or None."""
    return (lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})) if one_core else None


def thread_env(threads: int) -> dict:
    """This process's environment with ``threads`` compute threads for a child: ``OMP_NUM_THREADS``
    and ``MKL_NUM_THREADS`` both, since torch reads both."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def notebooks(only=None) -> list[Path]:
    """The course's notebooks in order, or those whose names start with one of ``only``."""
    return [p for p in sorted((ROOT / "notebooks").glob("*.ipynb"))
            if not only or any(p.name.startswith(o) for o in only)]


def run_notebook(path: Path, cold: bool = False, one_core: bool = False, every_s: float = 0.5,
                 cache_from: Path | None = None, threads: int | None = None, root: Path = ROOT) -> dict:
    """Run one notebook in a fresh kernel; ``cold``: with an empty ``TUTORLIB_CACHE`` of its own,
    so that it builds every world, feature and model it needs, as on a new Colab or Binder session;
    ``cache_from``: with a fresh copy of that cache folder instead (what a Binder image ships);
    ``one_core``: the runner, the kernel and its workers pinned to one CPU core (Binder's quota);
    ``threads``: ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` for the kernel; ``root``: the checkout
    whose ``tutorlib`` the kernel imports (another commit's worktree). Returns the wall
    time, the CPU time, the kernel's peak RSS and the process tree's peak PSS (sampled every
    ``every_s`` seconds)."""
    import threading
    pin = _pin(one_core)
    with tempfile.TemporaryDirectory(prefix="tutorlib-cold-") as empty:
        env = None if threads is None else thread_env(threads)
        if root != ROOT:
            env = {**(env or os.environ), "PYTHONPATH": str(root)}
        if cold or cache_from is not None:
            cache = Path(empty) / "cache"
            if cache_from is not None:
                shutil.copytree(cache_from, cache, ignore=shutil.ignore_patterns("*.lock"))
            env = {**(env or os.environ), "TUTORLIB_CACHE": str(cache)}
        proc = subprocess.Popen([sys.executable, "-c", _RUN_ONE, str(path)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=root, env=env, preexec_fn=pin)
        peak, done = [0.0], threading.Event()

        def sample():
            while not done.wait(every_s):
                peak[0] = max(peak[0], tree_pss_mib(proc.pid))
        watcher = threading.Thread(target=sample, daemon=True)
        watcher.start()
        stdout, stderr = proc.communicate()
        done.set()
        watcher.join()
    if proc.returncode != 0:
        return {"error": stderr.strip().splitlines()[-1] if stderr.strip() else "failed"}
    return {**json.loads(stdout.strip().splitlines()[-1]), "tree_pss_mib": peak[0]}


def image_cache(folder: Path, one_core: bool) -> float:
    """Build what Binder's postBuild builds into its image (``scripts.warm_cache``) in
    ``folder``; returns the seconds it took (paid once per image build, not per session)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "scripts.warm_cache"], cwd=ROOT, check=True, preexec_fn=_pin(one_core),
                   env={**os.environ, "TUTORLIB_CACHE": str(folder)}, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def load() -> str:
    """The 1-minute load average over the core count: a quiet machine reads near 0."""
    try:
        return f"{os.getloadavg()[0]:.2f}/{os.cpu_count()}"
    except OSError:
        return "n/a"


def throughput(repeats: int = 5) -> dict:
    import torch
    from tutorlib.objectives import losses
    from tutorlib.training import train
    from tutorlib.zoo import pretrained
    from tutorlib import world
    torch.set_num_threads(1)                         # "on one CPU core"
    res = {}

    def best_rate(fn, n):
        fn()                                         # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        times.sort()
        return n / times[len(times) // 2]            # the median run

    scenes = world.sample_scenes(20000, seed=0)
    res["images_per_s"] = best_rate(lambda: world.render_images(scenes), 20000)
    few = scenes[:4000]
    res["audio_clips_per_s"] = best_rate(lambda: world.log_mel(world.render_audio(few)), 4000)
    vids = scenes[:2000]
    res["videos_per_s"] = best_rate(lambda: world.render_video(vids), 2000)
    res["captions_per_s"] = best_rate(lambda: world.captions(few), 4000)

    torch.set_num_threads(os.cpu_count() or 1)       # training uses the whole machine
    torch.manual_seed(0)
    model = pretrained.build_mini_clip()
    tok = world.Tokenizer()
    x = world.render_images(scenes[:256])
    ids = tok(world.captions(scenes[:256])[0])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():                                      # the course's one update (train.step)
        train.step(opt, lambda batch: losses.clip_loss(*model(*batch)), (x, ids))
    res["train_step_b256_s"] = 1 / best_rate(step, 1)
    res["train_threads"] = torch.get_num_threads()
    return res


_STEPS = r"""
import time, torch
from tutorlib.objectives import binding
torch.manual_seed(0)
feats = {"text": torch.randn(3000, 384), **{m: torch.randn(3000, 64) for m in ("image", "audio", "video")}}
run = lambda steps: binding.train_heads("ImageBind", feats, 64, steps=steps, batch_size=128, seed=0, progress=False)
run(5)
start = time.perf_counter()
run(100)
print(100 / (time.perf_counter() - start))
"""


def under_load(busy: int | None = None) -> dict:
    """Lesson 06's training steps per second (ImageBind's heads, batch 128) in three thread
    settings, while ``busy`` processes (default: one per core) spin beside it, as other users'
    kernels do on a shared server or a loaded laptop."""
    busy = busy or os.cpu_count() or 1
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    settings = {"1 thread": {"OMP_NUM_THREADS": "1"},
                f"{os.cpu_count()} threads": {"OMP_NUM_THREADS": str(os.cpu_count())},
                f"{os.cpu_count()} threads, OMP_WAIT_POLICY=PASSIVE": {"OMP_NUM_THREADS": str(os.cpu_count()),
                                                                       "OMP_WAIT_POLICY": "PASSIVE"}}
    try:
        return {name: float(subprocess.run([sys.executable, "-c", _STEPS], capture_output=True, text=True,
                                           cwd=ROOT, env={**os.environ, **env}, check=True).stdout.split()[-1])
                for name, env in settings.items()}
    finally:
        for p in spinners:
            p.kill()
            p.wait()


def _write_markdown(path: Path, how: str, table: list[str]) -> None:
    """A report: which command wrote it, when and where it was measured (``how``), the table;
    then the pages that include it are brought up to date."""
    lines = [f"<!-- written by `python -m scripts.benchmark {' '.join(sys.argv[1:])}`; do not edit by hand -->",
             f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores ({platform.machine()}, "
             f"Python {platform.python_version()}), {how}", "", *table]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")
    sync_pages()


def write_report(path: Path, rows, total: float, mode: str, image_s: float | None = None) -> None:
    """The notebooks' table as markdown, with when, where and how it was measured (and, for
    ``--binder``, how long the image's cache took to build: once per image, not per session)."""
    table = ["| notebook | wall s | kernel peak MiB | process tree peak PSS MiB | load before |",
             "|---|---|---|---|---|"]
    for name, r, before in rows:
        table.append(f"| {name} | failed | | | {before} |" if r is None else
                     f"| {name} | {r['wall_s']:.0f} | {r['peak_mib']:,.0f} | {r['tree_pss_mib']:,.0f} | {before} |")
    table.append(f"| all | {total:,.0f} | | | |")
    _write_markdown(path, f"{mode}." + (f" Building the image's cache (`scripts.warm_cache`) took {image_s:.0f} s, "
                                        "once per image build." if image_s is not None else ""), table)


PAGES = tuple(ROOT / "lessons" / f for f in ("running_a_class.md", "08_few_pairs.md", "09_scaling_the_batch.md"))
_INCLUDE = re.compile(r"(<!-- include: (\S+) -->\n)(.*?)(<!-- end include -->)", re.S)


def sync_pages(pages=PAGES, write: bool = True) -> list[str]:
    """Copy each report into the pages that show it: the text between ``<!-- include: FILE -->``
    and ``<!-- end include -->`` becomes FILE's text (FILE relative to the page). Returns the
    blocks that were out of date (``write=False`` only checks)."""
    stale = []
    for page in pages:
        text = page.read_text()

        def fill(m):
            body = (page.parent / m.group(2)).read_text()
            if body != m.group(3):
                stale.append(f"{page.name}: {m.group(2)}")
            return m.group(1) + body + m.group(4)
        new = _INCLUDE.sub(fill, text)
        if write and new != text:
            page.write_text(new)
    return stale


def thread_counts(counts, repeats: int, only=None, report: str | None = None, paths=None) -> dict:
    """Every notebook (warm caches) at each thread count in ``counts``, ``repeats`` rounds that
    alternate the counts, so that a drift in the machine's speed falls on all of them alike;
    prints the lower wall time and the matching CPU time per count (two spinning threads
    burn CPU while they wait, so CPU above wall means threads waiting on each other)."""
    paths = paths or notebooks(only)
    head = " ".join(f"{f'{t} thr wall':>11s} {'cpu':>6s}" for t in counts)
    print(f"\n{'notebook':40s} {head}   (lower of {repeats} alternating runs, warm caches)")
    rows = []
    for path in paths:
        runs = {t: [] for t in counts}
        for _ in range(repeats):
            for t in counts:
                r = run_notebook(path, threads=t)
                if "error" in r:
                    raise SystemExit(f"{path.name} at {t} threads failed: {r['error']}")
                runs[t].append((r["wall_s"], r["cpu_s"], load()))
        best = {t: min(runs[t]) for t in counts}
        rows.append((path.stem, best))
        print(f"{path.name:40s} " + " ".join(f"{best[t][0]:11.1f} {best[t][1]:6.1f}" for t in counts), flush=True)
    if report:
        table = ["| notebook | " + " | ".join(f"{t} thread{'s' * (t > 1)}: wall s | CPU s | load" for t in counts) + " |",
                 "|---|" + "---|---|---|" * len(counts)]
        table += [f"| {name} | " + " | ".join(f"{b[t][0]:.0f} | {b[t][1]:.0f} | {b[t][2]}" for t in counts) + " |"
                  for name, b in rows]
        table.append("| all | " + " | ".join(f"{sum(b[t][0] for _, b in rows):.0f} | {sum(b[t][1] for _, b in rows):.0f} | "
                                             for t in counts) + " |")
        _write_markdown(Path(report), f"warm caches, the lower wall time of {repeats} runs per thread count "
                        "(alternating), with that run's CPU time (the kernel and its workers) and the load "
                        "average before it.", table)
    return dict(rows)


def side_by_side(commit: str, repeats: int, only=None, report: str | None = None) -> dict:
    """Every notebook at ``commit`` (a temporary git worktree, run with its own ``tutorlib``) and
    here, alternately, ``repeats`` rounds, each pinned to one core at one thread, warm caches:
    the median wall times and their ratio, with every round's ratio, so that a drift of the
    machine falls on both alike. Wall, not CPU time: on one core the wall time is all the work
    done, while the CPU time the kernel's children report misses workers started from a fork
    server (lesson 09's), which no process waits for on their behalf."""
    label = subprocess.run(["git", "rev-parse", "--short", commit], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.strip()
    now = subprocess.run(["git", "describe", "--always", "--dirty=, with uncommitted changes"], cwd=ROOT,
                         capture_output=True, text=True).stdout.strip() or "this checkout"
    rows = []
    with tempfile.TemporaryDirectory(prefix="tutorlib-then-") as tmp:
        then = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(then), commit], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            print(f"\n{'notebook':40s} {label + ' wall s':>14s} {'now wall s':>11s} {'ratio':>6s}   "
                  f"(median of {repeats}; one core, one thread, alternating)")
            for path in notebooks(only):
                if not (then / "notebooks" / path.name).exists():
                    print(f"{path.name:40s} not at {label}")
                    continue
                wall = {"then": [], "now": []}
                for _ in range(repeats):
                    for side, root in (("then", then), ("now", ROOT)):
                        r = run_notebook(root / "notebooks" / path.name, one_core=True, threads=1, root=root)
                        if "error" in r:
                            raise SystemExit(f"{path.name} at {side} failed: {r['error']}")
                        wall[side].append(r["wall_s"])
                med = {k: statistics.median(v) for k, v in wall.items()}
                pairs = " ".join(f"{b / a:.2f}" for a, b in zip(wall["then"], wall["now"]))
                rows.append((path.stem, med, pairs))
                print(f"{path.name:40s} {med['then']:14.1f} {med['now']:11.1f} {med['now'] / med['then']:6.2f}   "
                      f"rounds: {pairs}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(then)], cwd=ROOT, capture_output=True)
    if report and rows:
        table = [f"| notebook | at {label}: wall s | now: wall s | now / {label} | each round's ratio |",
                 "|---|---|---|---|---|"]
        table += [f"| {n} | {m['then']:.1f} | {m['now']:.1f} | {m['now'] / m['then']:.2f} | {p} |" for n, m, p in rows]
        _write_markdown(Path(report), f"side by side with commit {label} (run with its own `tutorlib`; now: {now}), warm caches, "
                        f"seed {os.environ.get('TUTORLIB_SEED', 'default')}, each notebook pinned to one core at one thread, "
                        f"{repeats} alternating rounds; median wall times (on one core, all the work the kernel and its workers did).", table)
    return {n: m for n, m, _ in rows}


_STACKED = r"""
import json, statistics, sys, time, torch
from tutorlib.methods import fewpairs
torch.set_num_threads(1)
feats = fewpairs.features("train", progress=False)
torch.optim.AdamW([torch.zeros(1, requires_grad=True)])      # the first optimiser's imports, paid up front
settings = [("clip", {}), ("structure", {"lam": 1.0}), ("structure", {"lam": 10.0}),
            ("structure", {"lam": 10.0, "divergence": "official", "structure_tau": 0.05}),
            ("cwcl", {"cwcl_source": "text"}), ("cwcl", {"cwcl_source": "image"}), ("cwcl", {"cwcl_source": "own"}),
            ("cwcl", {"cwcl_source": "text", "cwcl_centre": True})]
recipe = fewpairs.hyperparameters(steps=100, lam_warmup=20)
runs = [dict(n_pairs=50, method=m, seed=s, **{**recipe, **ov}) for m, ov in settings for s in (1000, 1001)]
times = {"one at a time": [], "together": []}
for _ in range(int(sys.argv[1])):
    for how in times:
        start = time.perf_counter()
        out = [fewpairs.train_runs(feats, [r])[0] for r in runs] if how == "one at a time" else fewpairs.train_runs(feats, runs)
        times[how].append(time.perf_counter() - start)
print(json.dumps({"runs": len(runs), "at_once": fewpairs.RUNS_AT_ONCE, **{k: statistics.median(v) for k, v in times.items()}}))
"""


def stacked_runs(repeats: int, report: str | None = None) -> dict:
    """Lesson 08's 16 validation runs (8 settings, 2 seeds; 100 steps at 50 pairs) trained one
    at a time and together (``fewpairs.train_runs``), alternating, in one process pinned to one
    core at one thread: the median seconds of each."""
    out = subprocess.run([sys.executable, "-c", _STACKED, str(repeats)], cwd=ROOT, check=True, capture_output=True,
                         text=True, preexec_fn=_pin(True), env=thread_env(1))
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{r['runs']} runs one at a time: {r['one at a time']:.1f} s; together ({r['at_once']} at once): "
          f"{r['together']:.1f} s; {r['one at a time'] / r['together']:.2f}x")
    if report:
        table = ["| lesson 08's validation runs | seconds | speed-up |", "|---|---|---|",
                 f"| {r['runs']} runs one at a time | {r['one at a time']:.1f} | 1 |",
                 f"| the same runs together, {r['at_once']} at a time | {r['together']:.1f} | "
                 f"{r['one at a time'] / r['together']:.2f}x |"]
        _write_markdown(Path(report), f"one process pinned to one core at one thread, warm caches, median of {repeats} "
                        "alternating rounds. One at a time is each run alone through the same code (a stack of one, "
                        "whose weights equal plain `nn.Linear` training's to the last bit at these sizes); the "
                        "weights are the same either way (`tests/test_stacked.py`).", table)
    return r


_PROFILE_START = r"""
import collections, sys, threading, time, torch
from torch.utils.flop_counter import FlopCounterMode
from tutorlib.training import train as _train
_PROF = {"samples": collections.Counter(), "flops": 0.0, "counted": 0, "steps": 0, "step_s": 0.0, "every": 25}
_PROF_STOP, _PROF_MAIN = threading.Event(), threading.main_thread().ident

def _prof_category(frame):
    names, cell = [], False
    while frame is not None:
        f = frame.f_code.co_filename
        cell = cell or "ipykernel_" in f or f.startswith("<ipython-input")
        names.append((f, frame.f_code.co_name))
        frame = frame.f_back
    if not cell:
        return None                                   # the kernel waiting between cells
    files = [f for f, _ in names]
    if any(f.endswith("tutorlib/training/train.py") for f in files):
        return "training"
    if any(f.endswith("tutorlib/training/launch.py") for f in files):
        return "workers"
    for cat, part in (("evaluation", "tutorlib/evaluation/"), ("plotting", "matplotlib"), ("data", "tutorlib/world/"),
                      ("data", "tutorlib/zoo/minilm"), ("imports", "<frozen importlib")):
        if any(part in f for f in files):
            return cat
    if any(n in ("features", "token_features", "layer_features", "training_data") for _, n in names):
        return "data"
    if any("tutorlib/models/" in f or "tutorlib/objectives/" in f for f in files):
        return "forward"
    return "other"

def _prof_sample():
    while not _PROF_STOP.wait(0.01):
        frame = sys._current_frames().get(_PROF_MAIN)
        cat = frame is not None and _prof_category(frame)
        if cat:
            _PROF["samples"][cat] += 1

_prof_step = _train.step
def _counted_step(*args, **kwargs):
    _PROF["steps"] += 1
    if _PROF["steps"] % _PROF["every"] == 1:            # FLOPs of every 25th step (forward and backward)
        with FlopCounterMode(display=False) as counter:
            out = _prof_step(*args, **kwargs)
        _PROF["flops"], _PROF["counted"] = _PROF["flops"] + counter.get_total_flops(), _PROF["counted"] + 1
        return out
    start = time.perf_counter()
    out = _prof_step(*args, **kwargs)
    _PROF["step_s"] += time.perf_counter() - start
    return out
_train.step = _counted_step
threading.Thread(target=_prof_sample, daemon=True).start()
"""
_PROFILE_END = r"""
import json
_PROF_STOP.set()
a = torch.randn(512, 512)
for _ in range(3):
    start = time.perf_counter(); [a @ a for _ in range(20)]; mm = 20 * 2 * 512 ** 3 / (time.perf_counter() - start)
uncounted = _PROF["steps"] - _PROF["counted"]
rate = (_PROF["flops"] / _PROF["counted"]) / (_PROF["step_s"] / uncounted) if _PROF["counted"] and uncounted else float("nan")
print("PROFILE " + json.dumps({"samples": dict(_PROF["samples"]), "steps": _PROF["steps"], "train_gflops": rate / 1e9,
                               "matmul_gflops": mm / 1e9, "threads": torch.get_num_threads()}))
"""
_PROFILE_RUN = r"""
import json, sys, nbformat
from nbclient import NotebookClient
start, end = sys.argv[2], sys.argv[3]
nb = nbformat.read(sys.argv[1], as_version=4)
nb.cells = [nbformat.v4.new_code_cell(start), *nb.cells, nbformat.v4.new_code_cell(end)]
NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": "notebooks"}}).execute()
out = [o.get("text", "") for o in nb.cells[-1].outputs if o.get("name") == "stdout"]
print([line for line in "".join(out).splitlines() if line.startswith("PROFILE ")][-1][8:])
"""
CATEGORIES = ("training", "workers", "evaluation", "forward", "data", "plotting", "imports", "other")


def profile_notebooks(only=None, report: str | None = None) -> dict:
    """Where each notebook's time goes, sampled every 10 ms from inside its kernel (one core,
    one thread, warm caches): the share of cell time in training steps (``train.step``, which
    every training loop of the course calls), waiting for worker processes (``launch.run``),
    evaluation (``tutorlib.evaluation``), other forward passes of the towers and losses
    (embedding a split to score it, say), data (the world, MiniLM and the cached feature
    builders), plotting (matplotlib), imports, and the rest (the notebook's own Python, pandas,
    printing); and the achieved GFLOP/s of the training
    steps (FLOPs counted by ``torch.utils.flop_counter`` on every 25th step, time measured on
    the others) beside the same kernel's 512x512 float32 matmul rate."""
    rows = []
    print(f"\n{'notebook':26s} " + " ".join(f"{c:>9s}" for c in CATEGORIES) + f" {'train GF/s':>10s} {'matmul':>7s}")
    for path in notebooks(only):
        proc = subprocess.run([sys.executable, "-c", _PROFILE_RUN, str(path), _PROFILE_START, _PROFILE_END], cwd=ROOT,
                              capture_output=True, text=True, preexec_fn=_pin(True),
                              env=thread_env(1))
        if proc.returncode != 0:
            print(f"{path.name:26s} FAILED: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        total = sum(r["samples"].values()) or 1
        share = {c: r["samples"].get(c, 0) / total for c in CATEGORIES}
        rows.append((path.stem, share, r, total / 100))
        print(f"{path.stem[:26]:26s} " + " ".join(f"{share[c]:9.0%}" for c in CATEGORIES)
              + f" {r['train_gflops']:10.1f} {r['matmul_gflops']:7.1f}", flush=True)
    if report and rows:
        table = ["| notebook | cell time s | " + " | ".join(CATEGORIES) + " | training steps | training GFLOP/s | matmul GFLOP/s |",
                 "|---|---|" + "---|" * (len(CATEGORIES) + 3)]
        table += [f"| {n} | {t:.0f} | " + " | ".join(f"{sh[c]:.0%}" for c in CATEGORIES)
                  + f" | {r['steps']:,} | {r['train_gflops']:.1f} | {r['matmul_gflops']:.0f} |" for n, sh, r, t in rows]
        _write_markdown(Path(report), "warm caches, each notebook in a fresh kernel pinned to one core at one thread, "
                        "its main thread's stack sampled every 10 ms while a cell ran (the categories are checked in the "
                        "order of the columns: a sample inside a training step counts as training even when the step "
                        "evaluates). Training GFLOP/s: FLOPs of every 25th training step (`torch.utils.flop_counter`, "
                        "matrix products and convolutions, forward and backward) per second of the other steps; "
                        "matmul: the same kernel multiplying 512x512 float32 matrices.", table)
    return {n: (sh, r) for n, sh, r, _ in rows}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help="notebook number prefixes to run (default: all)")
    ap.add_argument("--no-notebooks", action="store_true")
    ap.add_argument("--no-throughput", action="store_true")
    ap.add_argument("--cold", action="store_true", help="each notebook from an empty cache (no budget applies)")
    ap.add_argument("--one-core", action="store_true", help="pin each notebook's processes to one CPU core (Binder)")
    ap.add_argument("--under-load", action="store_true", help="only: training steps/s beside one busy process per core")
    ap.add_argument("--binder", action="store_true",
                    help="one core, each notebook from a fresh copy of the cache Binder's image ships (scripts.warm_cache)")
    ap.add_argument("--report", help="also write the notebooks' table to this markdown file")
    ap.add_argument("--threads", nargs="+", type=int, help="only: every notebook at each of these thread counts")
    ap.add_argument("--repeats", type=int, default=2, help="with --threads, --against or --stacked: rounds of alternating runs")
    ap.add_argument("--profile", action="store_true", help="only: where each notebook's time goes, training GFLOP/s")
    ap.add_argument("--stacked", action="store_true", help="only: lesson 08's runs one at a time and stacked")
    ap.add_argument("--against", metavar="COMMIT", help="only: every notebook side by side with COMMIT's, alternating")
    ap.add_argument("--sync-pages", action="store_true",
                    help="only: copy the reports into the pages that include them (running_a_class.md)")
    args = ap.parse_args()
    if args.sync_pages:
        print("\n".join(f"updated {b}" for b in sync_pages()) or "every included report is up to date")
        return
    if args.profile:
        profile_notebooks(args.only, args.report)
        return
    if args.stacked:
        stacked_runs(args.repeats, args.report)
        return
    if args.against:
        side_by_side(args.against, args.repeats, args.only, args.report)
        return
    if args.threads:
        thread_counts(args.threads, args.repeats, args.only, args.report)
        return
    if args.under_load:
        print(f"lesson 06's training steps per second, beside {os.cpu_count()} busy processes:")
        for name, rate in under_load().items():
            print(f"  {name:45s} {rate:8.1f}")
        return
    from tutorlib import profile
    print(f"profile: {profile()}   cores: {os.cpu_count()}   load: {load()}")
    if not args.no_notebooks:
        one_core = args.one_core or args.binder
        image = Path(tempfile.mkdtemp(prefix="tutorlib-image-")) if args.binder else None
        image_s = None
        if image is not None:
            print(f"building the image's cache (scripts.warm_cache){', one core' if one_core else ''} ...", flush=True)
            image_s = image_cache(image, one_core)
            print(f"  {image_s:.0f} s, once per image build", flush=True)
        mode = ("from the cache Binder's image ships" if args.binder else
                "cold caches" if args.cold else f"warm caches; budget {BUDGET_S} s")
        mode += f"; memory budget {BUDGET_MIB} MiB" + ("; one core" if one_core else "")
        print(f"\n{'notebook':40s} {'wall s':>8s} {'peak MiB':>9s} {'tree PSS':>9s} {'load before':>12s}   ({mode})")
        total, rows = 0.0, []
        for path in notebooks(args.only):
            before = load()
            r = run_notebook(path, cold=args.cold, one_core=one_core, cache_from=image)
            if "error" in r:
                print(f"{path.name:40s} FAILED: {r['error']}")
                rows.append((path.stem, None, before))
                continue
            total += r["wall_s"]
            rows.append((path.stem, r, before))
            over = [what for what, bad in (("time", r["wall_s"] > BUDGET_S and not (args.cold or args.binder)),
                                           ("memory", r["peak_mib"] > BUDGET_MIB)) if bad]
            print(f"{path.name:40s} {r['wall_s']:8.1f} {r['peak_mib']:9.0f} {r['tree_pss_mib']:9.0f} {before:>12s}"
                  + (f"   over budget: {', '.join(over)}" if over else ""), flush=True)
        print(f"{'all notebooks above':40s} {total:8.1f}   load after: {load()}")
        if image is not None:
            shutil.rmtree(image, ignore_errors=True)
        if args.report:
            write_report(Path(args.report), rows, total, mode, image_s)
    if not args.no_throughput:
        r = throughput()
        print("\nrender throughput, one CPU core (median of 5):")
        print(f"  images      {r['images_per_s']:10,.0f} /s")
        print(f"  audio clips {r['audio_clips_per_s']:10,.0f} /s   (waveform + log-mel)")
        print(f"  videos      {r['videos_per_s']:10,.0f} /s")
        print(f"  captions    {r['captions_per_s']:10,.0f} /s")
        print(f"mini-CLIP training step, batch 256, {r['train_threads']} threads: "
              f"{r['train_step_b256_s'] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
