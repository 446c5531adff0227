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


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(__import__("os"), "sched_setaffinity"), reason="needs Linux's affinity mask")
def test_one_core_mode_pins_the_kernel_and_caps_torch_threads(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import os, torch, tutorlib\n"
        "assert len(os.sched_getaffinity(0)) == 1, os.sched_getaffinity(0)\n"
        "assert torch.get_num_threads() == 1, torch.get_num_threads()")]
    path = tmp_path / "pinned.ipynb"
    nbformat.write(nb, path)
    r = benchmark.run_notebook(path, one_core=True, every_s=0.1)
    assert "error" not in r, r
    assert r["tree_pss_mib"] > 50 and r["wall_s"] > 0
