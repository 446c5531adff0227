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


def notebooks(only=None) -> list[Path]:
    """The course's notebooks in order, or those whose names start with one of ``only``."""
    return [p for p in sorted((ROOT / "notebooks").glob("*.ipynb"))
            if not only or any(p.name.startswith(o) for o in only)]


def run_notebook(path: Path, cold: bool = False, one_core: bool = False, every_s: float = 0.5,
                 cache_from: Path | None = None, threads: int | None = None) -> dict:
    """Run one notebook in a fresh kernel; ``cold``: with an empty ``TUTORLIB_CACHE`` of its own,
    so that it builds every world, feature and model it needs, as on a new Colab or Binder session;
    ``cache_from``: with a fresh copy of that cache folder instead (what a Binder image ships);
    ``one_core``: the runner, the kernel and its workers pinned to one CPU core (Binder's quota);
    ``threads``: ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` for the kernel. Returns the wall
    time, the CPU time, the kernel's peak RSS and the process tree's peak PSS (sampled every
    ``every_s`` seconds)."""
    import threading
    pin = _pin(one_core)
    with tempfile.TemporaryDirectory(prefix="tutorlib-cold-") as empty:
        env = None if threads is None else {**os.environ, "OMP_NUM_THREADS": str(threads),
                                            "MKL_NUM_THREADS": str(threads)}   # torch reads both
        if cold or cache_from is not None:
            cache = Path(empty) / "cache"
            if cache_from is not None:
                shutil.copytree(cache_from, cache, ignore=shutil.ignore_patterns("*.lock"))
            env = {**(env or os.environ), "TUTORLIB_CACHE": str(cache)}
        proc = subprocess.Popen([sys.executable, "-c", _RUN_ONE, str(path)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env, preexec_fn=pin)
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


PAGES = (ROOT / "lessons" / "running_a_class.md",)
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
    ap.add_argument("--repeats", type=int, default=2, help="with --threads: rounds of alternating runs")
    ap.add_argument("--sync-pages", action="store_true",
                    help="only: copy the reports into the pages that include them (running_a_class.md)")
    args = ap.parse_args()
    if args.sync_pages:
        print("\n".join(f"updated {b}" for b in sync_pages()) or "every included report is up to date")
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
