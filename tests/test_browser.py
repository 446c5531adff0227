"""JupyterLab in a real browser: open 00_the_world.ipynb in headless Chromium (Debian's
package, driven by Playwright's Python API, so no browser download), run every cell, and
check that the scene explorer and a tqdm progress bar render as widgets."""
import hashlib
import os
import re
import shutil
from pathlib import Path

import pytest

NOTEBOOK = "00_the_world.ipynb"
SCREENSHOTS = os.environ.get("TUTORLIB_SCREENSHOTS")     # a folder to keep a copy in (optional)

pytestmark = pytest.mark.slow


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("Debian's chromium is not installed here (.ci/run installs it with apt-get "
                "where it can; on this machine it could not be installed)")


def test_notebook_runs_in_jupyterlab_and_widgets_render(lab, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the [test] extra")
    executable = chromium()
    base, token = lab
    course_copy = Path(__file__).resolve().parent.parent / "notebooks" / NOTEBOOK
    before = hashlib.sha256(course_copy.read_bytes()).hexdigest()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(f"{base}/lab/tree/notebooks/{NOTEBOOK}?token={token}")
        page.wait_for_selector(".jp-Notebook .jp-Cell")
        # the kernel starts by itself (the notebook names python3); wait until it is idle
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
        page.click(".jp-Notebook .jp-Cell >> nth=0")              # the notebook is the current widget
        page.wait_for_timeout(1000)
        page.click("li.lm-MenuBar-item:has-text('Run')")
        page.click("li.lm-Menu-item:not(.lm-mod-disabled):has-text('Run All Cells')")
        prompts = page.locator(".jp-CodeCell .jp-InputArea-prompt")
        n_code = page.locator(".jp-CodeCell").count()
        for _ in range(300):                                  # up to 5 minutes
            texts = prompts.all_inner_texts()
            if len(texts) == n_code and all(re.fullmatch(r"\[\d+\]:", t.strip()) for t in texts):
                break
            page.wait_for_timeout(1000)
        page.wait_for_timeout(2000)                           # the last widgets draw
        explorer = page.locator(".jp-OutputArea-output .widget-vbox:has(.widget-dropdown)")
        progress = page.locator(".jp-OutputArea-output .widget-hprogress")
        outputs = " ".join(page.locator(".jp-OutputArea-output").all_inner_texts())
        shot, explorer_shot = tmp_path / "00_the_world.png", tmp_path / "scene_explorer.png"
        progress_shot = tmp_path / "progress_bar.png"
        page.screenshot(path=str(shot))
        if explorer.count():
            explorer.first.scroll_into_view_if_needed()
            page.screenshot(path=str(explorer_shot))
        if progress.count():
            progress.first.scroll_into_view_if_needed()
            page.screenshot(path=str(progress_shot))
        counts = {"prompts": texts, "explorer": explorer.count(), "progress bars": progress.count(),
                  "dropdowns": page.locator(".jp-OutputArea-output .widget-dropdown").count()}
        browser.close()
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        for f in (shot, explorer_shot, progress_shot):
            if f.exists():
                shutil.copy(f, Path(SCREENSHOTS) / f.name)
    assert all(re.fullmatch(r"\[\d+\]:", t.strip()) for t in counts["prompts"]), f"not every cell ran: {counts['prompts']}"
    assert "Traceback" not in outputs and "scenes per second" in outputs, outputs[-2000:]
    assert counts["explorer"] == 1 and counts["dropdowns"] == 5, f"the scene explorer did not render as widgets: {counts}"
    assert counts["progress bars"] >= 1, "the tqdm progress bar did not render as a widget"
    assert "Error displaying widget" not in outputs and not re.search(r"\b(HBox|VBox|FloatProgress|interactive)\(", outputs)
    assert explorer_shot.stat().st_size > 20_000 and progress_shot.exists()
    assert hashlib.sha256(course_copy.read_bytes()).hexdigest() == before, "the test saved into the notebook"
