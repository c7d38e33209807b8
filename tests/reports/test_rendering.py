"""The HTML in a real headless Chromium and the PDF through pdftoppm (poppler)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from conftest import chromium, service_unavailable
from helpers import HOSTILE_ENDPOINT, hostile_fixture  # noqa: F401 (fixture)
from PIL import Image

from metrics_pipeline.reports import gather_run, render_html, render_pdf, run_document

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def document(hostile):
    warehouse, runs = hostile
    last = runs[-1].manifest
    return run_document(gather_run(warehouse, last.run_id, last.tags))


def test_html_draws_its_charts_offline_without_errors(document, tmp_path):
    page_file = tmp_path / "report.html"
    page_file.write_text(render_html(document))
    errors, requests = [], []
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(page_file.as_uri(), wait_until="load")
        charts = sum(len(s.charts) for s in document.sections)
        page.wait_for_function(
            f"document.querySelectorAll('div.vega svg.marks').length === {charts}",
            timeout=30_000,
        )
        sizes = page.evaluate(
            "() => [...document.querySelectorAll('div.vega svg.marks')]"
            ".map(s => { const r = s.getBoundingClientRect(); return [r.width, r.height]; })"
        )
        marks = page.evaluate(
            "() => document.querySelectorAll('div.vega svg.marks path, "
            "div.vega svg.marks line').length"
        )
        pwned = page.evaluate("() => window.pwned === undefined")
        headline = page.inner_text(".banner .headline")
        text = page.inner_text("body")
        chart = page.locator("#chart-comparison")
        chart.screenshot(path=str(tmp_path / "comparison.png"))
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert errors == []
    assert requests == [page_file.as_uri()]  # nothing fetched from anywhere else
    assert all(w > 100 and h > 50 for w, h in sizes), sizes
    assert marks > 50
    assert pwned
    # The regression is the first thing on the page, with the (escaped) endpoint name.
    assert headline.startswith("REGRESSION: ") and " ".join(HOSTILE_ENDPOINT.split()) in headline
    assert "<script>window.pwned=1</script>" in text
    image = Image.open(tmp_path / "comparison.png").convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20)
    non_white = sum(n for n, rgb in colours if min(rgb) < 240)
    assert len(colours) > 20 and non_white > 2000, (len(colours), non_white)
    red = sum(n for n, (r, g, b) in colours if r > 150 and g < 90 and b < 90)
    assert red > 20  # the regressed endpoint's marks are drawn in red


def test_pdf_pages_render_with_contents_and_page_numbers(document, tmp_path):
    for tool in ("pdftoppm", "pdfinfo", "pdftotext"):
        if shutil.which(tool) is None:
            service_unavailable(f"{tool} (poppler-utils) is not installed")
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(render_pdf(document))
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True)
    pages = int(re.search(r"^Pages:\s+(\d+)", info.stdout, re.M)[1])
    assert pages >= 2
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(pdf), str(tmp_path / "page")], check=True)
    images = sorted(tmp_path.glob("page-*.png"))
    assert len(images) == pages
    assert all(Image.open(image).size[0] > 200 for image in images)

    def text(page: int) -> str:
        return subprocess.run(
            ["pdftotext", "-layout", "-f", str(page), "-l", str(page), str(pdf), "-"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    first = text(1)
    # Contents: every section with the page it starts on; each page has "Page n of m".
    for number, section in enumerate(document.sections, start=1):
        match = re.search(rf"{number}\. {re.escape(section.title)}[ .]*(\d+)\s*$", first, re.M)
        assert match, (section.title, first)
        start = int(match[1])
        assert 2 <= start <= pages
        assert section.title in text(start)
    assert f"Page 1 of {pages}" in first and f"Page {pages} of {pages}" in text(pages)
    # The hostile name is text in the PDF, not markup.
    everything = subprocess.run(
        ["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "<script>window.pwned=1</script>" in everything
    # Nothing runs off the page: every word (chart labels and legends included, drawn as text)
    # lies within the 14 mm side margins of print.css.
    boxes = subprocess.run(
        ["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    margin = 14 / 25.4 * 72  # points
    for number, page in enumerate(boxes.split("<page ")[1:], start=1):
        width = float(re.search(r'width="([\d.]+)"', page)[1])
        words = re.findall(
            r'<word xMin="([-\d.]+)" yMin="[^"]*" xMax="([-\d.]+)"[^>]*>([^<]*)', page
        )
        outside = [
            w for x0, x1, w in words if float(x0) < margin - 1 or float(x1) > width - margin + 1
        ]
        assert not outside, (number, outside[:5])
