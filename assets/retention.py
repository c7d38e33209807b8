"""Retention as an asset of the nightly job: what it deleted (or would delete) is its record."""

import dagster as dg
from pydantic import Field

from assets.history import CHANGE_POINTS, DRIFTS, FINDINGS
from assets.marts import MART_SPECS
from metrics_pipeline.orchestration.resources import (
    BaselineFileResource,
    ClockResource,
    WarehouseResource,
)
from metrics_pipeline.stages.retention import RetentionPolicy, apply_plan, plan_for

RETENTION = dg.AssetKey(["warehouse", "retention"])


class RetentionConfig(dg.Config):
    dry_run: bool = Field(default=False, description="Only report what would be deleted.")
    raw_days: int = Field(default=30, description="Keep raw rows this many days.")
    aggregate_days: int = Field(default=365, description="Keep aggregates this many days.")


@dg.asset(
    key=RETENTION,
    # Last in the nightly job: with a multi-process or Celery executor, deleting partitions
    # while the marts and history analyses read them would fail those steps.
    deps=[*(spec.key for spec in MART_SPECS), CHANGE_POINTS, DRIFTS, FINDINGS],
    group_name="warehouse",
    kinds={"parquet", "postgres"},
    description="Deletes raw rows after 30 days and aggregates after a year (configurable), "
    "never the runs a baseline needs; the bucket's raw files are never touched.",
)
def retention(
    config: RetentionConfig,
    warehouse: WarehouseResource,
    baselines: BaselineFileResource,
    clock: ClockResource,
) -> dg.MaterializeResult:
    store = warehouse.get()
    pinned = [run for entry in baselines.entries() for run in entry.runs]
    policy = RetentionPolicy(config.raw_days, config.aggregate_days)
    plan = plan_for(store, clock.now(), policy, pinned)
    if not config.dry_run:
        apply_plan(store, plan)
        store.refresh_catalog()
    per_table = plan.as_frame().group_by("table").len().sort("table")
    return dg.MaterializeResult(
        metadata={
            "dry_run": config.dry_run,
            "deleted" if not config.dry_run else "would_delete": len(plan.deletions),
            "protected_runs": len(plan.protected),
            "per_table": dg.MetadataValue.md(
                "| table | partitions |\n|---|---:|\n"
                + "\n".join(f"| {t} | {n} |" for t, n in per_table.iter_rows())
            ),
        }
    )
