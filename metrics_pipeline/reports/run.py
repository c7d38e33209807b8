"""The report of one run: what it needs from the warehouse, and its summary and document.

:func:`gather_run` reads everything a report shows (lazily for the large tables);
:func:`executive_summary` and :func:`run_document` are pure functions of that data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from metrics_pipeline.analysis.series import RESOURCES, run_series
from metrics_pipeline.analysis.sla import budget_words
from metrics_pipeline.analysis.verdict_rules import VerdictRules
from metrics_pipeline.analysis.verdicts import (
    VerdictPolicy,
    ci_alphas,
    ci_label,
    ci_level,
    ci_levels,
    formatted,
    noise_sources,
    ordered,
    run_verdict,
)
from metrics_pipeline.common.errors import MetricsPipelineError
from metrics_pipeline.common.text import display_name, md, md_table, one_line
from metrics_pipeline.contracts.tables import empty
from metrics_pipeline.reports import charts
from metrics_pipeline.reports.document import Banner, Chart, Document, Section, Table
from metrics_pipeline.reports.text import finite, metric_name, pct, value
from metrics_pipeline.storage import Warehouse

# The verdict table's columns, in the order of ``verdicts.formatted`` after endpoint and metric;
# the CI's header (its level) is put in by ``verdict_columns``.
VERDICT_COLUMNS = (
    "endpoint",
    "metric",
    "baseline",
    "candidate",
    "change",
    "CI",
    "p (adj.)",
    "verdict",
)

# Endpoints drawn in the per-endpoint charts (regressed first, then the busiest); every
# endpoint stays in the tables and in raw.jsonl.
CHART_ENDPOINTS = 8
TOP_ROWS = 5
HISTORY_RUNS = 30
HISTORY_METRIC = "latency_p95"


class ReportInputError(MetricsPipelineError, LookupError):
    """The warehouse lacks what a report needs (e.g. the run was never ingested)."""


@dataclass
class RunData:
    """Everything the report of one run shows; large tables stay lazy."""

    run: dict
    tags: dict[str, str]
    summary: pl.DataFrame
    verdicts: pl.DataFrame
    baseline_runs: pl.DataFrame  # rows of ``runs``, in baseline order
    sla: pl.DataFrame
    change_points: pl.DataFrame  # of the run's suite x scenario x environment
    history: pl.DataFrame  # run_series of the combination up to this run
    requests: pl.LazyFrame
    baseline_requests: pl.LazyFrame
    intervals: pl.LazyFrame
    resources: pl.LazyFrame
    events: pl.DataFrame
    quarantined: int
    policy: VerdictPolicy = field(default_factory=VerdictPolicy)
    # The run's capacity estimate (stages.capacity), when its load varied.
    capacity: pl.DataFrame = field(default_factory=lambda: empty("capacity"))
    # Whether its raw rows (requests or intervals) are still kept: retention removes them
    # long before the verdicts and the summary.
    raw_kept: bool = True

    @property
    def run_id(self) -> str:
        return self.run["run_id"]

    @property
    def verdict(self) -> str:
        if not self.run["valid"]:
            return "invalid"
        return run_verdict(self.verdicts) if self.verdicts.height else "no baseline"


def gather_run(
    warehouse: Warehouse,
    run_id: str,
    tags: dict[str, str] | None = None,
    rules: VerdictRules | None = None,
) -> RunData:
    """Read the run's rows, its baseline's and its combination's history from ``warehouse``;
    ``rules``: the verdict rules its verdicts were judged by (default: the built-in ones), whose
    thresholds and CI levels the report states."""
    runs = warehouse.read("runs")
    found = runs.filter(pl.col("run_id") == run_id)
    if found.height == 0:
        raise ReportInputError(f"run {run_id!r} is not in the warehouse: ingest it first")
    run = found.row(0, named=True)
    baseline_ids = (
        warehouse.read("run_baselines", [run_id]).sort("position")["baseline_run_id"].to_list()
    )
    baseline_runs = (
        pl.DataFrame(
            {"run_id": baseline_ids, "position": range(len(baseline_ids))},
            schema={"run_id": pl.String, "position": pl.Int64},
        )
        .join(runs, on="run_id", how="left")
        .sort("position")
        .drop("position")
    )
    combination = (
        (pl.col("suite") == run["suite"])
        & (pl.col("scenario") == run["scenario"])
        & (pl.col("environment") == run["environment"])
    )
    earlier = runs.filter(combination & (pl.col("started_at") <= run["started_at"]))
    history = run_series(
        earlier, warehouse.read("run_summary", earlier["run_id"].to_list())
    ).filter(pl.col("metric") == HISTORY_METRIC)
    return RunData(
        run=run,
        tags=dict(tags or {}),
        summary=warehouse.read("run_summary", [run_id]),
        verdicts=warehouse.read("verdicts", [run_id]),
        baseline_runs=baseline_runs,
        sla=warehouse.read("sla_evaluations", [run_id]),
        change_points=warehouse.read("change_points").filter(combination),
        history=history,
        requests=warehouse.scan("requests", [run_id]),
        baseline_requests=warehouse.scan("requests", baseline_ids),
        intervals=warehouse.scan("interval_stats", [run_id]),
        resources=warehouse.scan("resources", [run_id]),
        events=warehouse.read("events", [run_id]),
        quarantined=warehouse.scan("quarantine", [run_id]).select(pl.len()).collect().item(),
        capacity=warehouse.read("capacity", [run_id]),
        policy=(rules or VerdictRules()).policy(run["suite"], run["scenario"], run["environment"]),
        raw_kept=any(run_id in warehouse.run_ids(t) for t in ("requests", "interval_stats")),
    )


# --- what the run's verdicts say ------------------------------------------------------------


def regressions(data: RunData) -> pl.DataFrame:
    """Rows judged a regression or a trade-off, the largest change first."""
    return data.verdicts.filter(pl.col("regression")).sort("change", descending=True)


def suspects(data: RunData) -> pl.DataFrame:
    """Rows worse by more than the threshold as the values stand, but untested (too few
    values in a run), the largest change first."""
    return data.verdicts.filter(pl.col("verdict") == "suspect").sort("change", descending=True)


def improvements(data: RunData) -> pl.DataFrame:
    """Rows judged an improvement: the mirror image of a regression."""
    rows = [row for row in data.verdicts.iter_rows(named=True) if row["verdict"] == "improvement"]
    return pl.DataFrame(rows, schema=data.verdicts.schema).sort("change")


def sla_sentence(sla: pl.DataFrame) -> str:
    """One sentence of SLA status, plain text."""
    if sla.height == 0:
        return "no SLA evaluated."
    counts = sla.group_by("status").len().sort("status")
    parts = ", ".join(f"{n} {status}" for status, n in counts.iter_rows())
    failed = sla.filter(pl.col("status").is_in(["breached", "missed"])).sort(
        pl.col("status") != "breached"
    )
    sentence = f"{sla.height} KPI evaluations: {parts}."
    if failed.height:
        worst = failed.row(0, named=True)
        sentence += (
            f" Worst: {worst['kpi']} on {display_name(worst['endpoint'])} {worst['status']} "
            f"(observed {worst['observed']:.4g} {worst['unit'] or ''} vs target "
            f"{worst['target']:.4g} {worst['unit'] or ''})."
        )
    return sentence


def verdict_columns(data: RunData) -> list[str]:
    """:data:`VERDICT_COLUMNS` with the CI's level in its header."""
    label = ci_label(ci_alphas(data.verdicts, data.policy))
    return [label if column == "CI" else column for column in VERDICT_COLUMNS]


