"""`make site` (scripts/build_site.py): the executed course as static HTML, its figures as files."""
import base64
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
from scripts import build_site, set_repository  # noqa: E402
PNG = b"\x89PNG\r\n\x1a\n"


def test_make_site_builds_every_notebook():
    import subprocess
    recipe = subprocess.run(["make", "-n", "-s", "site"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "scripts.build_site" in recipe and ".ipynb" not in recipe     # no list: every notebook


def _tqdm_and_explorer_state():
    """A widget state as nbclient keeps it: a progress bar (tqdm's three widgets) and a
    dropdown above an Output widget that showed a figure."""
    png = base64.b64encode(PNG + b"rest").decode()
    model = lambda name, **state: {"model_name": name, "state": state}
    state = {"bar": model("HBoxModel", children=["IPY_MODEL_l", "IPY_MODEL_p", "IPY_MODEL_r"]),
             "l": model("HTMLModel", value="step: 100%"), "p": model("FloatProgressModel", value=5, max=10),
             "r": model("HTMLModel", value=" 10/10 [00:01&lt;00:00]"),
             "box": model("VBoxModel", children=["IPY_MODEL_d", "IPY_MODEL_o"]),
             "d": model("DropdownModel", description="shape", index=1, _options_labels=["circle", "star"]),
             "o": model("OutputModel", outputs=[{"output_type": "display_data", "metadata": {},
                                                 "data": {"image/png": png, "text/plain": "<Figure>"}}])}
    view = lambda mid: nbformat.v4.new_output("display_data", {build_site.WIDGET_VIEW: {"model_id": mid},
                                                               "text/plain": "widget"})
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("bar", outputs=[view("bar")]),
                                         nbformat.v4.new_code_cell("explore", outputs=[view("box")])])
    nb.metadata["widgets"] = {build_site.WIDGET_STATE: {"state": state}}
    return nb


def test_widgets_become_what_they_showed(tmp_path):
    nb = _tqdm_and_explorer_state()
    assert build_site.static_widgets(nb) == 2 and "widgets" not in nb.metadata
    bar, explorer = nb.cells[0].outputs, nb.cells[1].outputs
    assert bar[0]["data"] == {"text/plain": "step: 100% |█████     | 10/10 [00:01<00:00]"}
    assert "starting value" in explorer[0]["data"]["text/html"] and "shape = star" in explorer[0]["data"]["text/html"]
    assert explorer[1]["data"]["text/plain"] == "<Figure>"
    nb.cells[1].execution_count = 7
    (tmp_path / "in3-0.png").write_bytes(PNG)                              # from an earlier build: removed
    assert build_site.export_figures(nb, tmp_path) == [tmp_path / "in7-0.png"]
    assert (tmp_path / "in7-0.png").read_bytes().startswith(PNG) and not (tmp_path / "in3-0.png").exists()


def test_links_point_at_pages_or_at_the_repository():
    guide = build_site.ROOT / "lessons" / "01_contrastive_alignment.md"
    out = build_site.links('<a href="../notebooks/01_contrastive_alignment.ipynb">n</a> '
                            '<a href="quizzes/01_contrastive_alignment.md#q2">q</a> '
                            '<a href="../README.md">home</a> <a href="../LICENSE">licence</a> '
                            '<a href="https://example.org/a.md">web</a> <a href="#top">top</a>',
                            guide, Path("lessons/01_contrastive_alignment.html"))
    repo = set_repository.repository()
    assert out == ('<a href="../notebooks/01_contrastive_alignment.html">n</a> '
                   '<a href="quizzes/01_contrastive_alignment.html#q2">q</a> '
                   '<a href="../index.html">home</a> <a href="' + repo + '/blob/main/LICENSE">licence</a> '
                   '<a href="https://example.org/a.md">web</a> <a href="#top">top</a>')


def test_the_figures_page_keeps_lessons_built_before(tmp_path):
    for lesson in ("00_a", "01_b"):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("plot", execution_count=1, outputs=[
            nbformat.v4.new_output("display_data", {"image/png": base64.b64encode(PNG).decode()})]),
            nbformat.v4.new_markdown_cell(f"The {lesson} curve rises. Then more.")])
        build_site.export_figures(nb, tmp_path / "figures" / lesson)
    page = build_site.render_figure_index(tmp_path).read_text()
    assert 'src="00_a/in1-0.png"' in page and 'src="01_b/in1-0.png"' in page and 'alt="The 01_b curve rises."' in page


