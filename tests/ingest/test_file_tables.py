"""What the file tables say of a run's files."""

from __future__ import annotations

from datetime import UTC, datetime

from metrics_pipeline.contracts.manifest import RunManifest
from metrics_pipeline.formats import kept_as
from metrics_pipeline.ingest.files import ingest_files


def test_a_k6_files_accepted_lines_are_told_apart_from_its_rows(fixtures_dir, warehouse):
    # k6 writes a line per point of every metric: 44,877 lines read and accepted, of which
    # 3,984 are requests and 40 resource samples (the rest are metric declarations and
    # points not stored); the file tables said only "44877 accepted".
    path = fixtures_dir / "k6" / "k6_out.json.gz"
    manifest = RunManifest(
        run_id="k6-1",
        suite="shop",
        scenario="browse",
        environment="ci",
        started_at=datetime(2020, 1, 1, tzinfo=UTC),
    )
    report = ingest_files([(path.name, lambda: path.open("rb"))], manifest, warehouse)
    (file,) = report.files
    assert file["rows_read"] == file["rows_accepted"] == 44_877
    assert file["rows_kept"] == {"requests": 3984, "resources": 40}
    assert kept_as(file) == "3,984 requests, 40 resources"
    assert file["rows_kept"]["requests"] == warehouse.read("requests", ["k6-1"]).height
    assert kept_as({"rows_kept": {}}) == "nothing"
