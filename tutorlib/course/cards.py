"""Paper cards: the "official / here / why" table every lesson shows beside its method.

    cards.paper_card([("optimiser", "AdamW, lr 5e-4", f"AdamW, lr {r['lr']:g}", "a CPU budget")])

The "here" column is meant to be formatted from the recipe the lesson runs (never typed
twice), so the card cannot drift from the code.
"""
from __future__ import annotations


class Card(str):
    """A Markdown table: shown rendered in a notebook, and as plain text anywhere else."""

    def _repr_markdown_(self) -> str:
        return str(self)

    def __repr__(self) -> str:
        return str(self)


def _cell(x) -> str:
    text = f"{x:g}" if isinstance(x, float) else str(x)
    return text.replace("|", "\\|").replace("\n", " ")


def paper_card(rows, title: str | None = None) -> Card:
    """A Markdown table with one row per difference from the paper's official code.

    ``rows``: ``(what, official, here, why)`` tuples, e.g. ``("weight decay", "0.2, not on
    gains or biases", "0.1, same rule", "a smaller model")``; floats are written with
    ``:g``. Returns a ``Card`` (a ``str``) that a notebook renders as a table."""
    rows = list(rows)
    if not rows:
        raise ValueError("rows: got no rows, expected (what, official, here, why) tuples")
    for i, row in enumerate(rows):
        if not isinstance(row, (tuple, list)) or len(row) != 4:
            raise ValueError(f"rows[{i}]: got {row!r}, "
                             "expected a (what, official, here, why) tuple")
    lines = [f"**{title}**", ""] if title else []
    lines += ["| | official | here | why |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(_cell(x) for x in row) + " |" for row in rows]
    return Card("\n".join(lines))