def test_bad_input_is_named(tmp_path):
    with pytest.raises(ValueError, match="notebooks: got .*README.md.* expected an existing .ipynb"):
        build_site.build([ROOT / "README.md"], tmp_path)
    with pytest.raises(ValueError, match="jobs: got 0"):
        build_site.build([], tmp_path, jobs=0)


@pytest.mark.slow
def test_the_site_of_lesson_00_embeds_its_figures_sound_and_widgets(tmp_path):
    """Lesson 00 executed and rendered: its figures are in the page and in figure files, the
    explorer widget is replaced by the figures and sound it showed, the progress bar by its text,
    and the guides link to the page."""
    name = "00_the_world"
    result = build_site.build([ROOT / "notebooks" / f"{name}.ipynb"], tmp_path, progress=lambda _: None,
                              timeout=120)                 # a cell takes seconds; a lost reply is retried
    page = (tmp_path / "notebooks" / f"{name}.html").read_text()
    figures = result["figures"][f"{name}.ipynb"]
    n_plots = sum(c.source.count("plt.show()") + c.source.count("plots.scene_grid(")
                  for c in nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4).cells)
    assert len(figures) >= 5 and len(figures) >= n_plots - 1
    assert all(f.read_bytes().startswith(PNG) for f in figures)
    assert page.count("data:image/png;base64,") >= len(figures)
    assert result["widgets"][f"{name}.ipynb"] >= 2 and build_site.WIDGET_VIEW not in page
    assert "shown here at its starting value" in page and "shape = circle" in page
    assert "<audio" in page and "data:audio/wav;base64," in page          # the explorer's sound
    assert re.search(r"scenes per step.{0,40}100%", page)                   # the progress bar, finished
    assert re.search(r"In(&nbsp;|\xa0)\[1\]:", page)                       # numbered as a student's run
    assert "No description has been provided" not in page and len(re.findall(r"alt=[\"']A figure: ", page)) >= len(figures)
    guide = (tmp_path / "lessons" / f"{name}.html").read_text()
    assert f'href="../notebooks/{name}.html"' in guide and ".ipynb\"" not in guide
    assert (tmp_path / "index.html").is_file() and (tmp_path / "lessons" / "quizzes" / f"{name}.html").is_file()
    assert (tmp_path / "grading" / "README.html").is_file() and (tmp_path / "LICENSE-TEXT.html").is_file()
    assert "/blob/main/LICENSE\"" in (tmp_path / "index.html").read_text()
    slides = (tmp_path / "figures" / "index.html").read_text()
    assert all(f'src="{name}/{f.name}"' in slides for f in figures)
    assert 'href="../figures/index.html"' in guide and f'href="../lessons/{name}.html"' in page


def test_a_lost_cell_reply_runs_the_notebook_again_in_a_new_kernel(monkeypatch):
    """nbclient sometimes never sees a widget cell's reply (jupyter/nbclient#312): the
    notebook is run once more in a fresh kernel, and a second loss is an error."""
    import nbclient
    from nbclient.exceptions import CellTimeoutError
    runs = []

    class Flaky:
        def __init__(self, nb, **kw):
            self.nb = nb

        def execute(self, env=None):
            runs.append(len(self.nb.cells))
            if len(runs) == 1:
                raise CellTimeoutError("lost reply")
    monkeypatch.setattr(nbclient, "NotebookClient", Flaky)
    path = ROOT / "notebooks" / "00_the_world.ipynb"
    nb = build_site.execute(path, timeout=1)
    assert len(runs) == 2 and len(nb.cells) == runs[0] - 1    # the set-up cell taken out once
    runs.clear()
    monkeypatch.setattr(Flaky, "execute", lambda self, env=None: (_ for _ in ()).throw(CellTimeoutError("x")))
    with pytest.raises(CellTimeoutError):
        build_site.execute(path, timeout=1)
