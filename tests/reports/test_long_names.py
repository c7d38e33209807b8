"""A 5,000-character endpoint (one made the PDF take 9 minutes): the ingest stores it
cut to 512 characters, and every report shows at most 80 of them, in tables, text and charts,
while two long names stay two endpoints."""

from __future__ import annotations

import pytest
from helpers import load_runs, renamed, small_runs

from metrics_pipeline.common.text import DISPLAY_CHARS, display_name, display_names
from metrics_pipeline.reports import executive_summary, gather_run, run_document
from metrics_pipeline.storage import Warehouse

LONG = "/api/orders?filter=" + "x" * 4981  # 5,000 characters
OTHER = LONG[:-1] + "y"  # the same but for its last character


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("long-names")
    runs = renamed(renamed(small_runs(3), "/api/orders", LONG), "/api/items", OTHER)
    warehouse = Warehouse(folder / "warehouse")
    load_runs(warehouse, runs, folder / "runs")
    data = gather_run(warehouse, runs[-1].manifest.run_id)
    return data, executive_summary(data), run_document(data)


def strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return []


def test_the_warehouse_keeps_the_names_cut_at_ingest_and_apart(report):
    data, _, _ = report
    stored = [e for e in data.summary["endpoint"] if e.startswith("/api/orders?filter=")]
    assert len(stored) == 2 and all(len(e) == 512 for e in stored)


def test_no_table_cell_or_chart_label_shows_more_than_80_characters(report):
    _, _, document = report
    cells = [cell for s in document.sections for t in s.tables for row in t.rows for cell in row]
    long_cells = [c for c in cells if c.startswith("/api/orders?filter=")]
    assert long_cells and all(len(c) == DISPLAY_CHARS for c in long_cells)
    assert len(set(long_cells)) == 2  # the two endpoints differ at their end: still visible
    charted = [s for section in document.sections for c in section.charts for s in strings(c.spec)]
    assert set(long_cells) <= set(charted)  # the charts' labels are the tables' names
    assert not [s for s in charted if "x" * 60 in s]
    assert len(document.banner.headline) < 200 and len(document.lead) < 2000


def test_the_summary_shows_names_cut_to_80_characters(report):
    _, summary, _ = report
    assert "x" * 100 not in summary
    assert "/api/orders?filter=" in summary


def test_display_names_are_one_line_short_and_distinct():
    assert display_name("a\nb") == "a b"
    assert display_name("/short") == "/short"
    shown = display_name(LONG)
    assert len(shown) == DISPLAY_CHARS and shown.startswith("/api/orders?filter=x")
    assert "…" in shown and shown.endswith("x")
    labels = display_names([LONG, OTHER, LONG[:-1] + "x "])  # the last looks like LONG
    assert len(set(labels.values())) == 3
    assert all(len(label) <= DISPLAY_CHARS for label in labels.values())
