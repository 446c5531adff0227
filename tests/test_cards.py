"""tutorlib.course.cards: the paper card's table."""
import pytest

from tutorlib.course import cards


def test_table_has_one_row_per_difference():
    card = cards.paper_card([("lr", "5e-4", 0.001, "a CPU budget"), ("decay", "0.2", "0.1", "a|b")], title="CLIP")
    lines = str(card).splitlines()
    assert lines[0] == "**CLIP**" and lines[2].startswith("| | official | here | why |")
    assert lines[4] == "| lr | 5e-4 | 0.001 | a CPU budget |"
    assert "a\\|b" in lines[5]                       # a pipe cannot break the table
    assert card._repr_markdown_() == str(card)


@pytest.mark.parametrize("rows", [[], [("only", "three", "cells")], ["not a tuple"]])
def test_bad_rows(rows):
    with pytest.raises(ValueError, match="rows"):
        cards.paper_card(rows)
