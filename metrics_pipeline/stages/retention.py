"""Retention: raw rows for 30 days, aggregates for a year (both configurable), never what a
baseline in use still needs. The JSONL in the bucket stays the source of truth: nothing here
touches it, and ``rebuild`` can bring any run back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

from metrics_pipeline.analysis.baselines import BASELINE_RUNS, accepted_runs
from metrics_pipeline.contracts.tables import tables_with
from metrics_pipeline.storage import Warehouse

RAW_TABLES = tables_with("raw")
AGGREGATE_TABLES = tables_with("aggregate")


@dataclass(frozen=True)
class RetentionPolicy:
    raw_days: int = 30
    aggregate_days: int = 365


@dataclass(frozen=True)
class RetentionPlan:
    """Partitions to delete, as (table, run_id), and the runs kept because baselines need them."""

    deletions: list[tuple[str, str]]
    protected: list[str]

    def as_frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            self.deletions, schema={"table": pl.String, "run_id": pl.String}, orient="row"
        )


def protected_runs(runs: pl.DataFrame, regressed: set[str], pinned: list[str]) -> set[str]:
    """Runs a baseline may use: those pinned in the baseline file and, per combination, the
    last ``BASELINE_RUNS`` accepted runs (the next candidate's rolling baseline)."""
    latest = (
        accepted_runs(runs, regressed)
        .group_by("suite", "scenario", "environment")
        .tail(BASELINE_RUNS)
    )
    return set(pinned) | set(latest["run_id"])


def plan_retention(
    runs: pl.DataFrame,
    present: dict[str, list[str]],
    now: datetime,
    policy: RetentionPolicy,
    protected: set[str],
) -> RetentionPlan:
    """What to delete at ``now``: raw partitions of runs older than ``raw_days`` and aggregate
    partitions of runs older than ``aggregate_days``, except ``protected`` runs.

    ``present`` maps each table to the run ids it holds (only existing partitions are listed).
    """
    started = dict(zip(runs["run_id"], runs["started_at"], strict=True))
    cutoffs = {
        **dict.fromkeys(RAW_TABLES, now - timedelta(days=policy.raw_days)),
        **dict.fromkeys(AGGREGATE_TABLES, now - timedelta(days=policy.aggregate_days)),
    }
    deletions = [
        (table, run_id)
        for table, cutoff in cutoffs.items()
        for run_id in present.get(table, [])
        if run_id not in protected and run_id in started and started[run_id] < cutoff
    ]
    return RetentionPlan(sorted(deletions), sorted(protected & set(started)))


def plan_for(
    warehouse: Warehouse, now: datetime, policy: RetentionPolicy, pinned: list[str]
) -> RetentionPlan:
    """The retention plan of a warehouse at ``now``."""
    runs = warehouse.read("runs")
    verdicts = warehouse.read("verdicts")
    regressed = set(verdicts.filter(pl.col("regression"))["run_id"])
    present = {table: warehouse.run_ids(table) for table in (*RAW_TABLES, *AGGREGATE_TABLES)}
    return plan_retention(runs, present, now, policy, protected_runs(runs, regressed, pinned))


def apply_plan(warehouse: Warehouse, plan: RetentionPlan) -> int:
    """Delete the planned partitions (Parquet and, when mirrored, Postgres); the catalog row
    goes last so a crash midway leaves runs that the next pass still finds."""
    for table, run_id in sorted(plan.deletions, key=lambda d: d[0] == "runs"):
        warehouse.delete_partition(table, run_id)
    return len(plan.deletions)
