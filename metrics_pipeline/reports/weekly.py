"""The weekly report: is performance getting better, week over week?

Per suite x endpoint the week's median of the per-run p95 latency, throughput and error rate
against the previous week's; the regressions that opened and those that were fixed; and the
capacity forecasts with their prediction intervals. Pure functions of warehouse tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import polars as pl

from metrics_pipeline.analysis.series import RESOURCES, SERIES_KEYS
from metrics_pipeline.common.text import display_name, md, md_table, one_line
from metrics_pipeline.contracts.tables import SCHEMAS, empty
from metrics_pipeline.reports import charts
from metrics_pipeline.reports.document import Banner, Chart, Document, Section, Table
from metrics_pipeline.reports.text import metric_name, pct, value
from metrics_pipeline.storage import Warehouse

WEEK_PATTERN = re.compile(r"(\d{4})-W(\d{2})")
# KPIs compared week over week; + is worse for latency and errors, better for throughput.
KPIS = {"latency_p95": True, "throughput_rps": False, "error_rate": True}
FORECAST_METRIC = "latency_p95"
FORECAST_SERIES = 8


@dataclass(frozen=True)
class Week:
    year: int
    week: int

    @classmethod
    def parse(cls, text: str) -> Week:
        """``2026-W45`` (ISO 8601 week); a clear ValueError otherwise."""
        match = WEEK_PATTERN.fullmatch(text.strip())
        if not match:
            raise ValueError(f"week {text!r} is not an ISO week such as 2026-W45")
        week = cls(int(match[1]), int(match[2]))
        try:
            week.start  # noqa: B018 - validates the week number for that year
        except ValueError:
            raise ValueError(f"week {text!r} does not exist") from None
        return week

    @classmethod
    def of(cls, moment: datetime) -> Week:
        year, week, _ = moment.isocalendar()
        return cls(year, week)

    @property
    def start(self) -> datetime:
        return datetime.combine(
            date.fromisocalendar(self.year, self.week, 1), datetime.min.time(), UTC
        )

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=7)

    @property
    def previous(self) -> Week:
        return Week.of(self.start - timedelta(days=1))

    def __str__(self) -> str:
        return f"{self.year}-W{self.week:02d}"


def default_week(started: pl.Series, now: datetime) -> Week:
    """The latest week with runs that has ended by ``now`` (what a Monday-morning reader
    wants); the week of the latest run when no week with runs has ended yet."""
    if started.len() == 0:
        return Week.of(now).previous
    current = Week.of(now).start
    ended = started.filter(started < current)
    return Week.of((ended if ended.len() else started).max())


def _in(week: Week) -> pl.Expr:
    return pl.col("started_at").is_between(week.start, week.end, closed="left")


@dataclass
class WeeklyData:
    week: Week
    runs: pl.DataFrame  # valid runs of this and the previous week
    summaries: pl.DataFrame  # their run_summary rows
    verdicts: pl.DataFrame  # verdicts of every run up to the week's end, with run columns
    forecasts: pl.DataFrame
    # Findings and alerts marked expected or invalid during the week.
    triage: pl.DataFrame = field(default_factory=lambda: empty("triage"))

    @property
    def this_week(self) -> pl.DataFrame:
        return self.runs.filter(_in(self.week))


def gather_week(warehouse: Warehouse, week: Week) -> WeeklyData:
    runs = warehouse.read("runs").filter(pl.col("valid"))
    until = runs.filter(pl.col("started_at") < week.end)
    both = until.filter(_in(week) | _in(week.previous))
    ids = both["run_id"].to_list()
    return WeeklyData(
        week=week,
        runs=both,
        summaries=warehouse.read("run_summary", ids),
        verdicts=warehouse.read("verdicts", until["run_id"].to_list()).join(
            until.select("run_id", "suite", "scenario", "environment", "started_at"),
            on="run_id",
        ),
        forecasts=warehouse.read("forecasts"),
        triage=warehouse.read("triage").filter(
            (pl.col("marked_at") >= week.start) & (pl.col("marked_at") < week.end)
        ),
    )


def kpi_changes(data: WeeklyData) -> pl.DataFrame:
    """Per suite x endpoint x KPI: the median per-run value this week and last week, the
    relative change and whether it is better. Columns: suite, endpoint, kpi, previous,
    current, change, better, runs."""
    weeks = data.runs.select(
        "run_id",
        "suite",
        week=pl.when(_in(data.week)).then(pl.lit("current")).otherwise(pl.lit("previous")),
    )
    long = (
        data.summaries.join(weeks, on="run_id")
        .unpivot(index=["suite", "endpoint", "week", "run_id"], on=list(KPIS), variable_name="kpi")
        .filter(pl.col("value").is_finite())
    )
    medians = long.group_by("suite", "endpoint", "kpi", "week").agg(
        value=pl.col("value").median(), runs=pl.len()
    )
    current = medians.filter(pl.col("week") == "current").drop("week")
    previous = medians.filter(pl.col("week") == "previous").select(
        "suite", "endpoint", "kpi", previous="value"
    )
    lower_is_better = pl.col("kpi").replace_strict(KPIS, return_dtype=pl.Boolean)
    change = pl.when(pl.col("previous") > 0).then(pl.col("current") / pl.col("previous") - 1)
    return (
        current.rename({"value": "current"})
        .join(previous, on=["suite", "endpoint", "kpi"], how="left")
        .with_columns(change=change)
        .with_columns(
            better=pl.when(lower_is_better)
            .then(pl.col("change") < 0)
            .otherwise(pl.col("change") > 0)
        )
        .select("suite", "endpoint", "kpi", "previous", "current", "change", "better", "runs")
        .sort("suite", "endpoint", "kpi")
    )


def regression_changes(data: WeeklyData) -> pl.DataFrame:
    """What happened to regressions this week, per combination x endpoint x metric.

    ``opened``: regressed in a run of this week and not in any run of the previous week;
    ``fixed``: regressed in an earlier run and judged ok in the latest run of this week;
    ``open``: still regressed in the latest run of this week.
    Columns: status, suite, scenario, environment, endpoint, metric, first_run, last_run,
    change (of the latest regressed run).
    """
    keys = ["suite", "scenario", "environment", "endpoint", "metric"]
    judged = data.verdicts.filter(
        pl.col("verdict").is_in(["regression", "trade-off", "suspect", "improvement", "ok"])
    )
    week_rows = judged.filter(_in(data.week))
    if week_rows.height == 0:
        return pl.DataFrame(
            schema={
                "status": pl.String,
                **{k: pl.String for k in keys},
                "first_run": pl.String,
                "last_run": pl.String,
                "change": pl.Float64,
            }
        )
    latest = week_rows.sort("started_at").group_by(keys).last()
    regressed = judged.filter(pl.col("regression")).sort("started_at")
    first = regressed.group_by(keys).agg(
        first_run=pl.col("run_id").first(),
        last_regressed=pl.col("run_id").last(),
        change=pl.col("change").last(),
        this_week=_in(data.week).any(),
        previous_week=_in(data.week.previous).any(),
    )
    merged = latest.select(
        *keys, last_run="run_id", now_regressed="regression", last_verdict="verdict"
    ).join(first, on=keys)
    status = (
        # Suspect (worse as the values stand, untested) is no fix.
        pl.when(~pl.col("now_regressed") & (pl.col("last_verdict") != "suspect"))
        .then(pl.lit("fixed"))
        .when(pl.col("this_week") & ~pl.col("previous_week"))
        .then(pl.lit("opened"))
        .otherwise(pl.lit("open"))
    )
    order = {"opened": 0, "open": 1, "fixed": 2}
    return (
        merged.with_columns(status=status)
        .select("status", *keys, "first_run", "last_run", "change")
        .sort(pl.col("status").replace_strict(order, return_dtype=pl.Int8), "endpoint")
    )


def forecast_view(data: WeeklyData) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(forecast rows of the chosen series for the chart, one row per series at its horizon).

    Only series of suites that ran this week; for the chart, the p95 latency series with the
    largest forecast growth, at most FORECAST_SERIES of them."""
    suites = data.this_week["suite"].unique().to_list()
    rows = data.forecasts.filter(pl.col("suite").is_in(suites))
    keys = list(SERIES_KEYS)
    horizon = rows.filter(pl.col("step") == pl.col("step").max().over(keys)).sort(keys)
    first = rows.filter(pl.col("step") == pl.col("step").min().over(keys)).select(
        *keys, start="mean"
    )
    growth = (
        horizon.join(first, on=keys)
        .filter((pl.col("metric") == FORECAST_METRIC) & (pl.col("endpoint") != RESOURCES))
        .with_columns(growth=pl.col("mean") / pl.col("start"))
        .sort("growth", descending=True, nulls_last=True)
        .head(FORECAST_SERIES)
        .select(keys)
    )
    chart = rows.join(growth, on=keys).with_columns(
        series=pl.col("suite") + " " + pl.col("endpoint")
    )
    return chart, horizon


