"""Retention with an injected clock: raw rows 30 days after their ingest, aggregates after a
year, never what a baseline needs (pinned, recent, explicit, compared with); refused on bad day
counts, a missing configured baseline file and a clock far ahead; deleted partitions go to a
trash that restores them and is purged after its grace period, in a local warehouse and in one
in an S3 bucket (moto's server). A dry run changes nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import psycopg
import pytest
from typer.testing import CliRunner

from metrics_pipeline.analysis.baselines import BaselineEntry, save_baselines
from metrics_pipeline.cli.main import app
from metrics_pipeline.contracts.tables import conform
from metrics_pipeline.settings import CHECKOUT, DEFAULT_BASELINES, Settings
from metrics_pipeline.stages.retention import (
    COMPARED,
    EXPLICIT,
    RetentionError,
    RetentionPolicy,
    apply_plan,
    pinned_in,
    plan_for,
    restore_run,
    run_retention,
)
from metrics_pipeline.storage import PostgresWarehouse, Warehouse
from metrics_pipeline.storage.object_warehouse import ObjectWarehouse
from metrics_pipeline.storage.trash import TRASH_FOLDER, RetentionTrash

NOW = datetime(2026, 11, 23, tzinfo=UTC)
AGES = {"ancient": 400, "old": 100, "old-pinned": 90, "month": 40, "recent": 5}
runner = CliRunner()


def add_run(
    warehouse: Warehouse,
    run_id: str,
    started_days: float,
    *,
    ingested_days: float | None = None,
    suite: str = "s",
    baseline: str | None = None,
    requests: bool = True,
) -> None:
    """A catalog row started ``started_days`` before NOW and ingested ``ingested_days`` before
    it (default: an hour after its start), with one request row and one summary row."""
    started = NOW - timedelta(days=started_days)
    ingested = (
        started + timedelta(hours=1)
        if ingested_days is None
        else NOW - timedelta(days=ingested_days)
    )
    run = {
        "run_id": run_id,
        "suite": suite,
        "scenario": "x",
        "environment": "e",
        "started_at": started,
        "ingested_at": ingested,
        "baseline": baseline,
        "valid": True,
    }
    warehouse.write_partition("runs", run_id, conform("runs", pl.DataFrame([run])))
    if not requests:
        return
    request = {
        "run_id": run_id,
        "ts": started,
        "endpoint": "/a",
        "ok": True,
        "latency_ms": 1.0,
        "source_file": "f",
        "line_no": 1,
    }
    warehouse.write_partition("requests", run_id, conform("requests", pl.DataFrame([request])))
    summary = {"run_id": run_id, "endpoint": "/a", "latency_p50": 1.0}
    warehouse.write_partition(
        "run_summary", run_id, conform("run_summary", pl.DataFrame([summary]))
    )


def fill(warehouse: Warehouse) -> None:
    for run_id, age in AGES.items():
        add_run(warehouse, run_id, age)
    # Five newer accepted runs of another combination keep the rolling baseline off these.
    for i in range(5):
        add_run(warehouse, f"other-{i}", 1 + i, suite="t", requests=False)


def regress(warehouse: Warehouse, *run_ids: str) -> None:
    """Judge runs a regression: never a baseline, so the rolling rule does not keep them."""
    verdict = {"run_id": "x", "endpoint": "/a", "metric": "latency_p50", "regression": True}
    for run_id in run_ids:
        warehouse.write_partition(
            "verdicts", run_id, conform("verdicts", pl.DataFrame([verdict | {"run_id": run_id}]))
        )


def pin(path: Path, *runs: str) -> Path:
    """A baseline file at ``path`` pinning ``runs`` (none: an empty file)."""
    entries = []
    if runs:  # an entry needs at least one run
        entries.append(
            BaselineEntry(
                suite="s",
                scenario="x",
                environment="e",
                endpoint="/a",
                metric="latency_p50",
                value=1.0,
                runs=list(runs),
                updated_at=NOW,
            )
        )
    save_baselines(path, entries)
    return path


@pytest.fixture(params=["folder", pytest.param("s3", marks=pytest.mark.services)])
def new_warehouse(request, tmp_path):
    """Builds the warehouse under test, optionally mirrored: a local folder, or a bucket of
    moto's S3 server (its local folder in ``tmp_path``)."""
    endpoint = request.getfixturevalue("s3_endpoint") if request.param == "s3" else None

    def build(mirror: PostgresWarehouse | None = None) -> Warehouse:
        if endpoint is None:
            return Warehouse(tmp_path / "warehouse", mirror)
        return object_warehouse(endpoint, tmp_path, mirror)

    return build


