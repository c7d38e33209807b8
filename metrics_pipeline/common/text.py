"""Text from the data (endpoint names, tags, summaries) made safe for Markdown, and names cut
to a length reports can lay out."""

from __future__ import annotations

from collections.abc import Iterable

# Characters that start Markdown syntax in the middle of a line (emphasis, code, links, images,
# raw HTML, entities, table cells, strike-through) plus the escape itself. Parentheses stay:
# without an unescaped "]" before them they are plain text, and "regression(s)" stays readable.
MD_SPECIAL = "\\`*_[]<>|~&"


def one_line(text: object) -> str:
    """User text on one line (endpoint names may contain newlines and carriage returns)."""
    return " ".join(str(text).split())


# Characters of a name as reports show it: a table cell or chart label of one or two lines. The
# stored name (up to ReadLimits.max_name_chars, 512) stays in the tables and raw.jsonl.
DISPLAY_CHARS = 80


def display_name(text: object, width: int = DISPLAY_CHARS) -> str:
    """A name from the data (endpoint, scenario, host, metric, error) as reports and the CLI
    show it: on one line and at most ``width`` characters.

    A longer name keeps its beginning and its end around an ellipsis, because names of one
    family (URLs with query strings, a name cut at ingest with its digest) differ at the end.
    Laying out a name of thousands of characters took minutes in the PDF.
    """
    line = one_line(text)
    if len(line) <= width:
        return line
    head = (width - 1) * 2 // 3
    return f"{line[:head]}…{line[len(line) - (width - 1 - head) :]}"


def display_names(names: Iterable[object], width: int = DISPLAY_CHARS) -> dict[object, str]:
    """:func:`display_name` of each distinct name, kept distinct: where two names would look
    the same, the later ones get `` #2``, `` #3``... (charts group by what they show, so equal
    labels would merge two endpoints' lines)."""
    shown: dict[object, str] = {}
    taken: set[str] = set()
    for name in dict.fromkeys(names):
        label = display_name(name, width)
        copy = 1
        while label in taken:
            copy += 1
            suffix = f" #{copy}"
            label = display_name(name, max(width - len(suffix), 1)) + suffix
        taken.add(label)
        shown[name] = label
    return shown


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
