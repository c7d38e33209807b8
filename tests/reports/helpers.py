"""Generated runs straight into a warehouse with the library's own ingest, summary and
verdict code (no Dagster): fast inputs for the report functions."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from metrics_pipeline.analysis.summary import summarize_requests
from metrics_pipeline.analysis.verdicts import judge_run
from metrics_pipeline.evaluation.demo_data import DemoRun, demo_runs
from metrics_pipeline.ingest.files import ingest_paths, validate_run
from metrics_pipeline.storage import Warehouse

# Markup and Markdown control characters, a newline included, in one endpoint name.
HOSTILE_ENDPOINT = "/api/<script>window.pwned=1</script>|*bold*_x_[link](y)`code`\nline2"
HOSTILE_TAG = "<img src=x onerror=alert(1)>|*_[t]`"


def renamed(runs: list[DemoRun], old: str, new: str, tags: dict | None = None) -> list[DemoRun]:
    """The same runs with endpoint ``old`` called ``new`` (and extra manifest tags)."""
    out = []
    for run in runs:
        records = [r | {"endpoint": new} if r["endpoint"] == old else r for r in run.records]
        manifest = run.manifest.model_copy(update={"tags": run.manifest.tags | (tags or {})})
        out.append(replace(run, manifest=manifest, records=records))
    return out


def load_runs(warehouse: Warehouse, runs: list[DemoRun], folder: Path) -> None:
    """Ingest and validate every run, summarise it and judge it against all the runs before
    it."""
    for i, run in enumerate(runs):
        run_id = run.manifest.run_id
        ingest_paths([run.write(folder) / "requests.ndjson"], run.manifest, warehouse)
        validate_run(warehouse, run.manifest)
        warehouse.write_partition(
            "run_summary", run_id, summarize_requests(warehouse.read("requests", [run_id]))
        )
        baseline = [r.manifest.run_id for r in runs[:i]]
        warehouse.write_partition(
            "run_baselines",
            run_id,
            pl.DataFrame({"run_id": run_id, "baseline_run_id": baseline, "position": range(i)}),
        )
        verdicts = judge_run(
            warehouse.read("requests", [run_id]), warehouse.read("requests", baseline), baseline
        )
        warehouse.write_partition("verdicts", run_id, verdicts)


def small_runs(count: int = 3, **kwargs) -> list[DemoRun]:
    return demo_runs(count, duration_s=kwargs.pop("duration_s", 20.0), **kwargs)


@pytest.fixture(scope="module", name="hostile")
def hostile_fixture(tmp_path_factory) -> tuple[Warehouse, list[DemoRun]]:
    """Three runs; ``/api/orders`` is called :data:`HOSTILE_ENDPOINT` and is 60 % slower in
    the last run, whose manifest has a hostile tag. (A fixture here, not in a conftest.py:
    ``conftest`` is the name the tests import the shared helpers from.)"""
    folder: Path = tmp_path_factory.mktemp("hostile")
    runs = renamed(small_runs(3), "/api/orders", HOSTILE_ENDPOINT, {"note": HOSTILE_TAG})
    warehouse = Warehouse(folder / "warehouse")
    load_runs(warehouse, runs, folder / "runs")
    return warehouse, runs
