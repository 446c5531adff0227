import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: an integration test that runs a whole notebook, starts JupyterLab or drives a "
                   "browser (minutes); `make unit` leaves these out with -m 'not slow', `make test` runs them")


def pytest_addoption(parser):
    parser.addoption("--rerun-notebooks", action="store_true",
                     help="nbval runs each notebook code cell twice in a row, as a student "
                          "pressing Shift-Enter again would (make test passes it)")


RUN_ONCE = "run-once"   # a cell tag: the minutes-long experiment loop of a lesson, not rerun


def pytest_collection_modifyitems(config, items):
    """With --rerun-notebooks, every nbval cell runs twice in a row in the same kernel;
    the test fails if either run fails. A cell tagged ``run-once`` (a lesson's long
    experiment loop, which starts from an empty results dict) runs once: rerunning it
    doubles CI's longest notebook and tests no new state (tests/test_rerun.py checks
    that only such cells carry the tag)."""
    if not config.getoption("--rerun-notebooks"):
        return
    for item in items:
        if type(item).__name__ == "IPyNbCell" and RUN_ONCE not in item.cell.metadata.get("tags", []):
            item.runtest = _twice(item.runtest)


def _twice(runtest):
    def run_twice():
        runtest()
        runtest()
    return run_twice


os.environ.setdefault("TUTORLIB_PROFILE", "quick")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


# TUTORLIB_CACHE as the user started pytest with it (None: the default ~/.cache/tutorlib)
USER_CACHE = os.environ.get("TUTORLIB_CACHE")


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory):
    """One temporary cache folder for this pytest process (each pytest-xdist worker has its
    own basetemp, so its own folder): what the Python tests build, they build once."""
    return tmp_path_factory.mktemp("tutorlib-cache")


@pytest.fixture(autouse=True)
def temporary_cache(request, monkeypatch):
    """Every Python test function runs with TUTORLIB_CACHE set to the session's temporary
    folder, so that no test writes into the user's cache. monkeypatch restores the variable
    after each test: it never reaches the kernels nbval starts for the notebooks (nbval's
    cells take no fixtures; they keep the user's cache). A module- or session-scoped fixture
    that already set its own TUTORLIB_CACHE (test_world, test_pretrained) keeps it, and a
    test that sets one (tmp_cache, monkeypatch.setenv) overrides this one. Tests marked
    slow run whole notebooks in fresh kernels, as a student would: like the nbval items they
    use the notebooks' own cache (building it twice would add minutes to `make test`)."""
    if not isinstance(request.node, pytest.Function) or request.node.get_closest_marker("slow"):
        return
    if os.environ.get("TUTORLIB_CACHE") != USER_CACHE:
        return                                # a wider-scoped fixture chose its own folder
    monkeypatch.setenv("TUTORLIB_CACHE", str(request.getfixturevalue("session_cache")))


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch, temporary_cache):
    """A fresh, empty TUTORLIB_CACHE for one test (set after the session one, so it wins)."""
    monkeypatch.setenv("TUTORLIB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def tok():
    """The course tokenizer (training vocabulary), shared by the tests that need one."""
    from tutorlib import world
    return world.Tokenizer()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


@pytest.fixture
def lab(tmp_path):
    """JupyterLab started the way the README's first command does (`make lab`), headless,
    on a free localhost port with a token; yields its base URL and token. Its user settings
    live in a temporary folder: notebooks render every cell (no windowing), so a browser
    test can find any cell's output."""
    jupyter = ROOT / ".venv" / "bin" / "jupyter"
    if not jupyter.exists():
        pytest.skip("no .venv/bin/jupyter: run `make install` first (make test does)")
    port, token = free_port(), "course-test-token"
    flags = (f"--no-browser --ip=127.0.0.1 --port={port} --IdentityProvider.token={token} "
             "--ServerApp.port_retries=0 --LabApp.news_url=None --ServerApp.disable_check_xsrf=False")
    settings = tmp_path / "lab-settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    docs = tmp_path / "lab-settings" / "@jupyterlab" / "docmanager-extension"
    docs.mkdir(parents=True)                 # never save a test's outputs into the course's notebooks
    (docs / "plugin.jupyterlab-settings").write_text('{"autosave": false}')
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "lab-settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "lab-workspaces"))
    env.pop("MPLBACKEND", None)          # the kernel's figures render inline, as for a person
    log = open(tmp_path / "lab.log", "w+")
    proc = subprocess.Popen(["make", "-s", "lab", f"LAB_FLAGS={flags}"], cwd=ROOT, start_new_session=True,
                            stdout=log, stderr=subprocess.STDOUT, text=True, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if get(f"{base}/api/status?token={token}")[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                log.seek(0)
                pytest.fail(f"JupyterLab did not start on port {port}: {log.read()[-2000:]}")
            time.sleep(0.5)
        yield base, token
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture
def quick_profile(monkeypatch):
    """Set the quick profile's settings for one test: ``quick_profile(hop=32, ...)``."""
    from tutorlib.core import profiles
    monkeypatch.setenv("TUTORLIB_PROFILE", "quick")

    def use(**changes):
        monkeypatch.setitem(profiles.PROFILES, "quick", profiles.QUICK.replace(**changes))
    return use


@pytest.fixture
def training_synonyms():
    """Every synonym the training captions may use (held-out captions must use none)."""
    from tutorlib import world
    words = set()
    for train, _ in world.SYNONYMS.values():
        words.update(train)
    return words - {"left", "right"}                 # these are their own paraphrases
