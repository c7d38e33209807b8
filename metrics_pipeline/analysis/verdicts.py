"""Baseline choice and per-run regression verdicts (the CI stage)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np
import polars as pl

from metrics_pipeline.analysis.baselines import BASELINE_RUNS, accepted_runs, dynamic_baseline
from metrics_pipeline.analysis.intervals import one_source, percentile_inputs
from metrics_pipeline.analysis.series import RESOURCES
from metrics_pipeline.common.noise import (
    DEFAULT_ERROR_RATE_NOISE,
    DEFAULT_LATENCY_JITTER_MS,
    DEFAULT_RUN_NOISE,
)
from metrics_pipeline.common.severity import ABSOLUTE_CHANGE
from metrics_pipeline.common.text import md
from metrics_pipeline.contracts.tables import conform, empty
from metrics_pipeline.formats.base import ALL_ENDPOINTS
from metrics_pipeline.stats import (
    Comparison,
    RunNoise,
    RunStatistic,
    benjamini_hochberg,
    compare_runs,
    count_rate_statistic,
    interval_quantile_statistics,
    mean_statistic,
    moderated_noise,
    quantile_statistics,
    rate_statistic,
    run_spread,
    series_statistic,
    taken_apart,
)
from metrics_pipeline.stats.compare import Scale

# The verdict of one endpoint x metric row, from worst to best: ``missing`` is an endpoint of
# the baseline runs that this run never called, ``suspect`` is worse by more than the threshold
# as the values stand but could not be tested (too few values in a run), ``no baseline`` had
# nothing to compare with.
VERDICTS = ("regression", "trade-off", "missing", "suspect", "improvement", "ok", "no baseline")


@dataclass(frozen=True)
class MetricRule:
    """When a change of one metric counts: worse (or better) by more than ``threshold``.

    A regression needs all of:

    - the estimated worsening above ``threshold`` (20 %: "worse by more than 20 %");
    - a Benjamini-Hochberg adjusted p below ``alpha`` across the run's tests that can decide
      (see :func:`_decides`), from a test that includes the run-to-run noise (see
      :func:`~metrics_pipeline.stats.compare_runs`);
    - a worsening of at least ``min_effect`` in the metric's units, and more than the
      resolution of the measured values (one whole-millisecond step is not evidence).

    An improvement is the mirror image. ``run_noise`` is the prior spread between identical
    runs, used only with one baseline run and no history of the combination.
    """

    threshold: float = 0.20
    alpha: float = 0.05
    min_effect: float = 0.0
    run_noise: float = DEFAULT_RUN_NOISE


# Metrics whose run-noise prior is their own: a run_noise given for every metric (--run-noise,
# a rules entry without `metrics`) is the latencies' spread and leaves theirs alone (an error
# rate moves by a third between identical runs whatever the machine); a rule that names the
# metric sets it.
OWN_RUN_NOISE = frozenset({"error_rate"})

DEFAULT_RULES = {
    "latency_p50": MetricRule(min_effect=1.0),
    "latency_p95": MetricRule(min_effect=1.0),
    "latency_p99": MetricRule(min_effect=1.0),
    "error_rate": MetricRule(min_effect=0.005, run_noise=DEFAULT_ERROR_RATE_NOISE),
    "throughput": MetricRule(min_effect=0.5),
    # A per-second CPU sample counts the kernel's 100 Hz ticks (1 % of a core each): a few % of
    # a core is the sampler's noise. RSS moves by allocator arenas of several MiB.
    "proc_cpu_pct": MetricRule(min_effect=5.0),
    "proc_rss_bytes": MetricRule(min_effect=16 * 2**20),
    "rss_bytes": MetricRule(min_effect=16 * 2**20),
    "resource": MetricRule(),
}


@dataclass(frozen=True)
class VerdictPolicy:
    """Per-metric rules (``resource`` covers every resource metric)."""

    rules: Mapping[str, MetricRule] = field(default_factory=lambda: dict(DEFAULT_RULES))

    def rule(self, metric: str) -> MetricRule:
        return self.rules.get(metric) or self.rules["resource"]

    def prior(self, metric: str) -> RunNoise:
        """The run-noise prior of ``metric``: its rule's ``run_noise``, plus the client-side
        timing jitter for latencies."""
        jitter = DEFAULT_LATENCY_JITTER_MS if metric in LATENCY_METRICS else 0.0
        return RunNoise.prior(self.rule(metric).run_noise, jitter)

    def overridden(self, **changes: float | None) -> VerdictPolicy:
        """This policy with ``threshold``, ``alpha``, ``run_noise`` or ``min_effect`` set for
        every metric (``None``: kept; ``run_noise`` not for :data:`OWN_RUN_NOISE`)."""
        changes = {name: value for name, value in changes.items() if value is not None}
        return VerdictPolicy(
            {m: replace(r, **for_every_metric(m, changes)) for m, r in self.rules.items()}
        )

    @classmethod
    def uniform(
        cls, threshold: float = 0.20, alpha: float = 0.05, run_noise: float | None = None
    ) -> VerdictPolicy:
        """The default absolute floors with one threshold and alpha for every metric, and one
        run-noise prior if given (else each metric's default; :data:`OWN_RUN_NOISE` keep
        theirs either way)."""
        return cls().overridden(threshold=threshold, alpha=alpha, run_noise=run_noise)


def for_every_metric(metric: str, changes: dict[str, float]) -> dict[str, float]:
    """The part of ``changes`` given for every metric that applies to ``metric`` (see
    :data:`OWN_RUN_NOISE`)."""
    if metric in OWN_RUN_NOISE:
        return {name: value for name, value in changes.items() if name != "run_noise"}
    return changes


# metric -> the quantile compared on successful requests' latencies, and the interval_stats
# column of tools that only report aggregates
LATENCY_METRICS = {"latency_p50": "p50", "latency_p95": "p95", "latency_p99": "p99"}
# Resource metrics where more is worse. Those of the service's own processes are judged; those
# of the whole machine are reported, never judged: other tenants move them by 20 % and more
# between identical runs, and no number of baseline runs tells their load from the service's.
PROCESS_RESOURCES = ("proc_rss_bytes", "proc_cpu_pct", "rss_bytes", "spill_pct")
HOST_RESOURCES = ("cpu_pct", "mem_pct", "mem_used_bytes", "gpu_pct")
RESOURCE_METRICS = PROCESS_RESOURCES + HOST_RESOURCES
# (comparison to make, note) of one endpoint
Judged = list[tuple["_Pending", str | None]]
# (endpoint, metric) -> the measured run noise of that statistic in the combination's history
History = Mapping[tuple[str, str], RunNoise]


def choose_baseline(
    runs: pl.DataFrame,
    candidate: dict,
    regressed: set[str],
    *,
    summaries: pl.DataFrame | None = None,
    pinned: list[str] | None = None,
    n: int = BASELINE_RUNS,
    since: datetime | None = None,
) -> list[str]:
    """Run ids to compare ``candidate`` (a ``runs`` row) with, in order of precedence:

    1. an explicit ``baseline`` run id in its manifest;
    2. the runs pinned for its combination in the baseline file (``pinned``), if known here;
    3. a rolling window: the last ``n`` accepted runs (valid, not judged a regression) of the
       same suite, scenario and environment that started before it (and not before
       ``since``, the start of a step triaged as expected), leaving out outlier runs (IQR
       rule on their relative p50 latency, given ``summaries``).
    """
    known = set(runs["run_id"])
    explicit = candidate.get("baseline")
    if explicit and explicit != "auto":
        return [explicit] if explicit in known else []
    if pinned and (
        chosen := [run for run in pinned if run in known and run != candidate["run_id"]]
    ):
        return chosen
    previous = _previous_accepted(runs, candidate, regressed, since)
    return dynamic_baseline(previous, _or_empty(summaries, "run_summary"), n)


# Earlier runs whose spread measures the run-to-run noise of a combination.
HISTORY_RUNS = 20


def history_runs(
    runs: pl.DataFrame,
    candidate: dict,
    regressed: set[str],
    baseline_runs: list[str],
    n: int = HISTORY_RUNS,
    since: datetime | None = None,
) -> list[str]:
    """The last ``n`` accepted runs of the candidate's combination that started before it,
    other than its baseline runs (which count on their own): the identical-setup runs whose
    spread measures the run-to-run noise (see :func:`history_noise`)."""
    previous = _previous_accepted(runs, candidate, regressed, since)["run_id"].to_list()
    return [run for run in previous if run not in set(baseline_runs)][-n:]


def _previous_accepted(
    runs: pl.DataFrame, candidate: dict, regressed: set[str], since: datetime | None = None
) -> pl.DataFrame:
    """Accepted runs of the candidate's suite, scenario and environment before it (and from
    ``since`` on, when given)."""
    previous = accepted_runs(runs, regressed | {candidate["run_id"]}).filter(
        (pl.col("suite") == candidate["suite"])
        & (pl.col("scenario") == candidate["scenario"])
        & (pl.col("environment") == candidate["environment"])
        & (pl.col("started_at") < candidate["started_at"])
    )
    return previous if since is None else previous.filter(pl.col("started_at") >= since)


def judge_run(
    candidate: pl.DataFrame,
    baseline: pl.DataFrame,
    baseline_runs: list[str],
    policy: VerdictPolicy = VerdictPolicy(),
    *,
    candidate_intervals: pl.DataFrame | None = None,
    baseline_intervals: pl.DataFrame | None = None,
    candidate_resources: pl.DataFrame | None = None,
    baseline_resources: pl.DataFrame | None = None,
    history: History | None = None,
) -> pl.DataFrame:
    """Compare a candidate run with its baseline runs, one statistic per run.

    Per-request rows are compared where an endpoint has them on both sides (latency p50, p95
    and p99 of successful requests, error rate, throughput per second); otherwise the
    ``interval_stats`` rows of tools that only report aggregates (a run's percentiles are
    those of all its intervals' requests). Resource usage is compared per metric over all
    hosts.

    The baseline's ``run_id`` column tells its runs apart: each statistic is computed per run
    and compared under a random run effect (:func:`~metrics_pipeline.stats.compare_runs`),
    whose size comes from the baseline runs, the combination's ``history`` (see
    :func:`history_noise`) or the policy's prior; the row's ``noise`` says which. Each row is
    then judged by its metric's :class:`MetricRule` with Benjamini-Hochberg adjusted p-values.

    Returns one row per endpoint x metric (``verdicts`` schema); ``verdict`` is one of
    :data:`VERDICTS`: ``trade-off`` is a resource that got worse while latency got better;
    ``baseline_runs`` lists the runs the row was compared with (a run with only interval rows
    does not count for an endpoint judged on per-request rows).
    """
    history = history or {}
    candidate_intervals = _or_empty(candidate_intervals, "interval_stats")
    if candidate.height and baseline.height:
        # Per-request rows cover every endpoint; a tool's overall total would judge them twice.
        # (Against baseline runs with totals alone, the totals are what can be compared.)
        candidate_intervals = candidate_intervals.filter(pl.col("endpoint") != ALL_ENDPOINTS)
    baseline_intervals = _or_empty(baseline_intervals, "interval_stats")
    run_ids = pl.concat([candidate["run_id"], candidate_intervals["run_id"]]).drop_nulls()
    run_id = run_ids[0] if len(run_ids) else None
    # The distinct names, not a Python object per request (a run has millions).
    candidate_endpoints = _names(candidate["endpoint"])
    request_endpoints = candidate_endpoints & _names(baseline["endpoint"])
    rows: list[dict] = []
    comparisons: list[_Pending | None] = []
    spans = _run_spans(pl.concat([candidate_intervals, baseline_intervals]))
    for endpoint in sorted(candidate_endpoints | _names(candidate_intervals["endpoint"])):
        if endpoint in request_endpoints:
            base_rows = baseline.filter(pl.col("endpoint") == endpoint)
            judged = _judge_requests(candidate.filter(pl.col("endpoint") == endpoint), base_rows)
        else:
            base_rows = one_source(baseline_intervals.filter(pl.col("endpoint") == endpoint))
            judged = _judge_intervals(
                one_source(candidate_intervals.filter(pl.col("endpoint") == endpoint)),
                base_rows,
                spans,
            )
        if not judged:
            rows.append({"endpoint": endpoint, "metric": "all", "note": "no baseline data"})
            comparisons.append(None)
        used = _runs_of(base_rows, baseline_runs)
        for pending, note in judged:
            rows.append(
                {"endpoint": endpoint, "metric": pending.metric, "note": note, "used": used}
            )
            comparisons.append(pending)
    absent = _names(baseline["endpoint"]) | _names(baseline_intervals["endpoint"])
    for endpoint in sorted(absent - {row["endpoint"] for row in rows} - {ALL_ENDPOINTS}):
        rows.append({"endpoint": endpoint, "metric": "all", "note": MISSING, "verdict": "missing"})
        comparisons.append(None)
    baseline_resources = _or_empty(baseline_resources, "resources")
    for pending, note in _judge_resources(
        _or_empty(candidate_resources, "resources"), baseline_resources
    ):
        used = _runs_of(
            baseline_resources.filter(pl.col("metric") == pending.metric), baseline_runs
        )
        rows.append({"endpoint": RESOURCES, "metric": pending.metric, "note": note, "used": used})
        comparisons.append(pending)
    apart = taken_apart(_run_starts(baseline, baseline_intervals, baseline_resources).values())
    pending = comparisons
    comparisons = _compare_all(rows, comparisons, policy, history, apart)

    tested = [
        i
        for i, (row, c) in enumerate(zip(rows, comparisons, strict=True))
        if c is not None and math.isfinite(c.p_value) and _decides(row, pending[i])
    ]
    adjusted = benjamini_hochberg([comparisons[i].p_value for i in tested]) if tested else []
    p_adjusted = dict(zip(tested, adjusted, strict=True))
    for i, (row, result) in enumerate(zip(rows, comparisons, strict=True)):
        row["run_id"] = run_id
        # The baseline runs this row was compared with (all of them where nothing was).
        row["baseline_runs"] = ",".join(row.pop("used", None) or baseline_runs)
        if result is None:
            row |= {"regression": False, "verdict": row.get("verdict", "no baseline")}
            continue
        adjusted_p = p_adjusted.get(i, math.nan)
        # compare_runs required the size and the floors; the significance must survive the
        # multiple-testing adjustment across the run.
        significant = adjusted_p < policy.rule(row["metric"]).alpha
        reported_only = row["note"] == HOST_NOT_JUDGED
        row |= {
            "baseline": result.baseline,
            "candidate": result.candidate,
            "change": result.change,
            "ci_low": result.ci_low,
            "ci_high": result.ci_high,
            "p_value": result.p_value,
            "p_adjusted": adjusted_p,
            "n_baseline": result.n_baseline,
            "n_candidate": result.n_candidate,
            "noise": result.noise or None,
            "regression": bool(result.regression and significant and not reported_only),
            "improvement": bool(result.improvement and significant and not reported_only),
            "suspect": bool(result.suspect and not reported_only),
            "significant": bool(significant),
        }
    latency_better = any(
        row.get("improvement") and row["metric"] in LATENCY_METRICS for row in rows
    )
    for row in rows:
        improvement, suspect = row.pop("improvement", False), row.pop("suspect", False)
        significant = row.pop("significant", False)
        if "verdict" in row:
            continue
        if row["regression"]:
            trade_off = row["endpoint"] == RESOURCES and latency_better
            row["verdict"] = "trade-off" if trade_off else "regression"
        else:
            row["verdict"] = "improvement" if improvement else "suspect" if suspect else "ok"
        if row["verdict"] == "ok" and significant:
            note = row["note"]
            row["note"] = SIGNIFICANT_SMALL if note is None else f"{note}; {SIGNIFICANT_SMALL}"
    return conform("verdicts", pl.DataFrame(rows, infer_schema_length=None))


def _runs_of(rows: pl.DataFrame, baseline_runs: list[str]) -> list[str]:
    """The baseline runs that have ``rows``, in baseline order."""
    present = _names(rows["run_id"])
    return [run for run in baseline_runs if run in present]


def _names(column: pl.Series) -> set:
    """``set(column)``, from its distinct values."""
    return set(column.unique())


def _decides(row: dict, pending: _Pending) -> bool:
    """Whether a tested row belongs to the family of the Benjamini-Hochberg adjustment: the
    tests whose outcome can become a verdict.

    Left out are the rows reported but never judged (whole-machine resources) and a rate with
    no event in any run (no error on either side): given that total its p-value is 1 whatever
    happens, so it can never be a discovery, and a multiple-testing procedure for discrete
    tests leaves it out of the count (Tarone 1990; Gilbert 2005 for the false discovery rate).
    """
    if row["note"] == HOST_NOT_JUDGED:
        return False
    no_events = pending.statistic == "rate" and all(
        run.value == 0 for run in (*pending.baseline, pending.candidate)
    )
    return not no_events


def history_noise(summaries: pl.DataFrame) -> dict[tuple[str, str], RunNoise]:
    """The measured run-to-run noise of each endpoint x metric in earlier runs of one
    combination (their ``run_summary`` rows; not the baseline runs, which count on their own).

    Returns ``{(endpoint, metric): RunNoise}`` for the statistics with at least 2 runs: the
    variance of the log of each run's p50, p95, p99 and throughput, and of the double arcsine
    of its error rate (see :func:`~metrics_pipeline.stats.compare_runs`). Where every run's
    ``requests`` is known, each statistic carries how many values each run had (successful
    requests for the latencies, seconds for the throughput, requests for the error rate), so
    that runs of another size than the ones compared lend their run effect, not their
    sampling error.
    """
    out: dict[tuple[str, str], RunNoise] = {}
    columns = {
        "latency_p50": ("latency_p50", "log"),
        "latency_p95": ("latency_p95", "log"),
        "latency_p99": ("latency_p99", "log"),
        "throughput": ("throughput_rps", "log"),
        "error_rate": ("error_rate", "arcsine"),
    }
    for (endpoint,), runs in summaries.group_by(["endpoint"], maintain_order=True):
        sizes = _history_sizes(runs)
        for metric, (column, scale) in columns.items():
            counts = sizes.get(metric)
            if scale == "arcsine" and counts is None:
                continue  # a rate's history needs each run's requests
            values = runs[column].cast(pl.Float64).to_numpy()
            if counts is not None and scale != "arcsine":
                # A run of unknown size would be left out: keep its value, drop the sizes.
                # (Only runs with a value in the scale's domain count: a throughput of 0 has
                # no logarithm and no size, and is left out either way.)
                known = np.isfinite(counts) & (counts > 0)
                counts = counts if known[np.isfinite(values) & (values > 0)].all() else None
            noise = RunNoise.measured(values, scale=scale, source="history", counts=counts)
            if noise is not None:
                # The runs it was measured on: a run without this statistic does not count.
                source = f"history of {noise.df + 1:g} runs"
                out[(endpoint, metric)] = replace(noise, source=source)
    return out


def _history_sizes(runs: pl.DataFrame) -> dict[str, np.ndarray]:
    """Per metric of :func:`history_noise`, how many values each run's statistic was taken
    from; empty without a ``requests`` column."""
    if "requests" not in runs.columns:
        return {}
    requests = runs["requests"].cast(pl.Float64).to_numpy()
    # The latencies are the successful requests' (an unknown error rate counts none).
    errors = np.nan_to_num(requests * runs["error_rate"].cast(pl.Float64).to_numpy())
    successful = requests - errors
    with np.errstate(divide="ignore", invalid="ignore"):  # no throughput: no size
        seconds = requests / runs["throughput_rps"].cast(pl.Float64).to_numpy()
    return {
        "latency_p50": successful,
        "latency_p95": successful,
        "latency_p99": successful,
        "throughput": seconds,
        "error_rate": requests,
    }


def run_verdict(verdicts: pl.DataFrame) -> str:
    """One word for the whole run: regression, trade-off, suspect, pass, or no baseline."""
    kinds = set(verdicts["verdict"])
    for word in ("regression", "trade-off", "suspect"):
        if word in kinds:
            return word
    return "pass" if kinds & {"ok", "improvement"} else "no baseline"


def _judge_requests(cand: pl.DataFrame, base: pl.DataFrame) -> Judged:
    base_runs = [run for _, run in base.group_by(["run_id"], maintain_order=True)]
    statistics = list(LATENCY_METRICS.values())

    def latencies(run: pl.DataFrame) -> list[RunStatistic]:
        # The one column filtered, not every column of the run's rows.
        ok_latencies = run["latency_ms"].filter(run["ok"])
        return quantile_statistics(ok_latencies.to_numpy(), statistics)

    cand_latency, base_latency = latencies(cand), [latencies(run) for run in base_runs]
    judged: Judged = [
        (_Pending(metric, [run[i] for run in base_latency], cand_latency[i], statistic), None)
        for i, (metric, statistic) in enumerate(LATENCY_METRICS.items())
    ]
    error_rate = _Pending(
        "error_rate",
        [_errors(run) for run in base_runs],
        _errors(cand),
        "rate",
        scale="arcsine",
    )
    throughput = _Pending(
        "throughput",
        [mean_statistic(per_second(run)) for run in base_runs],
        mean_statistic(per_second(cand)),
        "mean",
        higher_is_worse=False,
    )
    return [*judged, (error_rate, None), (throughput, "requests per second")]


def _errors(run: pl.DataFrame) -> RunStatistic:
    return rate_statistic(int((~run["ok"]).sum()), run.height)


@dataclass(frozen=True)
class _Pending:
    """One comparison to make: a metric's statistic per baseline run and of the candidate."""

    metric: str
    baseline: list[RunStatistic]
    candidate: RunStatistic
    statistic: str
    scale: Scale = "log"
    higher_is_worse: bool = True


