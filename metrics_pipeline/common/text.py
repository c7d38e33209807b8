"""Text from the data (endpoint names, tags, summaries) made safe for Markdown."""

from __future__ import annotations

# Characters that start Markdown syntax in the middle of a line (emphasis, code, links, images,
# raw HTML, entities, table cells, strike-through) plus the escape itself. Parentheses stay:
# without an unescaped "]" before them they are plain text, and "regression(s)" stays readable.
MD_SPECIAL = "\\`*_[]<>|~&"


def one_line(text: object) -> str:
    """User text on one line (endpoint names may contain newlines and carriage returns)."""
    return " ".join(str(text).split())


def md(text: object) -> str:
    """Text from the data made inert in the middle of a Markdown line, tables included: every
    character that could start Markdown syntax is backslash-escaped, line breaks become spaces.
    Callers never start a line with it (where ``#``, ``-`` or ``1.`` would matter)."""
    return "".join("\\" + c if c in MD_SPECIAL else c for c in one_line(text))


def md_table(columns: list[str], rows: list[list[str]]) -> str:
    """A Markdown table of cells that are already escaped (see :func:`md`)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
