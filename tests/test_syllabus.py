"""The syllabus is complete: every notebook has its guide and the other way round, and
lessons/README.md lists every lesson with its prerequisites, time and expected results."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = {p.stem: p for p in (ROOT / "notebooks").glob("*.ipynb")}
GUIDES = {p.stem: p for p in (ROOT / "lessons").glob("[0-9][0-9]_*.md")}
SECTIONS = ("Objectives", "equations", "Timing plan", "Discussion questions",
            "What students should see", "Pitfalls", "Solutions")


def syllabus_rows() -> dict[str, list[str]]:
    rows = {}
    for line in (ROOT / "lessons" / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"\d\d", cells[0]):
            rows[cells[0]] = cells
    return rows


def test_every_notebook_has_its_guide_and_every_guide_its_notebook():
    assert len(NOTEBOOKS) == 10
    assert set(NOTEBOOKS) == set(GUIDES), (sorted(NOTEBOOKS), sorted(GUIDES))


@pytest.mark.parametrize("stem", sorted(GUIDES))
def test_guide_points_at_its_notebook_and_has_every_section(stem):
    text = GUIDES[stem].read_text()
    header = text[:600]
    assert f"`notebooks/{stem}.ipynb`" in header
    assert re.search(r"\*\*time\*\*: \d+ minutes", header) and "**prerequisites**" in header
    headings = [h for h in re.findall(r"^#{2,3} (.+)$", text, re.M)]
    for section in SECTIONS:
        assert any(section in h for h in headings), f"{GUIDES[stem].name} has no '{section}' section"


def test_syllabus_lists_every_lesson_with_time_prerequisites_and_results():
    rows = syllabus_rows()
    assert sorted(rows) == sorted(stem[:2] for stem in NOTEBOOKS)
    for number, (_, lesson, prerequisites, minutes, results) in rows.items():
        stem = next(s for s in GUIDES if s.startswith(number))
        assert f"]({stem}.md)" in lesson, f"row {number} does not link lessons/{stem}.md"
        assert prerequisites and re.fullmatch(r"\d+ min", minutes)
        guide_minutes = re.search(r"\*\*time\*\*: (\d+) minutes", GUIDES[stem].read_text()).group(1)
        assert minutes == f"{guide_minutes} min", f"row {number}: {minutes} vs the guide's {guide_minutes} minutes"
        assert len(results) > 40 and "to come" not in results
    assert "make student" in (ROOT / "lessons" / "README.md").read_text()
