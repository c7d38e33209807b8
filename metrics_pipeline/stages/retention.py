"""Retention: raw rows for 30 days, aggregates for a year (both configurable), never what a
baseline in use still needs. The JSONL in the bucket stays the source of truth: nothing here
touches it, and ``rebuild`` can bring any run back.

A run's age counts from its ingest (``runs.ingested_at``), not from its start: a run uploaded
late is as new as its upload. Retention refuses to run (:class:`RetentionError`) on a policy
that makes no sense, on a configured baseline file that is missing, and when ``now`` lies far
after the newest ingest (a clock or ``--now`` years ahead would age every run at once).
Deleted partitions go to the retention trash (:mod:`metrics_pipeline.storage.trash`), stay
restorable for ``trash_days`` and are purged by a later pass.

Kept whatever their age:

* the runs pinned in the baseline file;
* per combination, the last ``BASELINE_RUNS`` accepted runs (the next candidate's rolling
  baseline);
* the baseline runs of every run that keeps data: the explicit ``baseline`` of its manifest
  (``runs.baseline``) and the runs it was compared with (``run_baselines``). They are kept in
  the retention classes the run itself keeps: the baselines of a run whose raw rows remain keep
  everything (a re-judged run reads its baselines' requests), those of a run that keeps only
  aggregates keep their aggregates (its report lists them). Only one step: a baseline's own
  baselines are not kept for it, else every run would hold its predecessors for ever.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from metrics_pipeline.analysis.baselines import (
    BASELINE_RUNS,
    accepted_runs,
    load_baselines,
    must_exist,
)
from metrics_pipeline.common.clock import as_utc
from metrics_pipeline.common.errors import MetricsPipelineError
from metrics_pipeline.contracts.tables import tables_with
from metrics_pipeline.stages.ci import rejected
from metrics_pipeline.storage import Warehouse
from metrics_pipeline.storage.trash import Restored, RetentionTrash, TrashedPartition

RAW_TABLES = tables_with("raw")
AGGREGATE_TABLES = tables_with("aggregate")
# Why a run is kept: the keys of RetentionPlan.reasons' values.
PINNED = "pinned"
RECENT = "recent accepted"
EXPLICIT = "explicit baseline"
COMPARED = "run_baselines"


class RetentionError(MetricsPipelineError, ValueError):
    """What retention refuses to work with (a policy, a clock, a missing baseline file, a run
    not in the trash); the message says what and how to go on."""


@dataclass(frozen=True)
class RetentionPolicy:
    """How long partitions stay, in whole days (each at least 1).

    Parameters
    ----------
    raw_days
        Raw tables' partitions (requests, resources, events, ...) of runs ingested longer ago
        go.
    aggregate_days
        Aggregate tables' partitions (run_summary, verdicts, the ``runs`` catalog row, ...)
        likewise. At least ``raw_days``: a run's raw rows without its catalog row would be
        orphans that no later pass finds.
    trash_days
        How long deleted partitions stay in the trash, restorable, before a pass purges them.
    max_quiet_days
        Retention refuses when ``now`` is more than this many days after the newest ingest.
        Six weeks by default: a quiet week or a holiday month passes, while a clock or a
        ``--now`` a year or more ahead (which would age every run at once) is refused. Well
        below ``aggregate_days`` on purpose: a year's typo in ``--now`` must not pass.

    Raises
    ------
    RetentionError
        On a count that is not a whole number of at least 1, or ``raw_days > aggregate_days``.
    """

    raw_days: int = 30
    aggregate_days: int = 365
    trash_days: int = 7
    max_quiet_days: int = 45

    def __post_init__(self) -> None:
        # Checked here, not by each entry point: the CLI, the asset's config and any caller
        # build this class, and a negative count would put the cutoff in the future (every run
        # "old"), zero would delete today's runs.
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise RetentionError(
                    f"{spec.name} must be a whole number of days, at least 1, not {value!r}"
                )
        if self.raw_days > self.aggregate_days:
            raise RetentionError(
                f"raw_days ({self.raw_days}) must not exceed aggregate_days "
                f"({self.aggregate_days}): a run's raw rows cannot outlive its catalog row"
            )

    @property
    def windows(self) -> dict[tuple[str, ...], timedelta]:
        """Each retention class's tables and how long they stay."""
        return {
            RAW_TABLES: timedelta(days=self.raw_days),
            AGGREGATE_TABLES: timedelta(days=self.aggregate_days),
        }


