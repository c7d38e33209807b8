"""Text from the data made inert in Markdown: one escaper for tables, reports and the UI."""

from __future__ import annotations

import pytest

from metrics_pipeline.common.text import md, md_table, one_line


def escaped_everywhere(text: str, char: str) -> bool:
    """Every ``char`` in ``text`` is preceded by an odd number of backslashes."""
    for i, c in enumerate(text):
        if c == char:
            slashes = len(text[:i]) - len(text[:i].rstrip("\\"))
            if slashes % 2 == 0:
                return False
    return True


@pytest.mark.parametrize(
    "text",
    [
        "<script>alert(1)</script>",
        "/api/a|b",
        "\\|",
        "\\<img src=x onerror=alert(1)>",
        "[x](javascript:alert(1))",
    ],
)
def test_md_makes_html_and_pipes_inert(text):
    out = md(text)
    for char in "<>|[]":
        assert escaped_everywhere(out, char), (text, out, char)
    assert "<script>" not in out
    # Undoing the backslash escapes gives the original text back: nothing is lost.
    unescaped = []
    chars = iter(out)
    for c in chars:
        unescaped.append(next(chars) if c == "\\" else c)
    assert "".join(unescaped) == text


def test_md_removes_newlines():
    assert "\n" not in md("a\nb|c")


def test_md_removes_carriage_returns():
    assert "\r" not in md("/a\r| injected | row |")


def test_one_line_and_tables():
    assert one_line("a\n\tb\r c") == "a b c"
    assert md_table(["x", "y"], [[md("a|b"), "1"]]) == "| x | y |\n|---|---|\n| a\\|b | 1 |"
