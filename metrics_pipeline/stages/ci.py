"""The CI stage of one run, step by step: ingest, validate, summarise, baseline, judge, SLA,
alert. (The report step is ``reports.build.build_run_report``.)

Each step reads what it needs from the stores, computes with the library's pure functions,
writes its tables and returns what it did. The ``ci_stage`` assets, the CLI (``ingest``,
``demo``, ``rebuild``) and ``bench/`` call these functions, so a run ingested from the command
line is validated and summarised exactly as one the sensor picked up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from metrics_pipeline.alerts.config import AlertingConfig
from metrics_pipeline.alerts.delivery import Sender
from metrics_pipeline.alerts.lifecycle import Signals
from metrics_pipeline.alerts.service import Outcome, locked, process, withdraw_run
from metrics_pipeline.alerts.signals import history_items, run_signals
from metrics_pipeline.analysis import baselines
from metrics_pipeline.analysis.baselines import BaselineEntry, pinned_runs
from metrics_pipeline.analysis.kpi_catalog import KpiCatalog
from metrics_pipeline.analysis.sla import evaluate_run, rolling_windows
from metrics_pipeline.analysis.summary import SUMMARY_COLUMNS, summarize_run
from metrics_pipeline.analysis.triage import is_marked, rebaselined_since, rejected_runs
from metrics_pipeline.analysis.verdict_rules import VerdictRules
from metrics_pipeline.analysis.verdicts import (
    History,
    ci_alphas,
    history_noise,
    history_runs,
    judge_run,
)
from metrics_pipeline.analysis.verdicts import choose_baseline as choose_baseline_runs
from metrics_pipeline.contracts.manifest import RunManifest
from metrics_pipeline.ingest.files import (
    NOT_VALIDATED,
    IngestReport,
    Opener,
    RunValidation,
    ingest_files,
    ingest_from_store,
    validate_run,
)
from metrics_pipeline.stats.sketch import sketch_requests
from metrics_pipeline.storage import Warehouse
from metrics_pipeline.storage.objects import ObjectStore


def ingest(store: ObjectStore, warehouse: Warehouse, run_id: str, *, now: datetime) -> IngestReport:
    """Parse the upload ``raw/<suite>/<run_id>/`` into the run's partitions (replacing them)."""
    report = ingest_from_store(store, warehouse, run_id, now=now)
    warehouse.refresh_catalog()
    return report


def ingest_local(
    files: Iterable[tuple[str, Opener]],
    manifest: RunManifest,
    warehouse: Warehouse,
    *,
    now: datetime,
) -> IngestReport:
    """Parse local files (name, opener) as the run ``manifest`` describes (backfills, bench)."""
    report = ingest_files(files, manifest, warehouse, now=now)
    warehouse.refresh_catalog()
    return report


def validate(warehouse: Warehouse, report: IngestReport) -> RunValidation:
    """Great Expectations on every ingested table; the verdict goes to ``runs.valid`` (a
    file the ingest could not read, more than 1 % of the rows quarantined, or every request
    outside the run's window makes the run invalid)."""
    problems = [p for p in (report.window_problem, report.quarantine_problem) if p]
    return validate_run(warehouse, report.manifest, report.file_errors, problems)


@dataclass(frozen=True)
class Summary:
    """The run's ``run_summary`` rows and its ``latency_sketches`` rows."""

    summary: pl.DataFrame
    sketches: pl.DataFrame


def summarise(warehouse: Warehouse, run_id: str) -> Summary:
    """Per endpoint: volume, errors, throughput, latency percentiles (from requests, else from
    the tool's interval summaries); and the mergeable latency sketches."""
    # Scans, not frames: both read only the columns they use, streaming.
    requests = warehouse.scan("requests", [run_id]).select(SUMMARY_COLUMNS)
    summary = summarize_run(requests, warehouse.read("interval_stats", [run_id]))
    sketches = sketch_requests(requests)
    with warehouse.replace_partitions(run_id, ["run_summary", "latency_sketches"]) as writer:
        writer.write("run_summary", summary)
        writer.write("latency_sketches", sketches)
    warehouse.refresh_catalog()
    return Summary(summary, sketches)


def choose_baseline(warehouse: Warehouse, run_id: str, pinned: list[BaselineEntry]) -> list[str]:
    """The runs ``run_id`` is compared with (``verdicts.choose_baseline``), stored in
    ``run_baselines`` in order."""
    runs = warehouse.read("runs")
    candidate = runs.filter(pl.col("run_id") == run_id).row(0, named=True)
    chosen = choose_baseline_runs(
        runs,
        candidate,
        rejected(warehouse),
        summaries=warehouse.read("run_summary"),
        pinned=pinned_runs(
            pinned, candidate["suite"], candidate["scenario"], candidate["environment"]
        ),
        since=_rebaselined_since(warehouse, candidate),
    )
    ingested = dict(zip(runs["run_id"], runs["ingested_at"], strict=True))
    warehouse.write_partition(
        "run_baselines",
        run_id,
        pl.DataFrame(
            {
                "run_id": run_id,
                "baseline_run_id": chosen,
                "position": range(len(chosen)),
                # conform() gives the column its type, also when no run was chosen.
                "baseline_ingested_at": [ingested[run] for run in chosen],
            }
        ),
    )
    return chosen


