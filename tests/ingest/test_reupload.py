"""Re-uploads replace a run exactly, and every version of an upload is recorded."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from metrics_pipeline.evaluation.demo_data import demo_runs
from metrics_pipeline.ingest.discovery import scan_uploads
from metrics_pipeline.ingest.files import ingest_from_store
from metrics_pipeline.upload.uploader import upload_run

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def split(run, folder):
    """The run's requests as two files, ``a.ndjson`` and ``b.ndjson``."""
    lines = (run.write(folder) / "requests.ndjson").read_text().splitlines(keepends=True)
    half = len(lines) // 2
    (folder / "a.ndjson").write_text("".join(lines[:half]))
    (folder / "b.ndjson").write_text("".join(lines[half:]))
    return folder / "a.ndjson", folder / "b.ndjson", half, len(lines) - half


def test_a_reupload_with_fewer_files_replaces_the_run_exactly(store, warehouse, tmp_path):
    (run,) = demo_runs(1, duration_s=10.0)
    run_id = run.manifest.run_id
    a, b, rows_a, rows_b = split(run, tmp_path)
    upload_run(store, [a, b], run.manifest)
    ingest_from_store(store, warehouse, run_id, now=NOW)
    assert warehouse.read("requests", [run_id]).height == rows_a + rows_b

    # The second upload has only a.ndjson: b.ndjson of the first must not be read again.
    upload_run(store, [a], run.manifest)
    assert [info.key.rsplit("/", 1)[1] for info in store.list(f"raw/{run.manifest.suite}/")] == [
        "a.ndjson",
        "run.json",
    ]
    second = ingest_from_store(store, warehouse, run_id, now=NOW)
    assert warehouse.read("requests", [run_id]).height == rows_a
    versions = warehouse.read("upload_versions", [run_id]).sort("file_count")
    assert versions["file_count"].to_list() == [1, 2]
    assert versions["version"].n_unique() == 2
    # The catalog row names the version that is in the warehouse now: the second.
    assert warehouse.read("runs", [run_id])["upload_version"][0] == versions["version"][0]
    assert json.loads(versions["files"][0]) == [{"name": "a.ndjson", "size": a.stat().st_size}]
    assert versions["uploaded_by"].drop_nulls().len() == 2
    assert second.ignored == []


def test_objects_not_in_the_manifest_are_ignored_and_reported(store, warehouse, tmp_path):
    (run,) = demo_runs(1, duration_s=10.0)
    run_id = run.manifest.run_id
    a, b, rows_a, _ = split(run, tmp_path)
    upload_run(store, [a], run.manifest)
    # A file put there by hand, after the upload, is not part of the run its manifest lists.
    prefix = store.run_prefix(run.manifest.suite, run_id)
    store.put_file(prefix + "b.ndjson", b)
    report = ingest_from_store(store, warehouse, run_id, now=NOW)
    assert warehouse.read("requests", [run_id]).height == rows_a
    assert report.ignored == ["b.ndjson"]


def test_a_listed_file_that_is_missing_or_cut_short_is_a_file_error(store, warehouse, tmp_path):
    (run,) = demo_runs(1, duration_s=10.0)
    run_id = run.manifest.run_id
    a, b, rows_a, _ = split(run, tmp_path)
    upload_run(store, [a, b], run.manifest)
    prefix = store.run_prefix(run.manifest.suite, run_id)
    store.put_bytes(prefix + "b.ndjson", b.read_bytes()[:100])  # cut short
    report = ingest_from_store(store, warehouse, run_id, now=NOW)
    assert warehouse.read("requests", [run_id]).height == rows_a
    (error,) = report.file_errors
    assert error.startswith("b.ndjson: 100 bytes, run.json says")
    row = warehouse.read("runs", [run_id]).row(0, named=True)
    assert row["valid"] is False  # fail closed until validated

    store.delete(prefix + "b.ndjson")
    report = ingest_from_store(store, warehouse, run_id, now=NOW)
    assert report.file_errors == ["b.ndjson: listed in run.json but not uploaded"]


def test_a_reupload_is_not_seen_until_its_manifest_is_written_again(store, tmp_path):
    (run,) = demo_runs(1, duration_s=10.0)
    a, b, _, _ = split(run, tmp_path)
    upload_run(store, [a, b], run.manifest)
    scan = scan_uploads(store, None)
    assert [u.run_id for u in scan.uploads] == [run.manifest.run_id]
    # The uploader removes run.json before it changes files: mid-way the run is incomplete.
    prefix = store.run_prefix(run.manifest.suite, run.manifest.run_id)
    store.delete(prefix + "run.json")
    store.put_file(prefix + "a.ndjson", b)
    assert scan_uploads(store, scan.cursor).uploads == []
    upload_run(store, [b], run.manifest)
    (again,) = scan_uploads(store, scan.cursor).uploads
    assert again.version != scan.uploads[0].version
    assert again.run_id == run.manifest.run_id


def test_a_run_id_names_one_run_across_suites(store, tmp_path):
    # Both uploads were taken and the ingest of either id read whichever suite sorts first:
    # the other run was lost without a word.
    import pytest

    from metrics_pipeline.storage.objects import RunIdTakenError

    (run,) = demo_runs(1)
    folder = run.write(tmp_path / "runs")
    files = sorted(folder.iterdir())
    upload_run(store, files, run.manifest)
    upload_run(store, files, run.manifest)  # the same suite again: a re-upload, fine
    other = run.manifest.model_copy(update={"suite": "another-suite"})
    with pytest.raises(RunIdTakenError, match="is uploaded in suite"):
        upload_run(store, files, other)
    assert store.find_run(run.manifest.run_id) == run.manifest.suite

    # Written to the bucket by other means: the ingest refuses to pick one.
    store.put_bytes(f"raw/another-suite/{run.manifest.run_id}/run.json", b"{}")
    with pytest.raises(RunIdTakenError, match="is uploaded in suites"):
        ingest_from_store(store, None, run.manifest.run_id)  # type: ignore[arg-type]


def test_a_reupload_that_fails_validation_leaves_no_results_of_the_old_version(
    store, warehouse, tmp_path
):
    # The old version's summary, sketches and verdicts stayed beside the new, invalid rows:
    # the report of an invalid run listed the old regressions.
    import polars as pl

    from metrics_pipeline.contracts.tables import DERIVED_RUN_TABLES, conform
    from metrics_pipeline.stages import ci

    (run,) = demo_runs(1, duration_s=10.0)
    run_id = run.manifest.run_id
    a, b, _, _ = split(run, tmp_path)
    upload_run(store, [a, b], run.manifest)
    report = ci.ingest(store, warehouse, run_id, now=NOW)
    assert ci.validate(warehouse, report).valid
    ci.summarise(warehouse, run_id)
    verdict = {"run_id": run_id, "endpoint": "/a", "metric": "latency_p50", "verdict": "ok"}
    warehouse.write_partition("verdicts", run_id, conform("verdicts", pl.DataFrame([verdict])))
    assert warehouse.read("run_summary", [run_id]).height > 0

    # The new version: b.ndjson cut off in a line, so the run is invalid.
    b.write_bytes(b.read_bytes()[:-20])
    upload_run(store, [a, b], run.manifest)
    report = ci.ingest(store, warehouse, run_id, now=NOW)
    assert not ci.validate(warehouse, report).valid
    assert {table: warehouse.read(table, [run_id]).height for table in DERIVED_RUN_TABLES} == (
        dict.fromkeys(DERIVED_RUN_TABLES, 0)
    )