def weekly_banner(data: WeeklyData, kpis: pl.DataFrame, changes: pl.DataFrame) -> Banner:
    opened = changes.filter(pl.col("status") == "opened")
    fixed = changes.filter(pl.col("status") == "fixed")
    p95 = kpis.filter((pl.col("kpi") == "latency_p95") & pl.col("change").is_not_null())
    better = int(p95["better"].sum())
    headline = f"Week {data.week}: {opened.height} regression(s) opened, {fixed.height} fixed"
    detail = (
        f"{data.this_week.height} run(s); p95 latency better on {better} of {p95.height} "
        f"endpoint(s) compared with {data.week.previous}."
    )
    level = "regression" if opened.height else "pass" if data.this_week.height else "info"
    return Banner(level, headline, detail)


def _kpi_rows(kpis: pl.DataFrame) -> tuple[list[list[str]], list[str]]:
    rows, classes = [], []
    for r in kpis.sort(pl.col("change").abs(), descending=True, nulls_last=True).iter_rows(
        named=True
    ):
        rows.append(
            [
                display_name(r["endpoint"]),
                r["suite"],
                metric_name(r["kpi"]),
                value(r["kpi"], r["previous"]),
                value(r["kpi"], r["current"]),
                pct(r["change"]),
                str(r["runs"]),
            ]
        )
        significant = r["change"] is not None and abs(r["change"]) >= 0.05
        classes.append(("improvement" if r["better"] else "regression") if significant else "")
    return rows, classes