def object_warehouse(endpoint: str, tmp_path: Path, mirror=None) -> ObjectWarehouse:
    """A warehouse in a new bucket (as tests/storage/test_warehouse.py builds one)."""
    import boto3

    bucket = f"warehouse-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return ObjectWarehouse(
        f"s3://{bucket}/tables", tmp_path / "local", mirror, endpoint_url=endpoint
    )


@pytest.fixture(autouse=True)
def _credentials(monkeypatch):
    # moto's server takes any key; the warehouse's clients read them from the environment.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def stored(warehouse: Warehouse) -> list[str]:
    """Everything in the trash as the store itself lists it, relative to the trash folder:
    paths of files and folders, or the bucket's keys (boto3; but the trash folder's own
    marker, which pyarrow leaves when it deletes the last object under it)."""
    root = RetentionTrash(warehouse).root
    if not isinstance(warehouse, ObjectWarehouse):
        folder = Path(root)
        return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))
    import boto3

    bucket, prefix = root.split("/", 1)
    s3 = boto3.client("s3", endpoint_url=warehouse.endpoint_url, region_name=warehouse.region)
    keys = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for item in page.get("Contents", [])
    ]
    return sorted(key.removeprefix(f"{prefix}/") for key in keys if key != f"{prefix}/")


def pass_of(trash: RetentionTrash, entry) -> str:
    """The name of the pass folder holding ``entry``."""
    return entry.path.removeprefix(f"{trash.root}/").split("/")[0]


@pytest.fixture
def cli_env(tmp_path, monkeypatch) -> Warehouse:
    """METRICS_HOME in tmp_path, an empty baseline file; the warehouse the CLI opens."""
    monkeypatch.setenv("METRICS_HOME", str(tmp_path))
    monkeypatch.setenv("METRICS_BASELINES", str(pin(tmp_path / "baselines.yaml")))
    monkeypatch.delenv("METRICS_POSTGRES_URL", raising=False)
    monkeypatch.delenv("METRICS_NOW", raising=False)
    return Warehouse(tmp_path / "warehouse")


def test_plan_deletes_raw_after_30_days_aggregates_after_a_year_and_spares_baselines(tmp_path):
    warehouse = Warehouse(tmp_path)
    fill(warehouse)
    # Within suite "s" the rolling baseline is its last 5 accepted runs: all of them. Mark
    # three as regressed so only two ("month", "recent") are needed, and pin "old-pinned".
    regress(warehouse, "ancient", "old", "old-pinned")
    plan = plan_for(warehouse, NOW, RetentionPolicy(), pinned=["old-pinned"])
    assert ("requests", "old") in plan.deletions and ("requests", "ancient") in plan.deletions
    assert ("runs", "ancient") in plan.deletions and ("run_summary", "ancient") in plan.deletions
    assert ("run_summary", "old") not in plan.deletions
    assert not any(run in {"old-pinned", "month", "recent"} for _, run in plan.deletions)
    assert "old-pinned" in plan.protected and plan.reasons["old-pinned"] == ["pinned"]
    assert plan.reasons["month"] == ["recent accepted"]

    before = {t: warehouse.run_ids(t) for t in ("requests", "runs")}
    apply_plan(warehouse, plan)
    assert warehouse.run_ids("requests") == sorted(set(before["requests"]) - {"ancient", "old"})
    assert "ancient" not in warehouse.run_ids("runs") and "old" in warehouse.run_ids("runs")
    # Applying again finds nothing more: retention is idempotent.
    assert plan_for(warehouse, NOW, RetentionPolicy(), pinned=["old-pinned"]).deletions == []