def _level(data: RunData, row: dict) -> str:
    """The level of a row's CI (its metric's alpha): "95%"."""
    return ci_level(data.policy.rule(row["metric"]).alpha)


def _describe(data: RunData, row: dict) -> str:
    _, _, change, ci, _, _ = formatted(row)
    return (
        f"{display_name(row['endpoint'])} {metric_name(row['metric'])} {change} "
        f"({value(row['metric'], row['baseline'])} → {value(row['metric'], row['candidate'])}, "
        f"{_level(data, row)} CI {ci})"
    )


def banner(data: RunData) -> Banner:
    """The headline: the verdict and, for a regression, the endpoint and its change."""
    n_base = data.baseline_runs.height
    verdict = data.verdict
    if verdict in {"regression", "trade-off"}:
        worst = regressions(data)
        top = worst.row(0, named=True)
        top_name = display_name(top["endpoint"])
        others = sorted({display_name(e) for e in worst["endpoint"]} - {top_name})
        more = f"; also worse: {', '.join(others)}" if others else ""
        _, _, change, ci, _, _ = formatted(top)
        return Banner(
            verdict,
            f"{verdict.upper()}: {top_name} {metric_name(top['metric'])} {change}",
            f"{value(top['metric'], top['baseline'])} → "
            f"{value(top['metric'], top['candidate'])}, {_level(data, top)} CI {ci}, adjusted p "
            f"{top['p_adjusted']:.2g}, against {n_base} baseline run(s); run-to-run noise "
            f"from {top['noise']}{more}.",
        )
    if verdict == "suspect":
        top = suspects(data).row(0, named=True)
        _, _, change, _, _, _ = formatted(top)
        return Banner(
            "info",
            f"SUSPECT: {display_name(top['endpoint'])} {metric_name(top['metric'])} {change}, "
            "not tested",
            f"{value(top['metric'], top['baseline'])} → {value(top['metric'], top['candidate'])}"
            f" as the values stand, but a run has too few values to tell it from run-to-run "
            f"noise; no significant regression against {n_base} baseline run(s).",
        )
    if verdict == "pass":
        return Banner("pass", "PASS: no regression", f"Compared with {n_base} baseline run(s).")
    if verdict == "invalid":
        return Banner(
            "regression", "INVALID RUN: no verdict", one_line(data.run["invalid_reason"] or "")
        )
    return Banner("info", "NO BASELINE", "First run of its suite, scenario and environment.")


