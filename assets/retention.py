"""Retention as an asset of the nightly job: what it deleted (or would delete) is its record."""

from pathlib import Path

import dagster as dg
from pydantic import Field

from assets.history import CHANGE_POINTS, DRIFTS, FINDINGS
from assets.marts import MART_SPECS
from metrics_pipeline.orchestration.resources import (
    BaselineFileResource,
    ClockResource,
    WarehouseResource,
    not_retried,
)
from metrics_pipeline.stages.retention import (
    RetentionPolicy,
    pinned_in,
    run_retention,
)

RETENTION = dg.AssetKey(["warehouse", "retention"])


class RetentionConfig(dg.Config):
    # Checked by RetentionPolicy (whole days, at least 1; raw_days <= aggregate_days), the
    # same check as the CLI's.
    dry_run: bool = Field(default=False, description="Only report what would be deleted.")
    raw_days: int = Field(
        default=RetentionPolicy.raw_days, description="Keep raw rows this many days."
    )
    aggregate_days: int = Field(
        default=RetentionPolicy.aggregate_days, description="Keep aggregates this many days."
    )
    trash_days: int = Field(
        default=RetentionPolicy.trash_days,
        description="Keep deleted partitions restorable in the trash this many days.",
    )
    max_quiet_days: int = Field(
        default=RetentionPolicy.max_quiet_days,
        description="Refuse when now is more than this many days after the newest ingest.",
    )


@dg.asset(
    key=RETENTION,
    # Last in the nightly job: with a multi-process or Celery executor, deleting partitions
    # while the marts and history analyses read them would fail those steps.
    deps=[*(spec.key for spec in MART_SPECS), CHANGE_POINTS, DRIFTS, FINDINGS],
    group_name="warehouse",
    kinds={"parquet", "postgres"},
    description="Moves raw rows to the trash 30 days after their ingest and aggregates after a "
    "year (configurable), never the runs a baseline needs; the trash is restorable for 7 days "
    "(`metrics-pipeline retention --restore RUN_ID`); the bucket's raw files are never touched.",
)
def retention(
    context: dg.AssetExecutionContext,
    config: RetentionConfig,
    warehouse: WarehouseResource,
    baselines: BaselineFileResource,
    clock: ClockResource,
) -> dg.MaterializeResult:
    store = warehouse.get()
    now = clock.now()
    # A bad policy or a baseline file that is missing or does not parse (read as "nothing
    # pinned", its runs would be deleted) stops retention, and is not retried.
    with not_retried():
        policy = RetentionPolicy(
            config.raw_days, config.aggregate_days, config.trash_days, config.max_quiet_days
        )
        pinned = pinned_in(Path(baselines.path))
        outcome = run_retention(store, now, policy, pinned, dry_run=config.dry_run)
    plan = outcome.plan
    per_table = plan.as_frame().group_by("table").len().sort("table")
    return dg.MaterializeResult(
        metadata={
            "dry_run": config.dry_run,
            "deleted" if not config.dry_run else "would_delete": len(plan.deletions),
            "purged_from_trash" if not config.dry_run else "would_purge": len(outcome.purged),
            "protected_runs": len(plan.protected),
            "per_table": dg.MetadataValue.md(
                "| table | partitions |\n|---|---:|\n"
                + "\n".join(f"| {t} | {n} |" for t, n in per_table.iter_rows())
            ),
        }
    )
