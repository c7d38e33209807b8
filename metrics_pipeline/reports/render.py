"""Render a :class:`~metrics_pipeline.reports.document.Document` to HTML and to PDF.

The HTML is self-contained: the Vega/Vega-Lite/vega-embed bundle that vl-convert ships is
inlined once and every chart's specification (with its data) sits in a JSON script element,
so the page draws its charts offline. The PDF uses the same template with static SVG charts
rendered by vl-convert, a table of contents with page numbers and a page counter (WeasyPrint).
Templates autoescape: text from the data (endpoint names, tags) is never markup.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from metrics_pipeline.common.errors import MetricsPipelineError
from metrics_pipeline.reports.document import Document


class ReportRenderError(MetricsPipelineError, RuntimeError):
    """A report could not be rendered (a chart or the PDF engine failed)."""


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("metrics_pipeline.reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "metrics-pipeline"


@cache
def _vega_bundle() -> Markup:
    """vl-convert's vega-embed bundle. Building it takes seconds (a JavaScript bundler runs),
    so it is kept in the user's cache folder, one file per vl-convert version."""
    import vl_convert

    cached = _cache_dir() / f"vega-embed-{vl_convert.__version__}.js"
    try:
        bundle = cached.read_text()
    except OSError:
        bundle = vl_convert.javascript_bundle()
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=cached.parent, prefix=".vega-embed-")
            with os.fdopen(fd, "w") as out:
                out.write(bundle)
            os.replace(tmp, cached)
        except OSError:
            pass  # a read-only home only costs the bundling time again
    # Inlined in a <script> element: the bundle itself must not be able to close it.
    if "</script" in bundle.lower() or "window.vegaEmbed" not in bundle:
        raise ReportRenderError("the vega-embed bundle is unusable: delete " + str(cached))
    return Markup(bundle)


def script_json(value: Any) -> Markup:
    """JSON safe inside a ``<script>`` element: ``<``, ``>`` and ``&`` become unicode escapes,
    so data such as an endpoint named ``</script>`` cannot end the element."""
    text = json.dumps(value, allow_nan=False, default=str)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    return Markup(text)


def render_html(doc: Document) -> str:
    """The interactive report: one HTML file, no external resources."""
    specs = {chart.id: script_json(chart.spec) for s in doc.sections for chart in s.charts}
    return (
        _environment()
        .get_template("report.html.j2")
        .render(doc=doc, pdf=False, specs=specs, vega_bundle=_vega_bundle())
    )


def chart_svg(spec: dict[str, Any]) -> str:
    """A Vega-Lite specification as a static SVG (vl-convert, no browser)."""
    import vl_convert

    try:
        return vl_convert.vegalite_to_svg(spec)
    except Exception as exc:  # vl-convert raises plain ValueError/RuntimeError with a message
        raise ReportRenderError(f"chart could not be rendered: {exc}") from exc


def render_print_html(doc: Document) -> str:
    """The HTML the PDF is made of: static SVG charts, print CSS, no scripts."""
    svgs = {
        chart.id: "data:image/svg+xml;base64,"
        + base64.b64encode(chart_svg(chart.spec).encode()).decode()
        for section in doc.sections
        for chart in section.charts
    }
    return _environment().get_template("report.html.j2").render(doc=doc, pdf=True, svgs=svgs)


def render_pdf(doc: Document) -> bytes:
    """The paginated report: table of contents with page numbers, ``Page n of m`` footers."""
    import weasyprint
    from weasyprint.urls import URLFetcher

    # Everything the PDF shows is inlined as data: URLs; refusing every other protocol keeps
    # rendering offline and makes sure nothing in the data can make WeasyPrint read a file.
    fetcher = URLFetcher(allowed_protocols={"data"}, fail_on_errors=True)
    html = weasyprint.HTML(string=render_print_html(doc), url_fetcher=fetcher)
    return html.write_pdf()