def manager_paragraph(data: RunData) -> str:
    """What happened and what to do, in one paragraph of plain text."""
    run = data.run
    who = (
        f"Run {run['run_id']} of {run['suite']} ({display_name(run['scenario'])}, "
        f"{display_name(run['environment'])}, "
        f"version {display_name(run['service_version'] or 'unknown')})"
    )
    sla = f"SLA: {sla_sentence(data.sla)}"
    base = data.baseline_runs
    since = ""
    if base.height:
        last = base.sort("started_at").row(-1, named=True)
        since = (
            f" since version {last['service_version'] or 'unknown'} "
            f"(git {last['git_sha'] or '?'}..{run['git_sha'] or '?'})"
        )
    verdict = data.verdict
    if verdict == "regression":
        worst = regressions(data).filter(pl.col("verdict") == "regression")
        endpoints = worst["endpoint"].unique(maintain_order=True).to_list()
        return (
            f"{who} is slower than its baseline of {base.height} run(s): "
            f"{_describe(data, worst.row(0, named=True))}; {len(endpoints)} endpoint(s) regressed "
            f"({', '.join(display_name(e) for e in endpoints)}). {sla} Action: hold the release of "
            f"this version and review the changes{since}; if the change is intended, accept it "
            f"by updating the baseline."
        )
    if verdict == "trade-off":
        return (
            f"{who} is faster but uses more resources: "
            f"{_describe(data, regressions(data).row(0, named=True))}. {sla} Action: decide "
            f"whether the extra resource use is worth the latency gained before releasing."
        )
    if verdict == "suspect":
        top = suspects(data).row(0, named=True)
        _, _, change, _, _, _ = formatted(top)
        return (
            f"{who} shows no significant regression against its baseline of {base.height} "
            f"run(s), but {display_name(top['endpoint'])} {metric_name(top['metric'])} is "
            f"{change} ({value(top['metric'], top['baseline'])} → "
            f"{value(top['metric'], top['candidate'])}) on too few values to test. {sla} "
            f"Action: run the test longer (more requests per endpoint) before releasing."
        )
    if verdict == "pass":
        better = improvements(data)
        gains = f" Better: {_describe(data, better.row(0, named=True))}." if better.height else ""
        return (
            f"{who} performs like its baseline of {base.height} run(s): no endpoint is "
            f"significantly worse.{gains} {sla} No action needed."
        )
    if verdict == "invalid":
        return (
            f"{who} failed its data checks ({one_line(run['invalid_reason'] or 'unknown')}) and "
            f"got no verdict. {sla} Action: fix the test's output and upload the run again."
        )
    return (
        f"{who} is the first of its kind: there is no baseline to compare with yet, and later "
        f"runs will be compared with it. {sla}"
    )


