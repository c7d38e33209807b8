"""Tests of the Parquet + DuckDB warehouse, in a local folder and in an S3-compatible store
(moto's server): idempotent, atomic partition writes, the same reads and views."""

import uuid
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from typer.testing import CliRunner

from metrics_pipeline.cli.main import app
from metrics_pipeline.contracts.tables import SCHEMAS, conform
from metrics_pipeline.storage import Warehouse, warehouse_at

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def requests_frame(n: int, endpoint: str = "/a", latency: float = 10.0) -> pl.DataFrame:
    return conform(
        "requests",
        pl.DataFrame(
            {
                "ts": [T0 + timedelta(seconds=i) for i in range(n)],
                "endpoint": [endpoint] * n,
                "status": [200] * n,
                "ok": [True] * n,
                "latency_ms": [latency + i for i in range(n)],
                "line_no": list(range(1, n + 1)),
            }
        ),
    )


def quarantine_frame(n: int) -> pl.DataFrame:
    return conform(
        "quarantine",
        pl.DataFrame(
            {
                "source_file": ["a.ndjson"] * n,
                "line_no": list(range(1, n + 1)),
                "reason": ["invalid JSON"] * n,
                "raw": ["{"] * n,
            }
        ),
    )


def counts(wh: Warehouse, table: str) -> dict[str, int]:
    return dict(wh.read(table).group_by("run_id").len().sort("run_id").iter_rows())


@pytest.fixture(params=["folder", "s3"])
def wh(request, tmp_path):
    if request.param == "folder":
        return Warehouse(tmp_path / "warehouse")
    return object_warehouse(request.getfixturevalue("s3_endpoint"), tmp_path)


def object_warehouse(endpoint: str, tmp_path) -> Warehouse:
    import boto3

    bucket = f"warehouse-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return warehouse_at(f"s3://{bucket}/tables", tmp_path / "local", endpoint_url=endpoint)


@pytest.fixture(autouse=True)
def _credentials(monkeypatch):
    # moto's server takes any key; the warehouse's clients read them from the environment.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def test_write_reads_back_in_the_table_schema_with_the_run_id(wh):
    frame = requests_frame(3)
    assert wh.write_partition("requests", "r1", frame) == 3
    back = wh.read("requests")
    assert back.schema == SCHEMAS["requests"]
    assert back["run_id"].to_list() == ["r1"] * 3
    assert back.drop("run_id").sort("line_no").equals(frame.drop("run_id"))
    assert wh.run_ids("requests") == ["r1"]


def test_writing_the_same_partition_twice_leaves_one_copy(wh):
    wh.write_partition("requests", "r1", requests_frame(5))
    wh.write_partition("requests", "r1", requests_frame(5))
    assert counts(wh, "requests") == {"r1": 5}
    assert len(wh.files("requests", ["r1"])) == 1
    wh.write_partition("requests", "r1", requests_frame(2, latency=99.0))
    back = wh.read("requests")
    assert back.height == 2
    assert back["latency_ms"].sort().to_list() == [99.0, 100.0]


def test_rewriting_one_run_leaves_other_runs_alone(wh):
    wh.write_partition("requests", "r1", requests_frame(3))
    wh.write_partition("requests", "r2", requests_frame(4))
    wh.write_partition("requests", "r1", requests_frame(1))
    assert counts(wh, "requests") == {"r1": 1, "r2": 4}


def test_replace_partitions_over_several_tables_replaces_all(wh):
    with wh.replace_partitions("r1", ["requests", "quarantine"]) as writer:
        writer.write("requests", requests_frame(4))
        writer.write("quarantine", quarantine_frame(2))
    with wh.replace_partitions("r1", ["requests", "quarantine"]) as writer:
        # Two batches of one table go into the same partition.
        writer.write("requests", requests_frame(3, endpoint="/b"))
        writer.write("requests", requests_frame(2, endpoint="/c"))
        writer.write("quarantine", quarantine_frame(1))
        assert writer.rows == {"requests": 5, "quarantine": 1}
    assert counts(wh, "requests") == {"r1": 5}
    assert sorted(wh.read("requests")["endpoint"].unique()) == ["/b", "/c"]
    assert counts(wh, "quarantine") == {"r1": 1}


