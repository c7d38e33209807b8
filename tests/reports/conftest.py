"""A small warehouse of generated runs, the last with a hostile endpoint name slowed down."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import HOSTILE_ENDPOINT, HOSTILE_TAG, load_runs, renamed, small_runs

from metrics_pipeline.demo_data import DemoRun
from metrics_pipeline.storage import Warehouse


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[Warehouse, list[DemoRun]]:
    """Three runs; ``/api/orders`` is called :data:`HOSTILE_ENDPOINT` and is 30 % slower in
    the last run, whose manifest has a hostile tag."""
    folder: Path = tmp_path_factory.mktemp("hostile")
    runs = renamed(small_runs(3), "/api/orders", HOSTILE_ENDPOINT, {"note": HOSTILE_TAG})
    warehouse = Warehouse(folder / "warehouse")
    load_runs(warehouse, runs, folder / "runs")
    return warehouse, runs