def _verdict_rows(frame: pl.DataFrame) -> list[list[str]]:
    return [
        [
            md(display_name(row["endpoint"])),
            metric_name(row["metric"]),
            *[md(c) for c in formatted(row)[:5]],
        ]
        for row in frame.head(TOP_ROWS).iter_rows(named=True)
    ]


def facts(data: RunData) -> list[tuple[str, str]]:
    """Who, what, where and when of the run, as (label, plain text) pairs."""
    run = data.run
    rows = [
        ("run", run["run_id"]),
        (
            "suite / scenario / environment",
            f"{run['suite']} / {display_name(run['scenario'])} / "
            f"{display_name(run['environment'])}",
        ),
        ("started", f"{run['started_at']:%Y-%m-%d %H:%M:%S} UTC"),
        ("tool", run["tool"] or ""),
        (
            "version / git",
            f"{display_name(run['service_version'] or '-')} / "
            f"{display_name(run['git_sha'] or '-')}",
        ),
        ("baseline runs", ", ".join(data.baseline_runs["run_id"]) or "none"),
    ]
    if data.tags:
        tags = sorted(data.tags.items())
        rows.append(("tags", ", ".join(f"{display_name(k)}={display_name(v)}" for k, v in tags)))
    return [(label, one_line(text)) for label, text in rows]


def executive_summary(data: RunData) -> str:
    """Layer 1: the Markdown a manager reads (also the asset's UI metadata)."""
    head = banner(data)
    lines = [
        f"# Run report: {md(data.run_id)}",
        "",
        f"**Verdict: {md(head.headline)}**" + (f" ({md(head.detail)})" if head.detail else ""),
        "",
        f"**In short:** {md(manager_paragraph(data))}",
        "",
        f"**SLA:** {md(sla_sentence(data.sla))}",
        "",
        md_table(["", ""], [[md(label), md(text)] for label, text in facts(data)]),
        "",
    ]
    columns = verdict_columns(data)[:-1]
    for title, frame in (
        ("Top regressions", regressions(data)),
        ("Suspect: worse as the values stand, too few values to test", suspects(data)),
        ("Top improvements", improvements(data)),
    ):
        lines += [f"## {title}", ""]
        lines += [md_table(columns, _verdict_rows(frame)) if frame.height else "None.", ""]
    return "\n".join(lines).replace("\n\n\n", "\n\n").strip() + "\n"


# --- the technical document (HTML and PDF) ----------------------------------------------------


def chart_endpoints(data: RunData, limit: int = CHART_ENDPOINTS) -> list[str]:
    """The endpoints worth a chart: regressed first, then by request count."""
    regressed = regressions(data)["endpoint"].unique(maintain_order=True).to_list()
    busiest = data.summary.sort("requests", descending=True)["endpoint"].to_list()
    chosen = list(dict.fromkeys([e for e in regressed + busiest if e != RESOURCES]))
    return chosen[:limit]


def _verdict_section(data: RunData) -> Section:
    table = ordered(data.verdicts)
    rows, classes = [], []
    for row in table.iter_rows(named=True):
        rows.append([display_name(row["endpoint"]), row["metric"], *formatted(row)])
        highlighted = row["regression"] or row["verdict"] in {"improvement", "missing", "suspect"}
        classes.append(row["verdict"] if highlighted else "")
    threshold = data.policy.rule("latency_p95").threshold
    alphas = ci_alphas(table, data.policy)
    chart_rows = table.filter(pl.col("change").is_finite())
    return Section(
        "comparisons",
        "Comparisons with the baseline",
        [
            f"Each endpoint and metric of this run against its baseline of "
            f"{data.baseline_runs.height} run(s). A regression is worse by more than "
            f"{threshold:.0%} with a Benjamini-Hochberg adjusted p below "
            f"{data.policy.rule('latency_p95').alpha}, and worse by at least the metric's "
            f"minimum effect; run-to-run noise from {noise_sources(table) or 'nothing'}. "
            f"The bars are confidence intervals of the change (relative; error rates in "
            f"percentage points) at the verdict's level: "
            f"{ci_levels(alphas) or ci_label(alphas).removesuffix(' (+ = worse)')}.",
        ],
        tables=[
            Table(
                verdict_columns(data),
                rows,
                classes,
            )
        ],
        charts=[
            Chart(
                "comparison",
                "Change vs baseline, with its CI",
                charts.comparison_chart(chart_rows, threshold),
            )
        ]
        if chart_rows.height
        else [],
    )