def _compare_all(
    rows: list[dict],
    pending: list[_Pending | None],
    policy: VerdictPolicy,
    history: History,
    baseline_apart: bool = False,
) -> list[Comparison | None]:
    """Run every pending comparison of a run with its run noise: the endpoint's history where
    there is one, else (with 2+ baseline runs) an empirical-Bayes prior from the spread of the
    same metric over the run's other endpoints (:func:`~metrics_pipeline.stats.moderated_noise`),
    else the baseline runs alone or the policy's prior; ``baseline_apart``: the baseline runs
    were taken on separate occasions (:func:`~metrics_pipeline.stats.taken_apart`)."""
    spreads: dict[tuple[str, int], list[tuple[float, float]]] = {}
    groups: list[tuple[str, int] | None] = []  # (metric, usable baseline runs) of each row
    for row, p in zip(rows, pending, strict=True):
        # Only spreads on the log scale are pooled: an error rate's holds its sampling
        # variance, 1/(4n+2), most of it where there are few errors and different for
        # endpoints of different sizes (large endpoints would shrink a small one's noise).
        if p is None or row["endpoint"] == RESOURCES or p.scale != "log":
            groups.append(None)
            continue
        spread, runs, sampling = run_spread(p.baseline, p.scale)
        groups.append((p.metric, runs))
        spreads.setdefault((p.metric, runs), []).append((spread, sampling))
    moderated = {
        (metric, runs): moderated_noise(
            [spread for spread, _ in values],
            runs - 1,
            source=f"{len(values)} endpoints' runs",
            sampling=[sampling for _, sampling in values],
        )
        for (metric, runs), values in spreads.items()
        if runs >= 2
    }
    out: list[Comparison | None] = []
    for row, p, group in zip(rows, pending, groups, strict=True):
        if p is None:
            out.append(None)
            continue
        rule = policy.rule(p.metric)
        measured = history.get((row["endpoint"], p.metric)) or moderated.get(group)
        comparison = compare_runs(
            p.baseline,
            p.candidate,
            statistic=p.statistic,
            scale=p.scale,
            higher_is_worse=p.higher_is_worse,
            threshold=rule.threshold,
            alpha=rule.alpha,
            min_effect=rule.min_effect,
            prior=policy.prior(p.metric),
            history=measured,
            baseline_apart=baseline_apart,
        )
        runs = (*p.baseline, p.candidate)
        if (
            not math.isfinite(comparison.p_value)
            and not all(math.isfinite(r.variance) for r in runs)
            and row["note"] != UNCOUNTED_ERRORS
        ):
            # A run without a single value (a candidate whose requests all failed) has not
            # "too few" of them.
            none = p.metric in LATENCY_METRICS and any(r.n == 0 for r in runs)
            few = NO_SUCCESS if none else TOO_FEW
            row["note"] = few if row["note"] is None else f"{row['note']}; {few}"
        out.append(comparison)
    return out