def test_shorter_policies_and_the_dry_run_command(cli_env):
    warehouse = cli_env
    fill(warehouse)
    dry = runner.invoke(
        app, ["retention", "--dry-run", "--raw-days", "1", "--now", NOW.isoformat()]
    )
    assert dry.exit_code == 0, dry.output
    assert "would move" in dry.stdout
    assert "recent" in warehouse.run_ids("requests")  # nothing deleted by a dry run
    done = runner.invoke(app, ["retention", "--raw-days", "1", "--now", NOW.isoformat()])
    assert done.exit_code == 0, done.output
    # Every run of suite "s" is in its rolling baseline (5 accepted runs): all are protected.
    assert warehouse.run_ids("requests") == sorted(AGES)


# --- 1. explicit, pinned, compared-with baselines -------------------------------------------


def test_the_explicit_baseline_of_a_manifest_is_kept(tmp_path):
    warehouse = Warehouse(tmp_path)
    fill(warehouse)
    regress(warehouse, *AGES)  # no rolling baseline keeps the "s" runs
    # A recent candidate names "ancient" (400 days) as its baseline in run.json: runs.baseline.
    add_run(warehouse, "candidate", 2, suite="u", baseline="ancient")
    # One that keeps only its aggregates (60 days) names "old" (100 days): its raw rows may
    # go, not its aggregates (the candidate's report lists it).
    add_run(warehouse, "old-candidate", 60, suite="u", baseline="old")
    regress(warehouse, "candidate", "old-candidate")
    plan = plan_for(warehouse, NOW, RetentionPolicy(raw_days=30, aggregate_days=90), pinned=[])
    assert not [d for d in plan.deletions if d[1] == "ancient"]
    assert plan.reasons["ancient"] == [EXPLICIT]
    assert ("requests", "old") in plan.deletions
    assert ("run_summary", "old") not in plan.deletions and ("runs", "old") not in plan.deletions
    apply_plan(warehouse, plan)
    assert "ancient" in warehouse.run_ids("requests") and "ancient" in warehouse.run_ids("runs")


def test_the_runs_a_retained_run_was_compared_with_are_kept_one_step_only(tmp_path):
    warehouse = Warehouse(tmp_path)
    for run_id, age in (("a", 300), ("b", 200), ("c", 2)):
        add_run(warehouse, run_id, age, suite=f"suite-{run_id}")
    regress(warehouse, "a", "b", "c")
    # c was compared with b, b with a (run_baselines): c keeps b; b is not kept for its own
    # sake, so it does not keep a (else every run would keep its predecessors for ever).
    for run_id, baseline in (("c", "b"), ("b", "a")):
        frame = pl.DataFrame({"run_id": [run_id], "baseline_run_id": [baseline], "position": [0]})
        warehouse.write_partition("run_baselines", run_id, frame)
    plan = plan_for(warehouse, NOW, RetentionPolicy(aggregate_days=100), pinned=[])
    assert not [d for d in plan.deletions if d[1] == "b"]
    assert plan.reasons["b"] == [COMPARED]
    assert {("requests", "a"), ("runs", "a")} <= set(plan.deletions)