def _distribution_section(data: RunData, endpoints: list[str]) -> Section:
    histogram = charts.latency_histogram(data.requests, data.baseline_requests, endpoints)
    summary = data.summary.sort("requests", descending=True)
    table = Table(
        ["endpoint", "requests", "mean", "p50", "p90", "p95", "p99", "max"],
        [
            [
                display_name(row["endpoint"]),
                f"{row['requests']:,}",
                *[
                    value("latency_mean", row[c])
                    for c in (
                        "latency_mean",
                        "latency_p50",
                        "latency_p90",
                        "latency_p95",
                        "latency_p99",
                        "latency_max",
                    )
                ],
            ]
            for row in summary.iter_rows(named=True)
        ],
        caption="Latency of successful requests in this run",
    )
    chart = (
        [
            Chart(
                "distributions",
                "Latency distribution, baseline vs this run",
                charts.distribution_chart(histogram),
                f"{charts.HISTOGRAM_BINS} logarithmic bins per endpoint over the 0.1-99.9 % "
                "quantiles; baseline = all requests of the baseline runs.",
            )
        ]
        if histogram.height
        else []
    )
    paragraphs = [] if chart else ["No per-request latencies in this run or its baseline."]
    return Section("distributions", "Latency distributions", paragraphs, [table], chart)


# What a report made after retention took the raw rows can still show.
PAST_RETENTION = "its summary, verdicts and SLA evaluations remain"


def _timeline_section(data: RunData, endpoints: list[str]) -> Section:
    chosen = data.requests.filter(pl.col("endpoint").is_in(endpoints))
    span = charts.span_seconds(chosen)
    if span > 0:
        every = charts.bucket_seconds(span)
        timeline = charts.percentile_timeline(chosen, every)
        source = f"Per {every}-second bucket of the run's requests (successful ones)."
    else:
        timeline = charts.interval_timeline(
            data.intervals.filter(pl.col("endpoint").is_in(endpoints))
        )
        source = "The tool's own per-interval percentiles."
    if timeline.height == 0:
        why = (
            "No time series in this run."
            if data.raw_kept
            else f"No time series: the run's raw rows are past retention ({PAST_RETENTION})."
        )
        return Section("timeline", "Percentiles over the run", [why])
    return Section(
        "timeline",
        "Percentiles over the run",
        [source],
        charts=[
            Chart("timeline", "p50, p95 and p99 over the run", charts.timeline_chart(timeline))
        ],
    )


def _errors_section(data: RunData) -> Section:
    top_error = (
        data.requests.filter(~pl.col("ok"))
        .group_by("endpoint", "status", "error")
        .len()
        .sort("len", descending=True)
        .collect()
    )
    rows = []
    for row in data.summary.sort("errors", descending=True).iter_rows(named=True):
        first = top_error.filter(pl.col("endpoint") == row["endpoint"])
        common = first.row(0, named=True) if first.height else None
        rows.append(
            [
                display_name(row["endpoint"]),
                f"{row['requests']:,}",
                f"{row['errors']:,}",
                pct(row["error_rate"], signed=False),
                f"{common['status'] or ''} {display_name(common['error'] or '')} "
                f"({common['len']:,})".strip()
                if common
                else "",
            ]
        )
    errored = data.summary.filter(pl.col("errors") > 0).select("endpoint", "error_rate")
    return Section(
        "errors",
        "Errors by endpoint",
        [] if errored.height else ["No failed request in this run."],
        [Table(["endpoint", "requests", "errors", "error rate", "most frequent error"], rows)],
        [
            Chart(
                "errors",
                "Error rate by endpoint",
                charts.bar_chart(errored, "endpoint", "error_rate", "error rate", ".1%"),
            )
        ]
        if errored.height
        else [],
    )