def _run_starts(*frames: pl.DataFrame) -> dict[str, datetime]:
    """The first timestamp of each run in ``frames`` (rows with ``run_id`` and ``ts``)."""
    starts: dict[str, datetime] = {}
    for frame in frames:
        firsts = frame.drop_nulls(["run_id", "ts"]).group_by("run_id").agg(pl.col("ts").min())
        for run_id, ts in firsts.iter_rows():
            starts[run_id] = min(ts, starts.get(run_id, ts))
    return starts


def per_second(requests: pl.DataFrame) -> np.ndarray:
    """Requests per whole second of a run (seconds without requests count as 0; the first and
    last, partial, seconds of the run are left out)."""
    if requests.height == 0:
        return np.array([])
    seconds = (
        requests["ts"] - requests["ts"].min()
    ).dt.total_microseconds().to_numpy() // 1_000_000
    return np.bincount(seconds)[1:-1]


MISSING = "in the baseline runs, not in this run"
# The note of a statistic some run has too few values for (a p99 of 200 requests).
TOO_FEW = "too few values in a run to judge"
# ... and of a latency of which a run has no value at all.
NO_SUCCESS = "no successful request in a run"
# The note of an error rate whose errors some run states without its requests.
UNCOUNTED_ERRORS = "errors without the requests they were among: not judged"
# The note of a whole-machine resource row: reported, never judged.
HOST_NOT_JUDGED = "whole machine: reported, not judged"
# The note of a row whose change is beyond the run noise but not as large as a verdict needs
# (the threshold; or min_effect, one step of the values): "ok" alone would read as no change.
SIGNIFICANT_SMALL = "significant, below the threshold"