def test_a_pinned_run_is_kept_with_a_relative_baseline_path_from_another_folder(
    cli_env, tmp_path, monkeypatch
):
    warehouse = cli_env
    fill(warehouse)
    regress(warehouse, *AGES)
    project = tmp_path / "project"
    pin(project / "config" / "pins.yaml", "old-pinned")
    monkeypatch.setenv("METRICS_PROJECT_DIR", str(project))
    monkeypatch.setenv("METRICS_BASELINES", "config/pins.yaml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # where the old code looked for config/pins.yaml
    assert Settings.from_env().baselines_file == project / "config" / "pins.yaml"
    result = runner.invoke(app, ["retention", "--now", NOW.isoformat()])
    assert result.exit_code == 0, result.output
    assert "old-pinned" in warehouse.run_ids("requests")
    assert "old" not in warehouse.run_ids("requests")  # the same pass did delete


def test_a_relative_baseline_path_is_under_the_checkout_not_the_working_folder(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("METRICS_PROJECT_DIR", raising=False)
    monkeypatch.setenv("METRICS_BASELINES", "config/pins.yaml")
    monkeypatch.chdir(tmp_path)
    assert Settings.from_env().baselines_file == CHECKOUT / "config" / "pins.yaml"
    monkeypatch.delenv("METRICS_BASELINES")
    assert Settings.from_env().baselines_file == CHECKOUT / DEFAULT_BASELINES
    assert Settings(home=tmp_path).baselines_file == CHECKOUT / DEFAULT_BASELINES


# --- 2. a missing configured baseline file ---------------------------------------------------


def test_a_missing_configured_baseline_file_stops_retention(cli_env, tmp_path, monkeypatch):
    warehouse = cli_env
    fill(warehouse)
    missing = tmp_path / "typo" / "baselines.yaml"
    with pytest.raises(RetentionError, match="does not exist"):
        pinned_in(missing)
    # The default location may be absent: nothing is pinned there yet.
    assert pinned_in(tmp_path / DEFAULT_BASELINES) == []
    monkeypatch.setenv("METRICS_BASELINES", str(missing))
    before = warehouse.run_ids("requests")
    for dry in ([], ["--dry-run"]):
        result = runner.invoke(app, ["retention", *dry, "--now", NOW.isoformat()])
        assert result.exit_code == 2, result.output
        assert "retention refuses to run" in result.stderr and str(missing) in result.stderr
    assert warehouse.run_ids("requests") == before


# --- 3. day counts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"raw_days": -1},
        {"raw_days": 0},
        {"aggregate_days": 0},
        {"trash_days": -7},
        {"max_quiet_days": 0},
        {"raw_days": 1.5},
        {"raw_days": True},
        {"raw_days": 400},  # beyond aggregate_days: raw rows would outlive their catalog row
    ],
)
def test_day_counts_must_be_positive_whole_numbers(fields):
    with pytest.raises(RetentionError):
        RetentionPolicy(**fields)


@pytest.mark.parametrize(
    "option",
    [["--raw-days", "-1"], ["--raw-days", "0"], ["--raw-days", "40", "--aggregate-days", "30"]],
)
def test_the_command_exits_2_on_bad_day_counts(cli_env, option):
    warehouse = cli_env
    fill(warehouse)
    result = runner.invoke(app, ["retention", *option, "--now", NOW.isoformat()])
    assert result.exit_code == 2, result.output
    assert "raw_days" in result.stderr
    assert warehouse.run_ids("requests") == sorted(AGES)


# --- 4. age from ingest ----------------------------------------------------------------------


def test_a_late_upload_ages_from_its_ingest_not_its_start(tmp_path):
    warehouse = Warehouse(tmp_path)
    fill(warehouse)
    # Both started 100 days ago; one was uploaded an hour ago.
    add_run(warehouse, "late", 100, ingested_days=1 / 24, suite="v")
    add_run(warehouse, "on-time", 100, suite="w")
    regress(warehouse, "late", "on-time")
    plan = plan_for(warehouse, NOW, RetentionPolicy(), pinned=[])
    assert not [d for d in plan.deletions if d[1] == "late"]
    assert ("requests", "on-time") in plan.deletions


# --- 5. a clock far ahead --------------------------------------------------------------------