def stale_judgements(warehouse: Warehouse) -> pl.DataFrame:
    """The valid runs judged against a baseline run ingested again since
    (:func:`~metrics_pipeline.analysis.baselines.stale_judgements`; runs whose ingest is being
    validated wait for it): their baseline, verdicts, alerts and report are to be made again,
    where ``judgeable``: the run still has its raw rows (retention keeps a run's aggregates,
    its verdicts among them, long after its requests; judging it without them would replace
    its verdicts with "no data")."""
    runs = warehouse.read("runs")
    unsettled = runs.filter(pl.col("invalid_reason") == NOT_VALIDATED)["run_id"]
    valid = runs.filter(pl.col("valid"))["run_id"]
    stale = baselines.stale_judgements(runs, warehouse.read("run_baselines"), unsettled)
    raw = {*warehouse.run_ids("requests"), *warehouse.run_ids("interval_stats")}
    return stale.filter(pl.col("run_id").is_in(valid.implode())).with_columns(
        judgeable=pl.col("run_id").is_in(sorted(raw))
    )


@dataclass(frozen=True)
class Judgement:
    """The run's verdict rows and the baseline runs they compare with."""

    verdicts: pl.DataFrame
    baseline_runs: list[str]
    alphas: Mapping[str, float]  # each metric's significance level (its rows' CI level)

    @property
    def regressions(self) -> pl.DataFrame:
        return self.verdicts.filter(pl.col("regression"))


def _rebaselined_since(warehouse: Warehouse, candidate: dict):
    """The start of the combination's latest step triaged as expected that started before the
    candidate (None: none), before which runs are no baseline nor noise history any more."""
    return rebaselined_since(
        warehouse.read("triage"),
        candidate["suite"],
        candidate["scenario"],
        candidate["environment"],
        before=candidate.get("started_at"),
    )


def rejected(warehouse: Warehouse) -> set[str]:
    """The warehouse's runs that are never a baseline run nor part of a noise history
    (:func:`~metrics_pipeline.analysis.triage.rejected_runs`)."""
    return rejected_runs(
        warehouse.scan("verdicts"), warehouse.read("triage"), warehouse.read("runs")
    )


def noise_history(
    warehouse: Warehouse, candidate: dict, baseline_runs: list[str]
) -> History | None:
    """The run-to-run noise measured on the candidate's combination (``suite``, ``scenario``,
    ``environment``): the spread of its last accepted runs that started before
    ``candidate["started_at"]``, since its latest accepted step, other than ``baseline_runs``
    (see :func:`~metrics_pipeline.analysis.verdicts.history_runs`); ``None`` when there is
    no such run. The noise of a statistic needs 2 runs with a value of it.

    The candidate need not be stored: the ``compare`` gate passes its files' run with an
    empty ``run_id``.
    """
    earlier = history_runs(
        warehouse.read("runs"),
        candidate,
        rejected(warehouse) - {candidate["run_id"]},
        baseline_runs,
        since=_rebaselined_since(warehouse, candidate),
    )
    return history_noise(warehouse.read("run_summary", earlier)) if earlier else None


def judge(warehouse: Warehouse, run_id: str, rules: VerdictRules | None = None) -> Judgement:
    """Verdict per endpoint and metric against the stored baseline runs (``verdicts``), with
    the run-to-run noise measured on the combination's earlier accepted runs and the
    thresholds of ``rules`` for the run's suite, scenario and environment (default: the
    built-in ones)."""
    baseline_runs = warehouse.read("run_baselines", [run_id])["baseline_run_id"].to_list()
    runs = warehouse.read("runs")
    candidate = runs.filter(pl.col("run_id") == run_id).row(0, named=True)
    policy = (rules or VerdictRules()).policy(
        candidate["suite"], candidate["scenario"], candidate["environment"]
    )
    table = judge_run(
        warehouse.read("requests", [run_id]),
        warehouse.read("requests", baseline_runs),
        baseline_runs,
        policy,
        candidate_intervals=warehouse.read("interval_stats", [run_id]),
        baseline_intervals=warehouse.read("interval_stats", baseline_runs),
        candidate_resources=warehouse.read("resources", [run_id]),
        baseline_resources=warehouse.read("resources", baseline_runs),
        history=noise_history(warehouse, candidate, baseline_runs),
    )
    warehouse.write_partition("verdicts", run_id, table)
    warehouse.refresh_catalog()
    return Judgement(table, baseline_runs, ci_alphas(table, policy))