def _judge_resources(cand: pl.DataFrame, base: pl.DataFrame) -> Judged:
    judged: Judged = []
    for metric in RESOURCE_METRICS:
        c = cand.filter(pl.col("metric") == metric)["value"].to_numpy()
        rows = base.filter(pl.col("metric") == metric)
        if len(c) < 2 or rows.height < 2:
            continue
        runs = [
            run["value"].to_numpy() for _, run in rows.group_by(["run_id"], maintain_order=True)
        ]
        pending = _Pending(
            metric,
            [quantile_statistics(values, ["median"])[0] for values in runs],
            quantile_statistics(c, ["median"])[0],
            "median",
        )
        judged.append((pending, None if metric in PROCESS_RESOURCES else HOST_NOT_JUDGED))
    return judged


def _judge_intervals(cand: pl.DataFrame, base: pl.DataFrame, spans: Mapping[str, float]) -> Judged:
    """Judge pre-aggregated rows: per run, the percentile of the requests of all its
    intervals (the count-weighted mixture of the intervals' distributions, with the sampling
    error of a percentile of that many requests), the error rate of the summed counts and
    the throughput (the requests of the intervals that state their length, over the run's
    ``spans``), compared with the same run-level model as per-request data. When any run,
    candidate or baseline, has an interval without a count, the percentiles of every run fall
    back on the geometric mean of its per-interval percentiles, whose spread over the
    intervals is then the sampling error."""
    if cand.height == 0 or base.height == 0:
        return []
    base_runs = [run for _, run in base.group_by(["run_id"], maintain_order=True)]
    counted = all(run["count"].null_count() == 0 for run in (cand, *base_runs))
    columns = [
        column
        for column in LATENCY_METRICS.values()
        if cand[column].null_count() < cand.height and base[column].null_count() < base.height
    ]
    per_run = [_interval_statistics(run, columns, counted) for run in (*base_runs, cand)]
    judged: Judged = []
    for metric, column in LATENCY_METRICS.items():
        if column not in columns:
            continue
        *base_statistics, cand_statistic = [statistics[column] for statistics in per_run]
        pending = _Pending(metric, base_statistics, cand_statistic, column)
        note = f"{column} of {cand.height} intervals" + ("' requests" if counted else "")
        judged.append((pending, note))
    runs = (*base_runs, cand)
    if all(_counted_errors(run) for run in runs):
        pending = _Pending(
            "error_rate",
            [rate_statistic(int(r["errors"].sum()), int(r["count"].sum())) for r in base_runs],
            rate_statistic(int(cand["errors"].sum()), int(cand["count"].sum())),
            "rate",
            scale="arcsine",
        )
        judged.append((pending, None))
    elif any(run["errors"].null_count() < run.height for run in runs):
        # Errors that a tool stated without the requests they were among are shown, not
        # turned into a rate (and never a crash of the run).
        unknown = RunStatistic(math.nan, math.nan, 0)
        pending = _Pending("error_rate", [unknown] * len(base_runs), unknown, "rate", "arcsine")
        judged.append((pending, UNCOUNTED_ERRORS))
    if counted and all(spans.get(run["run_id"][0], 0.0) > 0 for run in (cand, *base_runs)):
        pending = _Pending(
            "throughput",
            [_interval_throughput(run, spans) for run in base_runs],
            _interval_throughput(cand, spans),
            "mean",
            higher_is_worse=False,
        )
        judged.append((pending, "requests per second"))
    return judged


