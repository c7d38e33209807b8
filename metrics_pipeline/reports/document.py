"""The content of a report, independent of its format.

A report is built once as a :class:`Document` (plain strings, numbers already formatted) and
rendered to HTML (interactive charts) and to PDF (static charts, table of contents, page
numbers) by :mod:`metrics_pipeline.reports.render`. Text is kept raw here: every renderer
escapes it for its own format, so a hostile endpoint name cannot inject markup anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Chart:
    """A Vega-Lite specification (with its data inlined) and a caption."""

    id: str
    title: str
    spec: dict[str, Any]
    caption: str = ""


@dataclass(frozen=True)
class Table:
    """Rows of already formatted cells; ``classes`` marks rows (e.g. ``regression``)."""

    columns: list[str]
    rows: list[list[str]]
    classes: list[str] = field(default_factory=list)
    caption: str = ""
    # The number of rows left out (the full table is in the raw data).
    more: int = 0


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)


@dataclass(frozen=True)
class Banner:
    """The headline at the top of a report: ``level`` is regression, trade-off, pass, info."""

    level: str
    headline: str
    detail: str = ""


@dataclass(frozen=True)
class Document:
    title: str
    banner: Banner
    facts: list[tuple[str, str]]
    sections: list[Section]
    # The executive summary's closing paragraph, shown under the banner.
    lead: str = ""