def weekly_summary(data: WeeklyData) -> str:
    """Layer 1 of the weekly report, Markdown."""
    kpis, changes = kpi_changes(data), regression_changes(data)
    head = weekly_banner(data, kpis, changes)
    lines = [
        f"# Weekly report: {data.week}",
        "",
        f"**{md(head.headline)}** ({md(head.detail)})",
        "",
    ]
    p95 = kpis.filter(pl.col("kpi") == "latency_p95").drop_nulls("change")
    if p95.height:
        lines += ["## p95 latency, week over week", ""]
        rows = [
            [
                md(display_name(r["endpoint"])),
                md(r["suite"]),
                value("latency_p95", r["previous"]),
                value("latency_p95", r["current"]),
                md(pct(r["change"])),
            ]
            for r in p95.sort(pl.col("change"), descending=True).head(10).iter_rows(named=True)
        ]
        lines += [md_table(["endpoint", "suite", "previous", "this week", "change"], rows), ""]
    lines += ["## Regressions opened and fixed", ""]
    if changes.height:
        rows = [
            [
                r["status"],
                md(display_name(r["endpoint"])),
                md(r["suite"]),
                metric_name(r["metric"]),
                md(r["first_run"]),
                md(r["last_run"]),
            ]
            for r in changes.iter_rows(named=True)
        ]
        lines.append(
            md_table(["status", "endpoint", "suite", "metric", "first regressed", "latest"], rows)
        )
    else:
        lines.append("None this week.")
    return "\n".join(lines).strip() + "\n"


def _triage_section(data: WeeklyData) -> Section:
    """The marks people made this week: what was a real change and what a false alarm."""
    marks = data.triage.sort("marked_at")
    if marks.height == 0:
        return Section("triage", "Triage", ["Nothing was marked this week."])
    expected = int((marks["mark"] == "expected").sum())
    return Section(
        "triage",
        "Triage",
        [
            f"{marks.height} finding(s) and alert(s) marked this week: {expected} expected (a "
            f"real, intended change), {marks.height - expected} invalid (a false alarm)."
        ],
        [
            Table(
                [
                    "mark",
                    "kind",
                    "endpoint",
                    "suite / scenario / env",
                    "metric",
                    "run",
                    "note",
                    "by",
                ],
                [
                    [
                        r["mark"],
                        r["kind"] or "",
                        display_name(r["endpoint"] or ""),
                        f"{r['suite']} / {display_name(r['scenario'] or '')} / "
                        f"{display_name(r['environment'] or '')}",
                        metric_name(r["metric"]) if r["metric"] else "",
                        r["run_id"] or "",
                        one_line(r["note"] or ""),
                        r["marked_by"] or "",
                    ]
                    for r in marks.iter_rows(named=True)
                ],
                ["improvement" if m == "expected" else "" for m in marks["mark"]],
            )
        ],
    )