def _resources_section(data: RunData) -> Section:
    span = charts.span_seconds(data.resources)
    if span <= 0 and data.resources.select(pl.len()).collect().item() == 0:
        return Section("resources", "Resource usage", ["No resource samples in this run."])
    timeline = charts.resource_timeline(data.resources, charts.bucket_seconds(max(span, 1)))
    stats = (
        data.resources.group_by("metric", "host")
        .agg(mean=pl.col("value").mean(), max=pl.col("value").max(), samples=pl.len())
        .sort("metric", "host")
        .collect()
    )
    table = Table(
        ["metric", "host", "mean", "max", "samples"],
        [
            [
                display_name(r["metric"]),
                display_name(r["host"] or ""),
                f"{r['mean']:.4g}",
                f"{r['max']:.4g}",
                f"{r['samples']:,}",
            ]
            for r in stats.iter_rows(named=True)
        ],
    )
    return Section(
        "resources",
        "Resource usage",
        ["Mean per time bucket of every host and metric sampled during the run."],
        [table],
        [Chart("resources", "Resources over the run", charts.resource_chart(timeline))],
    )


def _history_section(data: RunData, endpoints: list[str]) -> Section:
    history = (
        data.history.filter(pl.col("endpoint").is_in(endpoints))
        .sort("started_at")
        .group_by("endpoint", maintain_order=True)
        .tail(HISTORY_RUNS)
    )
    points = data.change_points.sort("started_at", descending=True)
    marks = history.join(
        points.filter(pl.col("metric") == HISTORY_METRIC).select("endpoint", "run_id"),
        on=["endpoint", "run_id"],
    )
    rows = [
        [
            display_name(r["endpoint"]),
            r["metric"],
            r["run_id"],
            f"{r['started_at']:%Y-%m-%d}" if r["started_at"] else "",
            display_name(r["service_version"] or ""),
            display_name(r["git_sha"] or ""),
            f"{r['before']:.4g} → {r['after']:.4g}",
            pct(r["change"]),
            f"{r['p_value']:.2g}" if finite(r["p_value"]) else "-",
        ]
        for r in points.head(50).iter_rows(named=True)
    ]
    paragraphs = [
        f"{metric_name(HISTORY_METRIC).capitalize()} of the last {HISTORY_RUNS} runs of this "
        f"suite, scenario and environment; rings mark change points found by the nightly "
        f"analysis (as of its last run)."
    ]
    if not points.height:
        paragraphs.append("No change point recorded for this combination.")
    return Section(
        "history",
        "Change-point history",
        paragraphs,
        [
            Table(
                [
                    "endpoint",
                    "metric",
                    "first run",
                    "started",
                    "version",
                    "git",
                    "before → after",
                    "change",
                    "p",
                ],
                rows,
                more=max(0, points.height - 50),
            )
        ]
        if rows
        else [],
        [
            Chart(
                "history",
                f"{metric_name(HISTORY_METRIC)} per run",
                charts.history_chart(history, marks, "ms"),
            )
        ]
        if history.height
        else [],
    )


