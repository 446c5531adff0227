"""Run notebooks' code cells as a plain Python program, without Jupyter.

For a machine that has PyTorch and the course's libraries but no Jupyter stack (a remote
GPU box, a batch job): each notebook's code cells run in order in one namespace, with
their asserts, and the time of each cell is printed. Where ``IPython`` or ``ipywidgets``
is missing, small stand-ins are used: ``display`` prints, and ``widgets.interact`` calls
the function once with each slider's starting value.

    python -m scripts.run_cells notebooks/02_hard_negatives_mixup.ipynb
    TUTORLIB_PROFILE=full python -m scripts.run_cells notebooks/0*.ipynb
    python -m scripts.run_cells --keep-going notebooks/01_contrastive_alignment.ipynb

``--keep-going`` reports a failed ``assert`` and goes on to the next cell (the rest of
that cell is skipped), so that a sweep over seeds logs every claim's numbers; the exit
status is then 1 if any assert failed.
"""
from __future__ import annotations

import os
import sys
import time
import types

try:
    from scripts import notebook_io
except ImportError:                     # run as a file (python -m scripts.run_cells): its folder is on the path
    import notebook_io


def _stub_ipython():
    try:
        import IPython.display  # noqa: F401
    except ImportError:
        ipy = types.ModuleType("IPython")
        disp = types.ModuleType("IPython.display")
        disp.display = lambda *objs, **kw: [print(o) for o in objs] and None
        disp.Audio = disp.HTML = disp.Markdown = lambda *a, **kw: "<rich output>"
        ipy.display, ipy.get_ipython, ipy.version_info = disp, lambda: None, (9, 0, 0)   # as matplotlib expects
        sys.modules.update({"IPython": ipy, "IPython.display": disp})
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        class Widget:                    # any other widget: accepts anything, does nothing
            def __init__(self, *args, value=None, **kw):
                self.value = value

            def __call__(self, *args, **kw):
                return self

            def __getattr__(self, name):
                return self

            def __repr__(self):
                return "<widget>"

        w = types.ModuleType("ipywidgets")
        def __getattr__(name):
            if name.startswith("_"):
                raise AttributeError(name)
            return Widget
        w.__getattr__ = __getattr__
        w.FloatSlider = w.IntSlider = w.FloatLogSlider = w.Dropdown = w.Checkbox = \
            lambda value=None, **kw: value   # interact() below passes the starting value
        w.interact = lambda fn, **kw: fn(**kw)
        sys.modules["ipywidgets"] = w


def run(path: str, keep_going: bool = False) -> tuple[float, int]:
    cells = notebook_io.code_sources(notebook_io.read(path))
    here = os.getcwd()
    os.chdir(os.path.dirname(os.path.abspath(path)))
    namespace = {"__name__": "__main__"}
    start, failed = time.perf_counter(), 0
    try:
        for k, src in enumerate(cells):
            t, cpu = time.perf_counter(), time.process_time()
            lines = [ln for ln in src.split("\n") if not ln.lstrip().startswith(("%", "!"))]
            try:
                exec(compile("\n".join(lines), f"{os.path.basename(path)}[cell {k}]", "exec"), namespace)
            except AssertionError as e:
                if not keep_going:
                    raise
                failed += 1
                print(f"!!! {os.path.basename(path)} cell {k}: ASSERTION FAILED: {e}", flush=True)
            print(f"--- {os.path.basename(path)} cell {k}: {time.perf_counter() - t:.1f} s "
                  f"(CPU {time.process_time() - cpu:.1f} s)", flush=True)
    finally:
        os.chdir(here)
    total = time.perf_counter() - start
    print(f"=== {path}: all {len(cells)} code cells ran in {total:.1f} s"
          + (f", {failed} with a failed assert" if failed else ""), flush=True)
    return total, failed


if __name__ == "__main__":
    args = sys.argv[1:]
    keep_going = "--keep-going" in args
    paths = [a for a in args if a != "--keep-going"]
    if not paths:
        sys.exit("usage: python -m scripts.run_cells [--keep-going] NOTEBOOK.ipynb [...]")
    os.environ.setdefault("MPLBACKEND", "Agg")
    _stub_ipython()
    try:                                 # tables print whole in a log, not folded at 80 columns
        import pandas as pd
        pd.set_option("display.width", 250)
        pd.set_option("display.max_columns", 50)
    except ImportError:
        pass
    failures = sum(run(nb_path, keep_going)[1] for nb_path in paths)
    sys.exit(1 if failures else 0)