def test_exception_inside_the_block_leaves_the_old_partitions_untouched(wh, tmp_path):
    wh.write_partition("requests", "r1", requests_frame(3))
    wh.write_partition("quarantine", "r1", quarantine_frame(2))
    before = wh.read("requests")
    with (
        pytest.raises(RuntimeError, match="boom"),
        wh.replace_partitions("r1", ["requests", "quarantine"]) as writer,
    ):
        writer.write("requests", requests_frame(7, endpoint="/new"))
        writer.write("quarantine", quarantine_frame(9))
        raise RuntimeError("boom")
    assert wh.read("requests").equals(before)
    assert counts(wh, "quarantine") == {"r1": 2}
    # No staging leftovers that a glob could pick up later.
    leftovers = list((wh.root / ".staging").rglob("*.parquet"))
    assert leftovers == []


def test_table_without_rows_in_a_replace_ends_up_empty_for_that_run(wh):
    wh.write_partition("requests", "r1", requests_frame(3))
    wh.write_partition("requests", "r2", requests_frame(2))
    wh.write_partition("quarantine", "r1", quarantine_frame(4))
    with wh.replace_partitions("r1", ["requests", "quarantine"]) as writer:
        writer.write("requests", requests_frame(1))
        writer.write("quarantine", quarantine_frame(0))
    assert counts(wh, "requests") == {"r1": 1, "r2": 2}
    assert wh.read("quarantine", ["r1"]).height == 0
    assert wh.read("quarantine").height == 0


def test_tables_not_named_in_the_replace_are_kept(wh):
    wh.write_partition("quarantine", "r1", quarantine_frame(4))
    with wh.replace_partitions("r1", ["requests"]) as writer:
        writer.write("requests", requests_frame(1))
    assert counts(wh, "quarantine") == {"r1": 4}


def test_write_partition_with_an_empty_frame_empties_the_partition(wh):
    wh.write_partition("requests", "r1", requests_frame(3))
    assert wh.write_partition("requests", "r1", requests_frame(0)) == 0
    assert wh.read("requests").height == 0


def test_delete_partition(wh):
    wh.write_partition("requests", "r1", requests_frame(3))
    wh.write_partition("requests", "r2", requests_frame(2))
    wh.delete_partition("requests", "r1")
    assert counts(wh, "requests") == {"r2": 2}
    assert wh.run_ids("requests") == ["r2"]


def test_read_with_run_ids_reads_only_those_runs(wh):
    for i, run_id in enumerate(["r1", "r2", "r3"], start=1):
        wh.write_partition("requests", run_id, requests_frame(i))
    assert wh.read("requests", ["r1", "r3"])["run_id"].value_counts().sort("run_id").rows() == [
        ("r1", 1),
        ("r3", 3),
    ]
    assert wh.read("requests", ["r2", "r2"]).height == 2  # repeated ids read once
    assert wh.read("requests", ["unknown"]).height == 0
    assert wh.read("requests", []).height == 0


def test_scan_of_a_table_without_files_is_empty_with_the_schema(wh):
    for table in ("requests", "quarantine", "run_summary"):
        frame = wh.scan(table).collect()
        assert frame.height == 0
        assert frame.schema == SCHEMAS[table]
    wh.write_partition("requests", "r1", requests_frame(1))
    assert wh.scan("requests", ["other"]).collect().schema == SCHEMAS["requests"]
    assert wh.run_ids("events") == []


def test_connect_counts_match_read(wh):
    wh.write_partition("requests", "r1", requests_frame(3))
    wh.write_partition("requests", "r2", requests_frame(5))
    wh.write_partition("quarantine", "r2", quarantine_frame(2))
    con = wh.connect()
    try:
        rows = con.execute(
            "select run_id, count(*) from requests group by run_id order by run_id"
        ).fetchall()
        assert dict(rows) == counts(wh, "requests")
        (total,) = con.execute("select count(*) from quarantine").fetchone()
        assert total == wh.read("quarantine").height == 2
        (mean,) = con.execute("select avg(latency_ms) from requests where run_id = 'r2'").fetchone()
        assert mean == pytest.approx(wh.read("requests", ["r2"])["latency_ms"].mean())
    finally:
        con.close()