@dataclass(frozen=True)
class RetentionPlan:
    """Partitions to delete at ``now``, as (table, run_id); the runs baselines keep, and why
    (``reasons``: run -> kinds among ``pinned``, ``recent accepted``, ``explicit baseline``,
    ``run_baselines``)."""

    deletions: list[tuple[str, str]]
    protected: list[str]
    now: datetime
    reasons: dict[str, list[str]] = field(default_factory=dict)

    def as_frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            self.deletions, schema={"table": pl.String, "run_id": pl.String}, orient="row"
        )


@dataclass(frozen=True)
class RetentionOutcome:
    """A pass: its plan, what went to the trash and what the trash purged (for a dry run,
    what would be purged)."""

    plan: RetentionPlan
    trashed: list[TrashedPartition]
    purged: list[TrashedPartition]


def pinned_in(path: Path) -> list[str]:
    """The runs the baseline file at ``path`` pins.

    Raises
    ------
    RetentionError
        When the file is missing and is not at the default location (see
        :func:`~metrics_pipeline.analysis.baselines.must_exist`): reading it as "nothing
        pinned" would delete the runs it pins.
    BaselineFileError
        When the file breaks the schema.
    """
    if not path.exists() and must_exist(path):
        raise RetentionError(
            f"retention refuses to run: the baseline file {path} does not exist, and the runs "
            "it pins would be deleted as unpinned. Point METRICS_BASELINES at it (a relative "
            "path is taken under METRICS_PROJECT_DIR, by default the checkout), or create it."
        )
    return sorted({run for entry in load_baselines(path) for run in entry.runs})


def recent_baselines(runs: pl.DataFrame, regressed: set[str]) -> set[str]:
    """Per combination, the last ``BASELINE_RUNS`` accepted runs: the next candidate's rolling
    baseline."""
    latest = (
        accepted_runs(runs, regressed)
        .group_by("suite", "scenario", "environment")
        .tail(BASELINE_RUNS)
    )
    return set(latest["run_id"])


def ingested(runs: pl.DataFrame) -> dict[str, datetime]:
    """When each run was ingested; a run catalogued without ``ingested_at`` (a hand-written
    row) ages from its start, as retention did before it read ingest times."""
    frame = runs.select("run_id", at=pl.coalesce("ingested_at", "started_at")).drop_nulls("at")
    return dict(zip(frame["run_id"], frame["at"], strict=True))


def check_clock(born: dict[str, datetime], now: datetime, policy: RetentionPolicy) -> None:
    """Refuse (:class:`RetentionError`) when ``now`` is more than ``max_quiet_days`` after the
    newest ingest in ``born``; an empty warehouse passes (there is nothing to delete)."""
    if not born:
        return
    newest_run, newest = max(born.items(), key=lambda item: item[1])
    quiet = now - newest
    if quiet > timedelta(days=policy.max_quiet_days):
        raise RetentionError(
            f"retention refuses to run at {now:%Y-%m-%d %H:%M} UTC: the newest run "
            f"({newest_run}) was ingested {quiet.days} days before, more than max_quiet_days "
            f"({policy.max_quiet_days}). A clock (or --now, METRICS_NOW) that far ahead would "
            "age every run at once. If the time is right and nothing was uploaded since, run "
            "`metrics-pipeline retention --force`, or raise max_quiet_days (--max-quiet-days, "
            "the nightly asset's config)."
        )