def test_a_clock_ten_years_ahead_is_refused_a_quiet_week_is_not(cli_env):
    warehouse = cli_env
    fill(warehouse)  # the newest ingest: "other-0", a day before NOW
    regress(warehouse, *AGES)  # only suite "t" (other-*) is a rolling baseline
    ahead = NOW + timedelta(days=3653)
    with pytest.raises(RetentionError, match="max_quiet_days"):
        plan_for(warehouse, ahead, RetentionPolicy(), pinned=[])
    # A year's typo in --now is refused too: max_quiet_days is below aggregate_days.
    with pytest.raises(RetentionError):
        plan_for(warehouse, NOW + timedelta(days=365), RetentionPolicy(), pinned=[])
    plan_for(warehouse, NOW + timedelta(days=7), RetentionPolicy(), pinned=[])  # quiet week

    before = {t: warehouse.run_ids(t) for t in ("requests", "runs")}
    result = runner.invoke(app, ["retention", "--now", ahead.isoformat()])
    assert result.exit_code == 2, result.output
    assert "--force" in result.stderr
    assert {t: warehouse.run_ids(t) for t in before} == before
    # Told the time is right, it runs: every unprotected run goes.
    forced = runner.invoke(app, ["retention", "--force", "--now", ahead.isoformat()])
    assert forced.exit_code == 0, forced.output
    assert set(before["runs"]) - set(warehouse.run_ids("runs")) == set(AGES)


def test_a_clock_far_ahead_does_not_purge_the_trash(new_warehouse):
    warehouse = new_warehouse()
    fill(warehouse)
    regress(warehouse, "ancient")
    run_retention(warehouse, NOW, RetentionPolicy(), [])
    trash = RetentionTrash(warehouse)
    held = trash.entries()
    assert held
    with pytest.raises(RetentionError):
        run_retention(warehouse, NOW + timedelta(days=3653), RetentionPolicy(), [])
    assert trash.entries() == held


# --- 6. the trash ----------------------------------------------------------------------------


def rows(warehouse: Warehouse, run_id: str) -> dict[str, pl.DataFrame]:
    return {
        table: warehouse.read(table, [run_id])
        for table in ("requests", "run_summary", "runs", "verdicts")
        if run_id in warehouse.run_ids(table)
    }


def test_trash_then_restore_gives_back_identical_rows(cli_env):
    warehouse = cli_env
    fill(warehouse)
    regress(warehouse, "ancient")
    before = rows(warehouse, "ancient")
    assert set(before) == {"requests", "run_summary", "runs", "verdicts"}

    outcome = run_retention(warehouse, NOW, RetentionPolicy(), [])
    assert {(e.table, e.run_id) for e in outcome.trashed} == set(outcome.plan.deletions)
    assert "ancient" not in warehouse.run_ids("runs")
    # The trash is outside <root>/<table>/: no listing, read or DuckDB view sees it.
    assert (warehouse.root / TRASH_FOLDER).is_dir()
    assert warehouse.read("requests", ["ancient"]).height == 0
    with warehouse.connect() as con:
        assert con.execute("select count(*) from requests where run_id = 'ancient'").fetchone() == (
            0,
        )

    result = runner.invoke(app, ["retention", "--restore", "ancient"])
    assert result.exit_code == 0, result.output
    assert "restored 4 partitions of ancient" in result.stdout
    after = rows(warehouse, "ancient")
    assert set(after) == set(before)
    for table, frame in before.items():
        assert after[table].equals(frame), table
    assert RetentionTrash(warehouse).entries("ancient") == []
    # Nothing left to restore: exit 2, and the message says so.
    again = runner.invoke(app, ["retention", "--restore", "ancient"])
    assert again.exit_code == 2 and "no partition in the retention trash" in again.stderr