def test_refresh_catalog_views_work_from_a_fresh_connection(wh):
    wh.write_partition("requests", "r1", requests_frame(3))
    wh.write_partition("quarantine", "r1", quarantine_frame(2))
    path = wh.refresh_catalog()
    with wh.open_catalog() as con:
        assert con.execute("select count(*) from requests").fetchone() == (3,)
        assert con.execute("select count(*) from quarantine").fetchone() == (2,)
    # A file people and tools open (a bucket's is built when opened writable: the object
    # warehouse's views read every partition's footer from the store when created).
    with wh.open_catalog(read_only=False):
        assert path.is_file()
    # A second refresh picks up new partitions.
    wh.write_partition("requests", "r2", requests_frame(4))
    assert wh.refresh_catalog() == path
    with wh.open_catalog() as con:
        rows = con.execute("select run_id, count(*) from requests group by 1 order by 1").fetchall()
        assert rows == [("r1", 3), ("r2", 4)]


def test_every_catalog_view_is_queryable_after_the_last_partition_is_deleted(wh):
    wh.write_partition("requests", "r1", requests_frame(3))
    wh.refresh_catalog()
    wh.delete_partition("requests", "r1")
    wh.refresh_catalog()
    with wh.open_catalog() as con:
        views = con.execute(
            "select view_name from duckdb_views() where not internal order by 1"
        ).fetchall()
        for (view,) in views:
            con.execute(f"select count(*) from {view}").fetchone()


@pytest.mark.parametrize("run_id", ["..", ".", "../r1", "a/b", "", "x\x00y"])
def test_partition_dir_rejects_unsafe_run_ids(tmp_path, run_id):
    wh = Warehouse(tmp_path / "warehouse")
    with pytest.raises(ValueError, match="not allowed"):
        wh.partition_dir("requests", run_id)
    with pytest.raises(ValueError, match="not allowed"):
        wh.write_partition("requests", run_id, requests_frame(1))
    assert not list(wh.root.parent.rglob("*.parquet"))


def test_replace_partitions_rejects_an_unsafe_run_id_before_writing(wh, tmp_path):
    entered = False
    with (
        pytest.raises(ValueError, match="not allowed"),
        wh.replace_partitions("../../escape", ["requests"]) as writer,
    ):
        entered = True
        writer.write("requests", requests_frame(1))
    assert not entered


def test_snapshot_tables_are_replaced_whole_and_have_views(wh):
    frame = conform(
        "drifts",
        pl.DataFrame(
            {"suite": ["s", "s"], "endpoint": ["/a", "/b"], "metric": ["latency_p50"] * 2}
        ),
    )
    wh.write_snapshot("drifts", frame)
    wh.write_snapshot("drifts", frame.head(1))
    assert wh.read("drifts").height == 1
    assert wh.connect().execute("select count(*) from drifts").fetchone() == (1,)


def test_leftovers_of_interrupted_writes_are_found_when_old(tmp_path):
    import os

    wh = Warehouse(tmp_path / "warehouse")
    wh.write_partition("requests", "r1", requests_frame(3))
    killed = wh.root / ".staging" / "r1-killed"
    killed.mkdir(parents=True)
    (killed / "part-0.parquet").write_bytes(b"half")
    aside = wh.root / ".trash" / "abc"
    aside.mkdir(parents=True)
    now = killed.stat().st_mtime
    assert wh.leftovers(now_s=now) == []  # young: perhaps a write under way
    os.utime(aside, (now - 2 * 24 * 3600, now - 2 * 24 * 3600))
    assert wh.leftovers(now_s=now) == [str(aside)]
    found = wh.leftovers(now_s=now + 2 * 24 * 3600)
    assert sorted(found) == sorted([str(killed), str(aside)])
    wh.remove_leftovers(found)
    assert wh.leftovers(now_s=now + 2 * 24 * 3600) == []
    assert wh.read("requests").height == 3


def test_partitions_store_times_and_line_numbers_as_deltas_and_read_back_everywhere(tmp_path):
    import pyarrow.parquet as pq

    wh = Warehouse(tmp_path / "warehouse")
    frame = requests_frame(5000)
    wh.write_partition("requests", "r1", frame)
    (file,) = wh.files("requests", ["r1"])
    chunk = pq.ParquetFile(file).metadata.row_group(0)
    encodings = {
        chunk.column(i).path_in_schema: set(chunk.column(i).encodings)
        for i in range(chunk.num_columns)
    }
    assert "DELTA_BINARY_PACKED" in encodings["ts"] & encodings["line_no"]
    assert "RLE_DICTIONARY" not in encodings["latency_ms"]
    assert "RLE_DICTIONARY" in encodings["endpoint"]
    expected = frame.drop("run_id").sort("line_no")
    assert wh.read("requests").drop("run_id").sort("line_no").equals(expected)
    wh.refresh_catalog()
    with wh.open_catalog() as con:
        through_duckdb = con.sql("select * exclude (run_id) from requests order by line_no").pl()
    assert conform("requests", through_duckdb).drop("run_id").equals(expected)