def plan_retention(
    runs: pl.DataFrame,
    present: dict[str, list[str]],
    now: datetime,
    policy: RetentionPolicy,
    *,
    pinned: set[str],
    recent: set[str],
    run_baselines: pl.DataFrame,
    force: bool = False,
) -> RetentionPlan:
    """What to delete at ``now``: each class's partitions of runs ingested longer ago than its
    window, except the runs baselines keep (see the module docstring).

    ``present`` maps each table to the run ids it holds (only existing partitions are listed);
    partitions of runs without a catalog row are never deleted (their age is unknown).
    ``run_baselines`` is that table (``run_id``, ``baseline_run_id``). ``force`` skips
    :func:`check_clock`.
    """
    now = as_utc(now)
    born = ingested(runs)
    if not force:
        check_clock(born, now, policy)
    always: dict[str, set[str]] = {run: {PINNED} for run in pinned}
    for run in recent:
        always.setdefault(run, set()).add(RECENT)
    explicit = runs.filter(
        pl.col("baseline").is_not_null() & (pl.col("baseline") != "auto")
    ).select("run_id", baseline_run_id="baseline", kind=pl.lit(EXPLICIT))
    compared = run_baselines.select("run_id", "baseline_run_id", kind=pl.lit(COMPARED))
    edges = list(pl.concat([explicit, compared]).iter_rows())

    deletions = []
    reasons = {run: set(kinds) for run, kinds in always.items()}
    for tables, window in policy.windows.items():
        cutoff = now - window
        keeps = {run for run, at in born.items() if at >= cutoff} | set(always)
        needed: dict[str, set[str]] = {}
        for candidate, baseline, kind in edges:
            if candidate in keeps:
                needed.setdefault(baseline, set()).add(kind)
        for run, kinds in needed.items():
            reasons.setdefault(run, set()).update(kinds)
        deletions += [
            (table, run_id)
            for table in tables
            for run_id in present.get(table, [])
            if run_id in born
            and born[run_id] < cutoff
            and run_id not in always
            and run_id not in needed
        ]
    kept = {run: sorted(kinds) for run, kinds in reasons.items() if run in born}
    return RetentionPlan(sorted(deletions), sorted(kept), now, kept)


def plan_for(
    warehouse: Warehouse,
    now: datetime,
    policy: RetentionPolicy,
    pinned: list[str],
    *,
    force: bool = False,
) -> RetentionPlan:
    """The retention plan of a warehouse at ``now``, ``pinned`` being the baseline file's runs
    (:func:`pinned_in`)."""
    runs = warehouse.read("runs")
    regressed = rejected(warehouse)
    present = {table: warehouse.run_ids(table) for table in (*RAW_TABLES, *AGGREGATE_TABLES)}
    return plan_retention(
        runs,
        present,
        now,
        policy,
        pinned=set(pinned),
        recent=recent_baselines(runs, regressed),
        run_baselines=warehouse.read("run_baselines"),
        force=force,
    )


def apply_plan(warehouse: Warehouse, plan: RetentionPlan) -> int:
    """Move the planned partitions to the trash (Parquet and, when mirrored, Postgres), in one
    pass stamped ``plan.now``; the catalog rows go last so a crash midway leaves runs that the
    next pass still finds. The number of partitions moved."""
    return len(RetentionTrash(warehouse).trash(_catalog_last(plan), plan.now))


def _catalog_last(plan: RetentionPlan) -> list[tuple[str, str]]:
    return sorted(plan.deletions, key=lambda d: d[0] == "runs")


def run_retention(
    warehouse: Warehouse,
    now: datetime,
    policy: RetentionPolicy,
    pinned: list[str],
    *,
    dry_run: bool = False,
    force: bool = False,
) -> RetentionOutcome:
    """One pass: plan, move to the trash, purge the trash's passes older than ``trash_days``.

    The plan (and so the clock check) comes first: a clock far ahead must not purge the trash
    either. A dry run changes nothing and reports what would be trashed and purged.
    """
    plan = plan_for(warehouse, now, policy, pinned, force=force)
    trash = RetentionTrash(warehouse)
    grace = timedelta(days=policy.trash_days)
    if dry_run:
        return RetentionOutcome(plan, [], trash.expired(plan.now, grace))
    trashed = trash.trash(_catalog_last(plan), plan.now)
    purged = trash.purge(plan.now, grace)
    if trashed:
        warehouse.refresh_catalog()
    return RetentionOutcome(plan, trashed, purged)


def restore_run(warehouse: Warehouse, run_id: str) -> Restored:
    """Bring ``run_id``'s partitions back from the retention trash (and into the mirror).

    Raises
    ------
    RetentionError
        When the trash holds nothing of ``run_id``.
    """
    trash = RetentionTrash(warehouse)
    if not trash.entries(run_id):
        held = sorted({entry.run_id for entry in trash.entries()})
        raise RetentionError(
            f"run {run_id!r} has no partition in the retention trash "
            f"({trash.root}); it holds "
            + (", ".join(held) if held else "nothing")
            + ". Past the grace period, `metrics-pipeline rebuild` brings runs back from the "
            "bucket."
        )
    restored = trash.restore(run_id)
    if restored.restored:
        warehouse.refresh_catalog()
    return restored
