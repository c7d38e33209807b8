"""`compare` on every tool's real output: a file against itself finds nothing; against a copy
with one endpoint 60 % slower (well beyond two runs' assumed 10 % noise) it finds exactly that
endpoint."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from metrics_pipeline.cli.main import app

runner = CliRunner()
FACTOR = 1.6


def scale_k6_ndjson(text: str) -> str:
    lines = []
    for line in text.splitlines():
        record = json.loads(line)
        data = record.get("data", {})
        if (
            record.get("metric") == "http_req_duration"
            and (data.get("tags") or {}).get("name") == "slow"
        ):
            data["value"] *= FACTOR
        lines.append(json.dumps(record))
    return "\n".join(lines) + "\n"


def scale_k6_summary(text: str) -> str:
    document = json.loads(text)
    metric = document["metrics"]["http_req_duration{name:slow}"]
    values = metric.get("values", metric)  # handleSummary wraps them, the export does not
    for key, value in values.items():
        if key != "count" and isinstance(value, float | int) and not isinstance(value, bool):
            values[key] = value * FACTOR
    return json.dumps(document)


def scale_csv(columns: set[str], key: str, endpoint: str) -> Callable[[str], str]:
    def scale(text: str) -> str:
        rows = list(csv.reader(io.StringIO(text)))
        header = rows[0]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        for row in rows[1:]:
            if row[header.index(key)] == endpoint:
                row = [
                    str(float(v) * FACTOR) if name in columns and v not in {"", "N/A"} else v
                    for name, v in zip(header, row, strict=True)
                ]
            writer.writerow(row)
        return out.getvalue()

    return scale


LOCUST_LATENCY = {
    "50%",
    "66%",
    "75%",
    "80%",
    "90%",
    "95%",
    "98%",
    "99%",
    "99.9%",
    "99.99%",
    "100%",
    "Median Response Time",
    "Average Response Time",
    "Min Response Time",
    "Max Response Time",
    "Total Median Response Time",
    "Total Average Response Time",
    "Total Min Response Time",
    "Total Max Response Time",
}


def scale_locust_json(text: str) -> str:
    entries = json.loads(text)
    for entry in entries:
        if entry["name"] == "/api/slow":
            entry["response_times"] = {
                str(round(float(k) * FACTOR)): v for k, v in entry["response_times"].items()
            }
            for key in ("total_response_time", "max_response_time", "min_response_time"):
                entry[key] *= FACTOR
    return json.dumps(entries)


def scale_artillery(text: str) -> str:
    document = json.loads(text)
    for period in [document["aggregate"], *document["intermediate"]]:
        summary = period["summaries"].get("plugins.metrics-by-endpoint.response_time./api/slow")
        if summary:
            for key in summary:
                if key != "count":
                    summary[key] *= FACTOR
    return json.dumps(document)


CASES = {
    "k6 ndjson": ("k6/k6_out.json.gz", scale_k6_ndjson, "slow"),
    "k6 summary export": ("k6/k6_summary_export.json", scale_k6_summary, "slow"),
    "k6 handleSummary": ("k6/k6_handle_summary.json", scale_k6_summary, "slow"),
    "jmeter": (
        "jmeter/results.jtl",
        scale_csv({"elapsed", "Latency"}, "label", "GET /api/slow"),
        "GET /api/slow",
    ),
    "locust requests": ("locust/requests.ndjson", None, "/api/slow"),
    "locust stats": (
        "locust/locust_stats.csv",
        scale_csv(LOCUST_LATENCY, "Name", "/api/slow"),
        "/api/slow",
    ),
    "locust history": (
        "locust/locust_stats_history.csv",
        scale_csv(LOCUST_LATENCY, "Name", "/api/slow"),
        "/api/slow",
    ),
    "locust json": ("locust/locust_stdout.json", scale_locust_json, "/api/slow"),
    "artillery": ("artillery/report.json", scale_artillery, "/api/slow"),
}


def read_text(path: Path) -> str:
    raw = path.read_bytes()
    return gzip.decompress(raw).decode() if path.suffix == ".gz" else raw.decode()


def scale_locust_requests(text: str) -> str:
    lines = []
    for line in text.splitlines():
        record = json.loads(line)
        if record["name"] == "/api/slow":
            record["response_time"] *= FACTOR
        lines.append(json.dumps(record))
    return "\n".join(lines) + "\n"


def verdicts(baseline: Path, candidate: Path) -> tuple[int, list[dict]]:
    result = runner.invoke(app, ["compare", str(baseline), str(candidate), "--json"])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


@pytest.mark.parametrize("case", list(CASES))
def test_compare_per_tool(case, fixtures_dir, tmp_path):
    relative, scale, endpoint = CASES[case]
    source = fixtures_dir / relative
    code, same = verdicts(source, source)
    assert code == 0 and same and not any(v["regression"] for v in same)

    scale = scale or scale_locust_requests
    copy = tmp_path / source.name.removesuffix(".gz")
    copy.write_text(scale(read_text(source)))
    code, slowed = verdicts(source, copy)
    flagged = {v["endpoint"] for v in slowed if v["regression"]}
    assert code == 1 and flagged == {endpoint}, slowed
    p50 = next(v for v in slowed if v["endpoint"] == endpoint and v["metric"] == "latency_p50")
    assert p50["change"] == pytest.approx(FACTOR - 1, abs=0.06)