def test_a_restore_leaves_partitions_the_warehouse_holds_again(new_warehouse):
    warehouse = new_warehouse()
    fill(warehouse)
    regress(warehouse, "ancient")
    run_retention(warehouse, NOW, RetentionPolicy(), [])
    add_run(warehouse, "ancient", 1)  # written anew meanwhile: the newer rows win
    newer = warehouse.read("requests", ["ancient"])
    result = restore_run(warehouse, "ancient")
    assert [e.table for e in result.restored] == ["verdicts"]  # not written anew
    assert {e.table for e in result.left} == {"requests", "run_summary", "runs"}
    assert warehouse.read("requests", ["ancient"]).equals(newer)
    assert {(e.table, e.run_id) for e in RetentionTrash(warehouse).entries()} == {
        (e.table, e.run_id) for e in result.left
    }


def test_a_restore_brings_back_nothing_of_a_run_ingested_since_it_was_trashed(new_warehouse):
    # Ingested again after the pass, from an upload without some of the old files: the old
    # version's partitions of tables the new one has no rows of came back beside it.
    warehouse = new_warehouse()
    fill(warehouse)
    regress(warehouse, "ancient")
    trashed = {e.table for e in run_retention(warehouse, NOW, RetentionPolicy(), []).trashed}
    assert {"requests", "verdicts", "runs"} <= trashed
    add_run(warehouse, "ancient", 1, ingested_days=-1)  # a day after the pass
    newer = {table: warehouse.read(table, ["ancient"]) for table in ("requests", "runs")}
    result = restore_run(warehouse, "ancient")
    assert result.restored == []
    assert {e.table for e in result.left} == trashed
    assert warehouse.read("verdicts", ["ancient"]).height == 0
    for table, frame in newer.items():
        assert warehouse.read(table, ["ancient"]).equals(frame), table


def test_the_trash_is_purged_after_its_grace_period(new_warehouse):
    warehouse = new_warehouse()
    fill(warehouse)
    regress(warehouse, "ancient")
    policy = RetentionPolicy(trash_days=7)
    first = run_retention(warehouse, NOW, policy, [])
    assert first.trashed and first.purged == []
    trash = RetentionTrash(warehouse)
    held = trash.entries()
    # Six days later (a quiet week, so the clock check passes) the trash is kept.
    assert run_retention(warehouse, NOW + timedelta(days=6), policy, []).purged == []
    assert trash.entries() == held
    # A younger pass, stamped that day, outlives the first one.
    younger = trash.trash([("requests", "month")], NOW + timedelta(days=6))
    assert [(e.table, e.run_id) for e in younger] == [("requests", "month")]
    assert trash.entries() == held + younger
    # A dry run eight days later tells what would go and keeps it.
    dry = run_retention(warehouse, NOW + timedelta(days=8), policy, [], dry_run=True)
    assert {(e.table, e.run_id) for e in dry.purged} == {(e.table, e.run_id) for e in held}
    assert trash.entries() == held + younger
    last = run_retention(warehouse, NOW + timedelta(days=8), policy, [])
    assert {(e.table, e.run_id) for e in last.purged} == {(e.table, e.run_id) for e in held}
    assert trash.entries() == younger
    # Nothing of the first pass is left in the store; the younger pass is whole.
    (old_pass,) = {pass_of(trash, e) for e in held}
    left = stored(warehouse)
    assert not [name for name in left if name.startswith(old_pass)]
    assert any(
        name.startswith(f"{pass_of(trash, younger[0])}/requests/run_id=month/") for name in left
    )
    with pytest.raises(RetentionError, match="no partition in the retention trash"):
        restore_run(warehouse, "ancient")
    # The younger pass goes in its turn, and the trash is empty.
    assert trash.purge(NOW + timedelta(days=14), timedelta(days=7)) == younger
    assert trash.entries() == [] and stored(warehouse) == []