def weekly_document(data: WeeklyData) -> Document:
    """Layers 2 and 3 of the weekly report."""
    kpis, changes = kpi_changes(data), regression_changes(data)
    kpi_rows, kpi_classes = _kpi_rows(kpis)
    chart_rows, horizon = forecast_view(data)
    runs = data.this_week.sort("started_at")
    sections = [
        Section(
            "kpis",
            "Week over week",
            [
                f"Median of the per-run values of {data.week} against {data.week.previous}, per "
                "suite and endpoint. Green: better by 5 % or more, red: worse by 5 % or more."
            ],
            [
                Table(
                    ["endpoint", "suite", "KPI", "previous week", "this week", "change", "runs"],
                    kpi_rows,
                    kpi_classes,
                )
            ],
        ),
        Section(
            "regressions",
            "Regressions opened and fixed",
            [
                "Opened: regressed this week, not last week. Fixed: regressed before and "
                "judged ok in the latest run of this week. Open: still regressed."
            ]
            + ([] if changes.height else ["No regression this week."]),
            [
                Table(
                    [
                        "status",
                        "endpoint",
                        "suite / scenario / env",
                        "metric",
                        "first regressed",
                        "latest run",
                        "change",
                    ],
                    [
                        [
                            r["status"],
                            display_name(r["endpoint"]),
                            f"{r['suite']} / {display_name(r['scenario'])} / "
                            f"{display_name(r['environment'])}",
                            metric_name(r["metric"]),
                            r["first_run"],
                            r["last_run"],
                            pct(r["change"]),
                        ]
                        for r in changes.iter_rows(named=True)
                    ],
                    ["regression" if s != "fixed" else "improvement" for s in changes["status"]],
                )
            ]
            if changes.height
            else [],
        ),
        _triage_section(data),
        Section(
            "forecasts",
            "Capacity forecasts",
            [
                "Forecasts of the weekly analysis with 95 % prediction intervals, for the suites "
                "that ran this week; the chart shows the p95 latency series growing fastest."
            ]
            + ([] if horizon.height else ["No forecast yet (the weekly analysis needs history)."]),
            [
                Table(
                    ["endpoint", "suite", "metric", "at", "forecast", "95 % interval", "method"],
                    [
                        [
                            display_name(r["endpoint"]),
                            r["suite"],
                            metric_name(r["metric"]),
                            f"{r['ts']:%Y-%m-%d}",
                            f"{r['mean']:.4g}",
                            f"[{r['lower']:.4g}, {r['upper']:.4g}]",
                            r["method"] or "",
                        ]
                        for r in horizon.head(100).iter_rows(named=True)
                    ],
                    more=max(0, horizon.height - 100),
                )
            ]
            if horizon.height
            else [],
            [Chart("forecast", "p95 latency forecast", charts.forecast_chart(chart_rows, "ms"))]
            if chart_rows.height
            else [],
        ),
        Section(
            "runs",
            "Runs of the week",
            [] if runs.height else ["No valid run this week."],
            [
                Table(
                    ["run", "suite / scenario / env", "started", "version"],
                    [
                        [
                            r["run_id"],
                            f"{r['suite']} / {display_name(r['scenario'])} / "
                            f"{display_name(r['environment'])}",
                            f"{r['started_at']:%Y-%m-%d %H:%M}",
                            display_name(r["service_version"] or ""),
                        ]
                        for r in runs.iter_rows(named=True)
                    ],
                )
            ]
            if runs.height
            else [],
        ),
    ]
    return Document(
        title=f"Weekly report: {data.week}",
        banner=weekly_banner(data, kpis, changes),
        facts=[
            (
                "week",
                f"{data.week} ({data.week.start:%Y-%m-%d} to "
                f"{data.week.end - timedelta(days=1):%Y-%m-%d})",
            ),
            ("runs", str(runs.height)),
            ("suites", one_line(", ".join(sorted(set(runs["suite"])))) or "none"),
        ],
        sections=sections,
    )


def weekly_raw(data: WeeklyData) -> list[tuple[str, pl.LazyFrame]]:
    """Layer 4: the week's runs, summaries, verdicts, and the forecasts shown."""
    ids = data.this_week["run_id"].to_list()
    verdicts = data.verdicts.filter(pl.col("run_id").is_in(ids)).select(SCHEMAS["verdicts"].names())
    suites = data.this_week["suite"].unique().to_list()
    return [
        ("runs", data.this_week.lazy()),
        ("run_summary", data.summaries.filter(pl.col("run_id").is_in(ids)).lazy()),
        ("verdicts", verdicts.lazy()),
        ("forecasts", data.forecasts.filter(pl.col("suite").is_in(suites)).lazy()),
    ]