def _run_spans(intervals: pl.DataFrame) -> dict[str, float]:
    """Per run, the seconds its interval rows cover: the distinct intervals (by end time) of
    the run's file with the most rows, over all endpoints, those that state their length. An
    endpoint without requests in an interval has no row for it (Artillery), so its own rows
    do not tell the run's length."""
    covered = (
        one_source(intervals)
        .drop_nulls("interval_s")
        .group_by("run_id", "ts")
        .agg(pl.col("interval_s").max())
        .group_by("run_id")
        .agg(pl.col("interval_s").sum())
    )
    return dict(covered.iter_rows())


def _counted_errors(run: pl.DataFrame) -> bool:
    """Whether every interval row of a run states its errors and its requests, with the
    errors among them: a k6 summary with a threshold on failures but without request counts
    has errors and no ``count``, and that is no rate."""
    rows = run.select("errors", "count")
    if rows.null_count().sum_horizontal().item() > 0:
        return False
    return bool(((rows["errors"] >= 0) & (rows["errors"] <= rows["count"])).all())


def _interval_throughput(run: pl.DataFrame, spans: Mapping[str, float]) -> RunStatistic:
    """Requests per second of one run's interval rows: the requests of the rows that state
    their length (Locust's first history row does not) over the run's span."""
    timed = run.filter(pl.col("interval_s").is_not_null())
    return count_rate_statistic(int(timed["count"].sum()), spans[run["run_id"][0]])


