"""scripts/benchmark.py's measurements: the process tree's memory, and the one-core mode."""
import subprocess
import sys
import time

import nbformat
import pytest

from scripts import benchmark


def test_tree_pss_counts_the_children():
    child = subprocess.Popen([sys.executable, "-c",
                              "import subprocess, sys; subprocess.run([sys.executable, '-c', "
                              "'import time; x = bytes([1]) * (200 * 2**20); time.sleep(30)'])"])
    try:
        deadline = time.time() + 20
        while benchmark.tree_pss_mib(child.pid) < 200 and time.time() < deadline:
            time.sleep(0.2)
        assert benchmark.tree_pss_mib(child.pid) >= 200          # the grandchild's 200 MiB is counted
    finally:
        import psutil
        for p in psutil.Process(child.pid).children(recursive=True):
            p.kill()
        child.kill()
        child.wait()
    assert benchmark.tree_pss_mib(child.pid) == 0.0              # gone: nothing, no error


def _notebook(path, source: str):
    """A one-cell notebook at ``path`` running ``source``."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(__import__("os"), "sched_setaffinity"), reason="needs Linux's affinity mask")
def test_one_core_mode_pins_the_kernel_and_caps_torch_threads(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    path = _notebook(tmp_path / "pinned.ipynb",
                     "import os, torch, tutorlib\n"
                     "assert len(os.sched_getaffinity(0)) == 1, os.sched_getaffinity(0)\n"
                     "assert torch.get_num_threads() == 1, torch.get_num_threads()")
    r = benchmark.run_notebook(path, one_core=True, every_s=0.1)
    assert "error" not in r, r
    assert r["tree_pss_mib"] > 50 and r["wall_s"] > 0


def test_report_is_a_markdown_table_that_says_how_it_was_measured(tmp_path, monkeypatch):
    rows = [("00_the_world", {"wall_s": 12.3, "peak_mib": 700.4, "tree_pss_mib": 650.0}, "0.10/2"),
            ("01_contrastive_alignment", None, "0.20/2")]
    out = tmp_path / "sub" / "report.md"
    monkeypatch.setattr(benchmark.sys, "argv", ["benchmark.py", "--binder"])
    benchmark.write_report(out, rows, 12.3, "one core")
    text = out.read_text()
    assert text.startswith("<!-- written by `python -m scripts.benchmark --binder`")
    assert "| 00_the_world | 12 | 700 | 650 | 0.10/2 |" in text
    assert "| 01_contrastive_alignment | failed | | | 0.20/2 |" in text and "one core" in text


@pytest.mark.slow
def test_a_notebook_can_start_from_a_copy_of_a_given_cache(tmp_path):
    shipped = tmp_path / "image-cache"
    shipped.mkdir()
    (shipped / "piece.safetensors").write_text("x")
    (shipped / "piece.safetensors.lock").write_text("")
    path = _notebook(tmp_path / "copy.ipynb",
                     "import os, pathlib\n"
                     "cache = pathlib.Path(os.environ['TUTORLIB_CACHE'])\n"
                     f"assert cache != pathlib.Path({str(shipped)!r}) and (cache / 'piece.safetensors').read_text() == 'x'\n"
                     "assert not (cache / 'piece.safetensors.lock').exists()\n"
                     "(cache / 'written').write_text('y')")
    r = benchmark.run_notebook(path, cache_from=shipped, every_s=0.1)
    assert "error" not in r, r
    assert not (shipped / "written").exists()                   # the shipped cache is never written to


def test_pages_show_the_reports_they_include(tmp_path):
    """running_a_class.md shows the measured tables copied from lessons/benchmarks/ by code,
    never typed: a report rewritten without the page following fails here."""
    assert benchmark.sync_pages(write=False) == []
    page, report = tmp_path / "page.md", tmp_path / "r.md"
    report.write_text("| a | 1 |\n")
    page.write_text("before\n<!-- include: r.md -->\nold\n<!-- end include -->\nafter\n")
    assert benchmark.sync_pages([page]) == ["page.md: r.md"]
    assert page.read_text() == "before\n<!-- include: r.md -->\n| a | 1 |\n<!-- end include -->\nafter\n"
    assert benchmark.sync_pages([page], write=False) == []


@pytest.mark.slow
def test_thread_counts_run_each_notebook_at_each_count(tmp_path):
    path = _notebook(tmp_path / "threads.ipynb",
                     "import os, torch, tutorlib\n"
                     "assert torch.get_num_threads() == int(os.environ['OMP_NUM_THREADS'])")
    out = tmp_path / "threads.md"
    best = benchmark.thread_counts([1, 2], 1, report=str(out), paths=[path])
    assert set(best["threads"]) == {1, 2} and all(wall > 0 for wall, cpu, load in best["threads"].values())
    assert "| threads | " in out.read_text()