def _capacity_section(data: RunData) -> Section:
    """The Universal Scalability Law fit of a stepped or ramping run: the peak throughput and
    the load at it with their intervals, or a lower bound, and where p95 crosses its SLA."""
    if data.capacity.height == 0:
        return Section(
            "capacity",
            "Capacity",
            [
                "No capacity estimate: the load of this run did not vary (a stepped or "
                "ramping test gets one)."
            ],
        )
    row = data.capacity.row(0, named=True)

    def number(x: float | None, unit: str = "") -> str:
        return f"{x:.4g} {unit}".strip() if finite(x) else "-"

    def interval(low: float | None, high: float | None, unit: str) -> str:
        if not finite(low):
            return "-"
        return f"[{low:.4g}, {high:.4g}] {unit}" if finite(high) else f">= {low:.4g} {unit}"

    level = f", {row['confidence']:.0%} interval" if finite(row["confidence"]) else ""
    crossing = (
        number(row["sla_load"])
        if finite(row["sla_load"])
        else (row["sla_status"] or "-").replace("_", " ")
    )
    rows = [
        ["estimate", (row["status"] or "").replace("_", " ")],
        [
            "tested load",
            f"{number(row['load_min'])} to {number(row['load_max'])} {row['load_measure'] or ''}",
        ],
        ["peak throughput", number(row["peak_rps"], "req/s")],
        [f"peak throughput{level}", interval(row["peak_rps_low"], row["peak_rps_high"], "req/s")],
        ["load at the peak", number(row["peak_load"])],
        ["load where p95 crosses its SLA", crossing],
    ]
    return Section(
        "capacity",
        "Capacity",
        [row["summary"] or ""],
        [Table(["", ""], rows, [""] * len(rows))],
    )


def _sla_section(data: RunData) -> Section:
    if data.sla.height == 0:
        return Section("sla", "SLA", ["No SLA evaluated for this run."])
    order = {"breached": 0, "missed": 1, "no_data": 2, "met": 3}
    sla = data.sla.sort(pl.col("status").replace_strict(order, default=4, return_dtype=pl.Int8))
    rows = [
        [
            display_name(r["kpi"]),
            display_name(r["endpoint"]),
            r["status"],
            r["severity"] or "",
            f"{r['observed']:.4g} {r['unit'] or ''}" if finite(r["observed"]) else "-",
            f"{r['target']:.4g} {r['unit'] or ''}" if finite(r["target"]) else "-",
            pct(r["compliance_pct"] / 100, signed=False) if finite(r["compliance_pct"]) else "-",
            budget_words(r["error_budget_remaining"]) or "-",
        ]
        for r in sla.iter_rows(named=True)
    ]
    classes = ["regression" if r[2] in {"breached", "missed"} else "" for r in rows]
    return Section(
        "sla",
        "SLA",
        [sla_sentence(data.sla)],
        [
            Table(
                [
                    "KPI",
                    "endpoint",
                    "status",
                    "severity",
                    "observed",
                    "target",
                    "compliance",
                    "error budget",
                ],
                rows,
                classes,
            )
        ],
    )


def _quality_section(data: RunData) -> Section:
    paragraphs = [
        f"Rows quarantined at ingest: {data.quarantined:,} (see the quarantine rows in raw.jsonl)."
        if data.raw_kept
        else f"Rows quarantined at ingest: the raw rows are past retention ({PAST_RETENTION})."
    ]
    tables = []
    if data.events.height:
        counts = data.events.group_by("kind").len().sort("len", descending=True)
        rows = [[display_name(kind), f"{n:,}"] for kind, n in counts.iter_rows()]
        tables.append(Table(["event", "count"], rows))
    else:
        paragraphs.append("No events (restarts, OOM kills, failed tasks) recorded.")
    return Section("quality", "Data quality and events", paragraphs, tables)


def run_document(data: RunData) -> Document:
    """Layer 2 and 3: the technical deep-dive, for HTML and PDF alike."""
    endpoints = chart_endpoints(data)
    sections = [
        _verdict_section(data),
        _distribution_section(data, endpoints),
        _timeline_section(data, endpoints),
        _errors_section(data),
        _resources_section(data),
        _history_section(data, endpoints),
        _sla_section(data),
        _capacity_section(data),
        _quality_section(data),
    ]
    return Document(
        title=f"Run report: {data.run_id}",
        banner=banner(data),
        facts=facts(data),
        sections=sections,
        lead=manager_paragraph(data),
    )


RAW_TABLES = (
    "runs",
    "run_summary",
    "run_baselines",
    "verdicts",
    "sla_evaluations",
    "requests",
    "interval_stats",
    "resources",
    "events",
    "quarantine",
    "capacity",
)


def raw_tables(warehouse: Warehouse, run_id: str) -> list[tuple[str, pl.LazyFrame]]:
    """Layer 4: every table's rows of the run, in the order raw.jsonl lists them."""
    return [(table, warehouse.scan(table, [run_id])) for table in RAW_TABLES]