def _interval_statistics(
    run: pl.DataFrame, columns: list[str], counted: bool
) -> dict[str, RunStatistic]:
    """One run's statistics for ``columns`` (p50, p95, p99) from its interval rows."""
    if not counted:
        return {column: series_statistic(run[column].to_numpy()) for column in columns}
    knots, counts, sizes = percentile_inputs(run)
    statistics = interval_quantile_statistics(knots, counts, columns, sizes=sizes)
    return dict(zip(columns, statistics, strict=True))


def _or_empty(frame: pl.DataFrame | None, table: str) -> pl.DataFrame:
    return empty(table) if frame is None else frame


def verdicts_markdown(verdicts: pl.DataFrame, alphas: float | Mapping[str, float] = 0.05) -> str:
    """The verdict table as markdown, regressions first, with the sources of the run noise
    under it, for the UI and the CLI; ``alphas``: the significance level of each metric (the
    CI's level), or one for all."""
    lines = [
        f"| endpoint | metric | baseline | candidate | change | {ci_label(alphas)} | p (adj.) "
        "| verdict |",
        "|---|---|---:|---:|---:|---|---:|---|",
    ]
    for row in ordered(verdicts).iter_rows(named=True):
        cells = [md(row["endpoint"]), row["metric"], *formatted(row)]
        lines.append("| " + " | ".join(cells) + " |")
    if sources := noise_sources(verdicts):
        lines += ["", f"Run-to-run noise from: {md(sources)}."]
    if levels := ci_levels(alphas):
        lines += ["", f"{levels}."]
    return "\n".join(lines)


