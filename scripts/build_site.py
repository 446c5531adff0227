"""The executed course as a static HTML site, readable without running anything (`make site`).

    python -m scripts.build_site                       # every notebook, into site/
    python -m scripts.build_site --jobs 2 notebooks/00_the_world.ipynb --out /tmp/site
    python -m scripts.build_site --reuse               # render again from site/executed/

Each notebook is executed in a fresh kernel in the ``quick`` profile with seed 0 (nbclient),
then rendered by nbconvert's HTML exporter (Jupyter's own converter: pure Python, offline, no
Node.js); the guides, quizzes and README are rendered with the same Markdown renderer, and
links between them point at the pages. Widgets have no kernel in a static page, so each widget
is replaced by what it showed at its starting value (its figures, text and sound, kept by
nbclient in the widget's state), under a line that says so. Every figure is also written as a
PNG file, ``site/figures/<lesson>/in<N>-<j>.png`` (``N`` as in the page's ``In [N]``), for
slides (at twice the screen resolution), and a figures page shows them all. Links to files the
site has no page for open them in the repository. Math needs MathJax, which the pages load from its CDN when they are viewed.
"""
from __future__ import annotations

import argparse
import base64
import functools
import html
import json
import multiprocessing
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat

try:
    from scripts import notebook_io, set_repository
except ImportError:                     # run as a file (python -m scripts.build_site)
    import notebook_io
    import set_repository

ROOT = Path(__file__).resolve().parent.parent
WIDGET_VIEW, WIDGET_STATE = "application/vnd.jupyter.widget-view+json", "application/vnd.jupyter.widget-state+json"
SETUP = "%config InlineBackend.figure_formats = ['retina']"       # crisp on screen, 2x pixels for slides
FALLBACK_NOTE = ("<p class='widget-fallback'><em>An interactive control in the notebook, shown here at its "
                 "starting value: run the notebook to move it.</em></p>")
PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{max-width:52rem;margin:2rem auto;padding:0 1rem;font:16px/1.55 system-ui,sans-serif;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.25rem .5rem}}
code,pre{{background:#f5f5f5}}a.anchor-link{{opacity:.3;text-decoration:none;margin-left:.3rem}}pre{{padding:.5rem;overflow-x:auto}}nav{{margin-bottom:1.5rem}}</style>
<script>window.MathJax={{tex:{{inlineMath:[['$','$'],['\\\\(','\\\\)']]}}}}</script>
<script async src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"></script>
</head><body><nav><a href="{home}">the course</a> · <a href="{home_dir}figures/index.html">figures for slides</a></nav>
{body}
</body></html>
"""


def execute(path: Path, seed: int = 0, timeout: int = 900, tries: int = 2):
    """``path`` run top to bottom in a fresh kernel (``quick`` profile, ``seed``), widget
    states kept; returns the executed notebook. A cell that outlives ``timeout`` seconds starts
    the notebook again in a new kernel, ``tries`` times in all: nbclient now and then never
    sees the reply to a cell that shows a widget, while the kernel sits idle (jupyter/nbclient
    issue 312; seen once here, on lesson 00)."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError
    env = dict(os.environ, TUTORLIB_PROFILE="quick", TUTORLIB_SEED=str(seed),
               MPLBACKEND="module://matplotlib_inline.backend_inline")      # figures, whatever the shell says
    for attempt in range(tries):
        nb = notebook_io.read(path)
        nb.cells.insert(0, nbformat.v4.new_code_cell(SETUP))
        try:
            NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                           resources={"metadata": {"path": str(path.parent)}}).execute(env=env)
            break
        except CellTimeoutError:
            if attempt == tries - 1:
                raise
    nb.cells.pop(0)
    for cell in nb.cells:                               # number the cells as if the setup never ran
        if cell.cell_type == "code" and cell.execution_count:
            cell.execution_count -= 1
            for out in cell.outputs:
                if "execution_count" in out:
                    out["execution_count"] -= 1
    return nb


def _descendants(model_id: str, state: dict) -> list[dict]:
    """A widget's model and its children's, depth first (``state`` is nbclient's widget state)."""
    model = state.get(model_id, {})
    found = [model]
    for child in model.get("state", {}).get("children", []):
        found += _descendants(str(child).removeprefix("IPY_MODEL_"), state)
    return found


def _as_text(model: dict) -> str:
    """One widget as a line of text: a label's text, a bar's fill, a control's value."""
    s, name = model.get("state", {}), model.get("model_name", "")
    if name in ("HTMLModel", "LabelModel"):                            # tqdm pads with figure spaces
        return html.unescape(re.sub(r"<[^>]+>", "", str(s.get("value", "")))).replace("\u2007", " ").strip()
    if name.endswith("ProgressModel"):
        filled = round(10 * s.get("value", 0) / (s.get("max") or 1))
        return "|" + "█" * filled + " " * (10 - filled) + "|"
    if "_options_labels" in s and s.get("index") is not None:          # a dropdown keeps its choice's index
        return f"{s.get('description')} = {s['_options_labels'][s['index']]}"
    if "value" in s and not name.startswith(("Box", "HBox", "VBox", "Output")):
        return f"{s.get('description') or name.removesuffix('Model')} = {s['value']}"
    return ""


def _fallback(view: dict, state: dict) -> list:
    """What to show in place of a widget view: a control's starting values and everything its
    Output widgets showed; for a progress bar, its last line of text."""
    models = _descendants(view["model_id"], state)
    shown = [nbformat.from_dict(o) for m in models if m.get("model_name") == "OutputModel"
             for o in m.get("state", {}).get("outputs", [])]
    text = " ".join(t for t in map(_as_text, models) if t)
    if not shown:
        return [nbformat.v4.new_output("display_data", {"text/plain": text})]
    note = FALLBACK_NOTE + (f"<p class='widget-fallback'><code>{html.escape(text)}</code></p>" if text else "")
    return [nbformat.v4.new_output("display_data", {"text/html": note})] + shown


def static_widgets(nb) -> int:
    """Replace each widget view in ``nb``'s outputs by its static fallback (``_fallback``) and
    drop the widget state. Returns the number of widgets replaced."""
    state = nb.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    replaced = 0
    for cell in nb.cells:
        outputs = []
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(WIDGET_VIEW)
            outputs += [out] if view is None else _fallback(view, state)
            replaced += view is not None
        if "outputs" in cell:
            cell.outputs = outputs
    return replaced


def export_figures(nb, folder: Path) -> list[Path]:
    """Write every PNG the notebook shows as ``folder/in<N>-<j>.png`` (``N`` the cell's
    ``In [N]`` on the page) with ``captions.json`` (each file's alternative text); figures of an
    earlier build of the lesson are removed first. Returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    written, captions = [], {}
    for k, (cell, caption) in enumerate(zip(nb.cells, _captions(nb))):
        pngs = [o["data"]["image/png"] for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
        for j, png in enumerate(pngs):
            written.append(folder / f"in{cell.get('execution_count') or f'cell{k}'}-{j}.png")
            written[-1].write_bytes(base64.b64decode(png))
            captions[written[-1].name] = caption
    (folder / "captions.json").write_text(json.dumps(captions, indent=1, ensure_ascii=False), encoding="utf-8")
    return written


def _page_of(path: Path) -> Path | None:
    """The site page (relative to the site's folder) of a file of the repository, or None."""
    rel = path.relative_to(ROOT)
    if rel == Path("README.md"):
        return Path("index.html")
    if rel.suffix == ".md" and (rel.parts[0] in ("lessons", "grading") or rel == Path("LICENSE-TEXT.md")):
        return rel.with_suffix(".html")
    if rel.suffix == ".ipynb" and rel.parts[0] == "notebooks":
        return rel.with_suffix(".html")
    return None


def links(html_text: str, source: Path, page: Path) -> str:
    """Each relative link in the page made from ``source`` (at ``page`` in the site) points at
    its target's page, or at the file in the repository where the site has no page for it."""
    def fix(m):
        path, _, anchor = m.group(1).partition("#")
        if not path or re.match(r"[a-z]+:", path):
            return m.group(0)
        target = (source.parent / path).resolve()
        if ROOT not in target.parents or not target.exists():      # a link between the site's own pages
            return m.group(0)
        dest = _page_of(target)
        url = (os.path.relpath(dest, page.parent).replace(os.sep, "/") if dest else
               f"{_repository()}/{'tree' if target.is_dir() else 'blob'}/{_branch()}/{target.relative_to(ROOT).as_posix()}")
        return f'href="{url}{"#" + anchor if anchor else ""}"'
    return re.sub(r'href="([^"]*)"', fix, html_text)


@functools.lru_cache(maxsize=None)                      # read once, not once per link
def _repository() -> str:
    return set_repository.repository()


@functools.lru_cache(maxsize=None)
def _branch() -> str:
    return set_repository.branch()


def _captions(nb) -> list[str]:
    """For each cell, the first sentence of the markdown after it: where the course says what
    a figure shows (lesson figures are followed by the sentence that reads them)."""
    captions, following = [], ""
    for cell in reversed(nb.cells):
        captions.append(following)
        if cell.cell_type == "markdown":
            text = re.sub(r"[`*$#]|\[([^]]*)\]\([^)]*\)", lambda m: m.group(1) or "", cell.source)
            following = re.split(r"(?<=[.!?])\s", " ".join(text.split()), maxsplit=1)[0][:300]
    return captions[::-1]


def render_notebook(nb, target: Path, source: Path, out: Path) -> None:
    """nbconvert's HTML of ``nb``, each figure's alternative text the sentence after its cell."""
    from bs4 import BeautifulSoup
    from nbconvert import HTMLExporter
    exporter = HTMLExporter(template_name="lab")
    exporter.log.setLevel("ERROR")                    # our alt texts come after its check
    soup = BeautifulSoup(exporter.from_notebook_node(nb)[0], features="html.parser")
    cells = [d for d in soup.select("div.jp-Cell") if d.find_parent("div", class_="jp-Cell") is None]
    captions = _captions(nb)
    for k, div in enumerate(cells):
        caption = captions[k] if len(cells) == len(captions) else ""
        for img in div.select("div.jp-OutputArea img"):
            img["alt"] = f"A figure: {caption}" if caption else "A figure: the text after this cell describes it"
    nav = (f'<nav style="padding:1rem 2rem;font:16px system-ui,sans-serif"><a href="../index.html">the course</a> · <a href="../lessons/'
           f'{target.stem}.html">the instructor\'s guide</a> · <a href="../figures/index.html">figures for slides</a></nav>')
    soup.body.insert(0, BeautifulSoup(nav, features="html.parser"))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(links(str(soup), source, target.relative_to(out)), encoding="utf-8")


def render_markdown(source: Path, out: Path) -> Path:
    """A Markdown file of the repository as a page of the site in ``out``; a notebook named in
    code (`notebooks/01_x.ipynb`) links to its executed page. Returns the page's path."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune
    page = _page_of(source)
    target = out / page
    text = source.read_text(encoding="utf-8")
    title = next((ln.lstrip("# ") for ln in text.splitlines() if ln.startswith("#")), source.stem)
    notebooks = os.path.relpath("notebooks", page.parent).replace(os.sep, "/")
    body = re.sub(r"(?<!<a href=\")<code>notebooks/([\w.-]+)\.ipynb</code>",
                  lambda m: f'<a href="{notebooks}/{m.group(1)}.html"><code>notebooks/{m.group(1)}.ipynb</code></a>',
                  links(markdown2html_mistune(text), source, page))
    target.parent.mkdir(parents=True, exist_ok=True)
    home = os.path.relpath("index.html", page.parent).replace(os.sep, "/")
    target.write_text(_page(title, home, body), encoding="utf-8")
    return target


def _page(title: str, home: str, body: str) -> str:
    return PAGE.format(title=html.escape(title), home=home, home_dir=home.removesuffix("index.html"), body=body)


def render_figure_index(out: Path) -> Path:
    """``out/figures/index.html``: the figures of every lesson built so far into ``out``, as
    thumbnails linking to their files."""
    parts = ["<h1>Figures for slides</h1><p>Every figure the lessons draw, as PNG files at twice the "
             "screen resolution (CC BY 4.0: credit the course). Each is named after its cell's "
             "<code>In [N]</code> in the lesson's page; click one for the file.</p>"]
    for folder in sorted(p for p in (out / "figures").glob("*") if p.is_dir()):
        captions = json.loads((folder / "captions.json").read_text(encoding="utf-8"))
        parts.append(f'<h2><a href="../notebooks/{folder.name}.html">{html.escape(folder.name)}</a></h2><p>')
        parts += [f'<a href="{folder.name}/{name}"><img src="{folder.name}/{name}" width="300" '
                  f'alt="{html.escape(caption or name, quote=True)}"></a> '
                  for name, caption in captions.items()]
        parts.append("</p>")
    target = out / "figures" / "index.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(_page("Figures for slides", "../index.html", "\n".join(parts)), encoding="utf-8")
    return target


def render_pages(out: Path) -> list[Path]:
    """The README (as the home page), the guides, the quizzes, the class page, the grading
    guide and the text's licence."""
    sources = [ROOT / "README.md", ROOT / "LICENSE-TEXT.md", ROOT / "grading" / "README.md"]
    return [render_markdown(p, out) for p in sources + sorted((ROOT / "lessons").rglob("*.md"))]


def build(notebooks, out: Path, jobs: int = 1, reuse: bool = False, progress=print,
          timeout: int = 900) -> dict:
    """Execute (or, with ``reuse``, read back) and render ``notebooks`` into ``out``, each cell
    within ``timeout`` seconds; render the guides; return {"pages": [...], "figures": {name:
    [...]}, "widgets": {name: n}}."""
    notebooks = [Path(p) for p in notebooks]
    for p in notebooks:
        if p.suffix != ".ipynb" or not p.is_file():
            raise ValueError(f"notebooks: got {str(p)!r}, expected an existing .ipynb file")
    if jobs < 1:
        raise ValueError(f"jobs: got {jobs}, expected 1 or more")
    executed = out / "executed"
    executed.mkdir(parents=True, exist_ok=True)
    todo = [p for p in notebooks if not (reuse and (executed / p.name).is_file())]
    start = time.perf_counter()
    if jobs == 1:
        for k, path in enumerate(todo):
            _execute_to(path, executed / path.name, timeout)
            progress(f"executed {path.name} ({k + 1}/{len(todo)}, {time.perf_counter() - start:.0f} s so far)")
    else:             # processes, not threads: two nbclient runs in one process can deadlock
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            kept = [executed / p.name for p in todo]
            for k, path in enumerate(pool.map(_execute_to, todo, kept, [timeout] * len(todo))):
                progress(f"executed {path.name} ({k + 1}/{len(todo)}, {time.perf_counter() - start:.0f} s so far)")
    result = {"pages": render_pages(out), "figures": {}, "widgets": {}}
    for path in notebooks:
        nb = notebook_io.read(executed / path.name)
        result["widgets"][path.name] = static_widgets(nb)
        result["figures"][path.name] = export_figures(nb, out / "figures" / path.stem)
        render_notebook(nb, out / "notebooks" / f"{path.stem}.html", ROOT / "notebooks" / path.name, out)
        result["pages"].append(out / "notebooks" / f"{path.stem}.html")
    result["pages"].append(render_figure_index(out))
    return result


def _execute_to(path: Path, kept: Path, timeout: int = 900) -> Path:
    """Execute ``path`` and write the executed notebook to ``kept`` (atomically)."""
    notebook_io.write(execute(path, timeout=timeout), kept)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("notebooks", nargs="*", help="notebooks (default: notebooks/*.ipynb)")
    ap.add_argument("--out", default=str(ROOT / "site"), help="the site's folder (default: site/)")
    ap.add_argument("--jobs", type=int, default=1, help="notebooks executed at once (default 1)")
    ap.add_argument("--reuse", action="store_true", help="render from OUT/executed/ where a notebook is there")
    args = ap.parse_args(argv)
    notebooks = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    out = Path(args.out)
    result = build(notebooks, out, jobs=args.jobs, reuse=args.reuse)
    figures = sum(len(v) for v in result["figures"].values())
    print(f"{len(result['pages'])} pages, {figures} figures, {sum(result['widgets'].values())} widgets "
          f"shown at their starting values: open {out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