def test_a_partition_is_deleted_only_if_it_still_has_the_files_the_caller_saw(wh):
    # Retention lists a run's files, copies them to its trash, then deletes the partition; a
    # re-ingest in between must keep its new partition.
    wh.write_partition("requests", "r1", requests_frame(2, endpoint="/old"))
    seen = wh.files("requests", ["r1"])
    wh.write_partition("requests", "r1", requests_frame(3, endpoint="/new"))
    assert not wh.delete_partition("requests", "r1", files=seen)
    assert wh.read("requests")["endpoint"].to_list() == ["/new"] * 3
    assert wh.delete_partition("requests", "r1", files=wh.files("requests", ["r1"]))
    assert wh.run_ids("requests") == []


def test_a_restore_into_an_empty_place_leaves_a_newer_ingest_alone(wh, tmp_path):
    # A restore publishes the trash's copy only where the run has no partition any more.
    wh.write_partition("requests", "r1", requests_frame(3, endpoint="/new"))
    folder = tmp_path / "restore"
    folder.mkdir()
    requests_frame(2, endpoint="/old").write_parquet(folder / "part-0.parquet")
    assert not wh.publish("r1", {"requests": folder}, unchanged={"requests": []})
    assert wh.read("requests")["endpoint"].to_list() == ["/new"] * 3
    wh.delete_partition("requests", "r1")
    assert wh.publish("r1", {"requests": folder}, unchanged={"requests": []})
    assert wh.read("requests")["endpoint"].to_list() == ["/old"] * 2


def test_a_publication_cut_between_tables_fails_closed_and_check_names_it(tmp_path, monkeypatch):
    # The local tables are swapped one by one. A fault midway (here a file where the events
    # table's folder goes, a real OS error, after runs and requests were swapped) left the old
    # catalog row "valid" beside the new requests, and `check` saw nothing.
    from metrics_pipeline.storage import integrity

    wh = Warehouse(tmp_path / "warehouse")
    run = conform("runs", pl.DataFrame({"run_id": ["r1"], "valid": [True]}))
    with wh.replace_partitions("r1", ["requests", "runs", "events"]) as writer:
        writer.write("requests", requests_frame(3))
        writer.write("runs", run)
    assert integrity.check(wh) and all(c.ok for c in integrity.check(wh))

    (tmp_path / "warehouse" / "events").write_text("in the way")
    events = conform("events", pl.DataFrame({"ts": [T0], "kind": ["x"]}))
    with (
        pytest.raises(OSError),
        wh.replace_partitions("r1", ["requests", "runs", "events"]) as writer,
    ):
        writer.write("requests", requests_frame(5))
        writer.write("runs", run.with_columns(valid=pl.lit(False)))  # as an ingest writes it
        writer.write("events", events)
    # The catalog row went first: the run is not valid beside rows of two versions.
    assert wh.read("runs", ["r1"])["valid"].to_list() == [False]
    interrupted = {(c.table, c.run_id) for c in integrity.check(wh) if c.pending}
    assert interrupted == {("requests", "r1"), ("runs", "r1")}
    monkeypatch.setenv("METRICS_HOME", str(tmp_path))
    monkeypatch.delenv("METRICS_POSTGRES_URL", raising=False)
    for command in (["check"], ["check", "--repair"]):  # nothing to repair it from: re-ingest
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 1, result.output
        assert "requests run r1: parquet 5 rows, publication interrupted between tables: " in (
            " ".join(result.output.split())
        )

    (tmp_path / "warehouse" / "events").unlink()
    with wh.replace_partitions("r1", ["requests", "runs", "events"]) as writer:
        writer.write("requests", requests_frame(5))
        writer.write("runs", run)
        writer.write("events", events)
    assert wh.pending() == {} and all(c.ok for c in integrity.check(wh))