def test_trash_then_restore_round_trips_the_rows(new_warehouse):
    warehouse = new_warehouse()
    fill(warehouse)
    regress(warehouse, "ancient")
    before = rows(warehouse, "ancient")
    assert set(before) == {"requests", "run_summary", "runs", "verdicts"}

    outcome = run_retention(warehouse, NOW, RetentionPolicy(), [])
    assert {(e.table, e.run_id) for e in outcome.trashed} == set(outcome.plan.deletions)
    assert {(e.table, e.run_id) for e in RetentionTrash(warehouse).entries()} == set(
        outcome.plan.deletions
    )
    # No listing, read or DuckDB view of the warehouse sees the trash.
    assert all("ancient" not in warehouse.run_ids(table) for table in before)
    assert warehouse.read("requests", ["ancient"]).height == 0
    with warehouse.connect() as con:
        assert con.execute("select count(*) from requests where run_id = 'ancient'").fetchone() == (
            0,
        )
    assert stored(warehouse)

    result = restore_run(warehouse, "ancient")
    assert {e.table for e in result.restored} == set(before) and result.left == []
    assert result.restored[-1].table == "runs"  # the catalog row last
    after = rows(warehouse, "ancient")
    assert set(after) == set(before)
    for table, frame in before.items():
        assert after[table].equals(frame), table
    assert RetentionTrash(warehouse).entries() == [] and stored(warehouse) == []
    with pytest.raises(RetentionError, match="no partition in the retention trash"):
        restore_run(warehouse, "ancient")


def test_a_pass_cut_short_leaves_a_spare_copy_and_the_next_pass_finishes(
    new_warehouse, monkeypatch
):
    warehouse = new_warehouse()
    fill(warehouse)
    regress(warehouse, "ancient")
    before = rows(warehouse, "ancient")
    delete = warehouse.delete_partition
    deleted: list[str] = []

    def killed_at_the_second(table: str, run_id: str, files: list[str] | None = None) -> bool:
        # The process dies after the second partition's copy, before its deletion.
        deleted.append(table)
        if len(deleted) == 2:
            raise OSError("killed")
        return delete(table, run_id, files)

    monkeypatch.setattr(warehouse, "delete_partition", killed_at_the_second)
    with pytest.raises(OSError, match="killed"):
        run_retention(warehouse, NOW, RetentionPolicy(), [])
    first, spare = deleted
    # The spare copy is in the trash and the partition still in the warehouse: nothing lost.
    assert "ancient" not in warehouse.run_ids(first) and "ancient" in warehouse.run_ids(spare)
    trash = RetentionTrash(warehouse)
    assert {e.table for e in trash.entries("ancient")} == {first, spare}

    # The next pass (an hour later) takes the rest; one more finds nothing to do.
    later = NOW + timedelta(hours=1)
    second = run_retention(warehouse, later, RetentionPolicy(), [])
    assert {e.table for e in second.trashed} == set(before) - {first}
    assert run_retention(warehouse, later, RetentionPolicy(), []).trashed == []
    assert all("ancient" not in warehouse.run_ids(table) for table in before)

    # The restore takes the newest copy of each table and leaves the spare one.
    result = restore_run(warehouse, "ancient")
    assert {e.table for e in result.restored} == set(before)
    assert [(e.table, e.trashed_at) for e in result.left] == [(spare, NOW)]
    after = rows(warehouse, "ancient")
    for table, frame in before.items():
        assert after[table].equals(frame), table
    # The spare copy goes with its pass.
    assert trash.purge(NOW + timedelta(days=8), timedelta(days=7)) == result.left
    assert trash.entries() == [] and stored(warehouse) == []


@pytest.mark.services
def test_trash_and_restore_follow_in_postgres(postgres_url, new_warehouse):
    schema = f"retention_{uuid.uuid4().hex[:8]}"
    warehouse = new_warehouse(PostgresWarehouse(postgres_url, schema=schema))
    fill(warehouse)
    regress(warehouse, "ancient")

    def mirrored(table: str) -> list[tuple]:
        with psycopg.connect(postgres_url) as con:
            return con.execute(
                f'select * from "{schema}"."{table}" where run_id = %s order by 1, 2',
                ("ancient",),
            ).fetchall()

    before = {table: mirrored(table) for table in ("requests", "run_summary", "runs", "verdicts")}
    assert all(before.values())
    run_retention(warehouse, NOW, RetentionPolicy(), [])
    assert not any(mirrored(table) for table in before)
    restored = restore_run(warehouse, "ancient")
    assert {e.table for e in restored.restored} == set(before)
    assert {table: mirrored(table) for table in before} == before