def _same_combination(run: dict) -> pl.Expr:
    return (
        (pl.col("suite") == run["suite"])
        & (pl.col("scenario") == run["scenario"])
        & (pl.col("environment") == run["environment"])
    )


@dataclass(frozen=True)
class SlaResult:
    """The run's evaluations and the rolling windows of its combination."""

    evaluations: pl.DataFrame
    windows: pl.DataFrame


def evaluate_slas(
    warehouse: Warehouse, run_id: str, catalog: KpiCatalog, *, now: datetime
) -> SlaResult:
    """The run against the KPI catalog (``sla_evaluations``), then the 7- and 30-day windows
    ending at ``now`` of every combination (``sla_windows``)."""
    runs = warehouse.read("runs")
    run = runs.filter(pl.col("run_id") == run_id).row(0, named=True)
    table = evaluate_run(
        catalog,
        run,
        requests=warehouse.read("requests", [run_id]),
        intervals=warehouse.read("interval_stats", [run_id]),
        resources=warehouse.read("resources", [run_id]),
        kpi_points=warehouse.read("kpi_points", [run_id]),
        now=now,
    )
    warehouse.write_partition("sla_evaluations", run_id, table)
    windows = refresh_sla_windows(warehouse, catalog, now=now)
    return SlaResult(table, windows.filter(_same_combination(run)))


def refresh_sla_windows(
    warehouse: Warehouse, catalog: KpiCatalog, *, now: datetime
) -> pl.DataFrame:
    """The 7- and 30-day windows ending at ``now`` of every combination, from every stored
    evaluation (``sla_windows``). Each run's evaluation rewrites them, and so does the
    nightly job: without runs the windows still move on, and a spent budget of runs a week
    old stops firing its alert."""
    # One writer at a time, from all evaluations.
    with locked(warehouse):
        windows = rolling_windows(
            warehouse.read("sla_evaluations"), warehouse.read("runs"), catalog, now
        )
        warehouse.write_snapshot("sla_windows", windows)
    warehouse.refresh_catalog()
    return windows


def withdraw_alerts(
    warehouse: Warehouse,
    run_id: str,
    config: AlertingConfig,
    senders: dict[str, Sender],
    *,
    now: datetime,
    notify: bool = True,
) -> Outcome:
    """Resolve the alerts only ``run_id``'s earlier version showed, when its new version is
    invalid (``alerts.lifecycle.withdraw``): the ingest emptied the verdicts and SLA
    evaluations they came from, and an invalid run gets none, so nothing else would."""
    outcome = withdraw_run(warehouse, config, run_id, now, senders, notify=notify)
    warehouse.refresh_catalog()
    return outcome


def raise_alerts(
    warehouse: Warehouse,
    run_id: str,
    config: AlertingConfig,
    senders: dict[str, Sender],
    *,
    now: datetime,
    notify: bool = True,
) -> Outcome:
    """Open, update or resolve the run's alerts (regressions, SLA breaches, missing endpoints
    and metrics) and deliver what is due (with ``notify`` false, as in a rebuild, nothing is
    queued nor delivered: see ``alerts.service.process``).

    Overdue expected runs are not the run's business: whether a suite is overdue depends on
    every upload, and while a backfill (the demo's nights, a late batch) judges its oldest run
    the newer ones still wait in the bucket, so a run's evaluation would open a missing_run
    alert for a suite that is not missing. ``alert_delivery_sensor`` (every minute) and the
    nightly and weekly ``alerts/findings`` judge that on the warehouse as it stands.
    """
    runs = warehouse.read("runs")
    run = runs.filter(pl.col("run_id") == run_id).row(0, named=True)
    combination = runs.filter(_same_combination(run))["run_id"].to_list()
    resource_metrics = (
        warehouse.scan("resources", combination).select("run_id", "metric").unique().collect()
    )
    history = history_items(runs, warehouse.read("run_summary", combination), resource_metrics, run)
    signals = run_signals(
        run,
        warehouse.read("verdicts", [run_id]),
        warehouse.read("sla_evaluations", [run_id]),
        history=history,
        config=config,
    )
    # Conditions a person marked expected or invalid (`alerts expected|invalid`) no longer
    # alert for the runs the mark covers.
    triage = warehouse.read("triage")
    signals = Signals(
        [s for s in signals.found if not is_marked(vars(s), s.run_started_at, triage)],
        signals.scopes,
    )
    outcome = process(warehouse, config, signals, now, senders, notify=notify)
    warehouse.refresh_catalog()
    return outcome