def ci_alphas(verdicts: pl.DataFrame, policy: VerdictPolicy) -> dict[str, float]:
    """The significance level of each metric with a CI in ``verdicts``: the CI's level."""
    with_ci = verdicts.filter(pl.col("ci_low").is_not_null() & pl.col("ci_low").is_not_nan())
    return {metric: policy.rule(metric).alpha for metric in with_ci["metric"].unique()}


def ci_label(alphas: float | Mapping[str, float]) -> str:
    """The CI column's header for the significance level ``alphas`` (one, or one per
    metric): its level when the rows share one (``99.9% CI`` for 0.001), else a pointer to
    :func:`ci_levels`."""
    levels = set(alphas.values()) if isinstance(alphas, Mapping) else {alphas}
    if len(levels) == 1:
        return f"{ci_level(levels.pop())} CI (+ = worse)"
    return "CI (+ = worse; levels below)" if levels else "CI (+ = worse)"


def ci_levels(alphas: float | Mapping[str, float]) -> str:
    """The CI level of each metric, when the metrics do not share one (else "")."""
    if not isinstance(alphas, Mapping) or len(set(alphas.values())) <= 1:
        return ""
    return "CI levels: " + ", ".join(
        f"{metric} {ci_level(alpha)}" for metric, alpha in sorted(alphas.items())
    )