# --- the nightly asset -----------------------------------------------------------------------


def materialize(tmp_path: Path, baselines: Path, now: datetime, **config):
    import dagster as dg

    from assets.retention import retention
    from metrics_pipeline.orchestration.resources import (
        BaselineFileResource,
        ClockResource,
        WarehouseResource,
    )

    return dg.materialize(
        [retention],
        resources={
            "warehouse": WarehouseResource(root=str(tmp_path / "warehouse")),
            "baselines": BaselineFileResource(path=str(baselines)),
            "clock": ClockResource(frozen_at=now.isoformat()),
        },
        run_config={"ops": {"warehouse__retention": {"config": config}}},
        raise_on_error=False,
    )


def failure(result) -> str:
    """The message the failed step of ``result`` reported."""
    assert not result.success
    (event,) = result.get_step_failure_events()
    return event.step_failure_data.user_failure_data.description


def test_the_nightly_asset_refuses_like_the_command(tmp_path):
    warehouse = Warehouse(tmp_path / "warehouse")
    fill(warehouse)
    regress(warehouse, "ancient")
    pins = pin(tmp_path / "baselines.yaml")
    before = warehouse.run_ids("requests")
    # A clock ten years ahead, a bad day count: the step fails, nothing is deleted.
    assert "max_quiet_days" in failure(materialize(tmp_path, pins, NOW + timedelta(days=3653)))
    assert "raw_days" in failure(materialize(tmp_path, pins, NOW, raw_days=-1))
    # A missing configured baseline file: fails too, with nothing old enough to delete also
    # (the setup is wrong, whatever today's plan holds).
    missing = materialize(tmp_path, tmp_path / "missing.yaml", NOW)
    assert "does not exist" in failure(missing)
    assert warehouse.run_ids("requests") == before
    add_run(Warehouse(tmp_path / "young" / "warehouse"), "young", 2)
    assert "does not exist" in failure(
        materialize(tmp_path / "young", tmp_path / "missing.yaml", NOW)
    )
    done = materialize(tmp_path, pins, NOW)
    assert done.success
    assert "ancient" not in warehouse.run_ids("requests")


def test_a_run_ingested_again_while_retention_trashes_it_keeps_its_new_partition(
    new_warehouse, monkeypatch
):
    # Retention copies a partition to its trash, then deletes it; the run is re-ingested in
    # between (another process, here at the last moment before the delete): the new
    # partition stays, and the trash keeps no copy of the old one for that table.
    warehouse = new_warehouse()
    fill(warehouse)
    regress(warehouse, "ancient")
    delete = warehouse.delete_partition
    raced: list[str] = []

    def reingested_first(table: str, run_id: str, files: list[str] | None = None) -> bool:
        if table == "requests" and not raced:
            raced.append(table)
            fresh = warehouse.read("requests", [run_id]).with_columns(endpoint=pl.lit("/fresh"))
            warehouse.write_partition("requests", run_id, fresh)
        return delete(table, run_id, files)

    monkeypatch.setattr(warehouse, "delete_partition", reingested_first)
    result = run_retention(warehouse, NOW, RetentionPolicy(), [])
    assert raced == ["requests"]
    assert set(warehouse.read("requests", ["ancient"])["endpoint"]) == {"/fresh"}
    assert "requests" not in {e.table for e in result.trashed if e.run_id == "ancient"}
    assert "requests" not in {e.table for e in RetentionTrash(warehouse).entries("ancient")}