def ci_level(alpha: float) -> str:
    """``1 - alpha`` in per cent with the digits it has: 95%, 97.5%, 99.9%."""
    return f"{round((1 - alpha) * 100, 6):g}%"


def noise_sources(verdicts: pl.DataFrame) -> str:
    """The distinct sources of run-to-run noise of a verdict table, most used first."""
    counts = verdicts["noise"].drop_nulls().value_counts(sort=True)
    return "; ".join(counts["noise"].to_list())


UNITS = {
    "error_rate": "{:.2%}",
    "latency_p50": "{:.1f} ms",
    "latency_p95": "{:.1f} ms",
    "latency_p99": "{:.1f} ms",
    "throughput": "{:.1f}/s",
}
VERDICT_WORDS = {
    "regression": "REGRESSION",
    "trade-off": "TRADE-OFF",
    "improvement": "improved",
    "missing": "MISSING",
    "suspect": "SUSPECT",
}


def ordered(verdicts: pl.DataFrame) -> pl.DataFrame:
    return verdicts.sort(["regression", "endpoint", "metric"], descending=[True, False, False])


def formatted(row: dict) -> list[str]:
    """baseline, candidate, change, CI, adjusted p and verdict of one row, as text."""
    if row["baseline"] is None:
        words = VERDICT_WORDS.get(row["verdict"])
        return ["", "", "", "", "", f"{words} ({row['note']})" if words else row["note"] or ""]
    unit = UNITS.get(row["metric"], "{:.4g}")
    points = row["metric"] in ABSOLUTE_CHANGE
    if math.isfinite(row["ci_low"]) and math.isfinite(row["ci_high"]):
        ci = (
            f"[{row['ci_low'] * 100:+.2f}, {row['ci_high'] * 100:+.2f}] pp"
            if points
            else f"[{row['ci_low']:+.1%}, {row['ci_high']:+.1%}]"
        )
    else:
        ci = "-"
    p = f"{row['p_adjusted']:.2g}" if math.isfinite(row["p_adjusted"]) else "-"
    verdict = VERDICT_WORDS.get(row["verdict"], "ok")
    if row["note"]:
        verdict += f" ({row['note']})"
    change = change_words(row["change"], row["metric"])
    # A statistic that could not be computed (the throughput of 15 requests) is "-", not "nan/s".
    values = [
        unit.format(v) if math.isfinite(v) else "-" for v in (row["baseline"], row["candidate"])
    ]
    return [*values, change, ci, p, verdict]


def change_words(change: float, metric: str = "") -> str:
    """A change (+ = worse, whatever the metric's direction) in words that need no legend:
    ``5.0 % worse`` for 10.0/s -> 9.5/s and for 10 ms -> 10.5 ms alike, ``9.30 pp worse`` for
    an error rate going from 0 to 9.3 %."""
    if not math.isfinite(change):
        return "-"
    if metric in ABSOLUTE_CHANGE:
        if abs(change) < 0.00005:
            return "no change"
        return f"{abs(change) * 100:.2f} pp {'worse' if change > 0 else 'better'}"
    if abs(change) < 0.0005:
        return "no change"
    return f"{abs(change) * 100:.1f} % {'worse' if change > 0 else 'better'}"
