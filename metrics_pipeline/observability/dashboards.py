"""Grafana dashboards over the Postgres warehouse, built with grafana-foundation-sdk.

Four dashboards (executive, performance, resources, regressions) whose panels query the
warehouse tables and SQL marts in the ``metrics`` schema, plus the provisioning files that give
Grafana the Postgres datasource and load the dashboards from a folder.

The SDK has no query type for SQL datasources, so :class:`SqlQuery` (a ``Dataquery``) carries
the ``rawSql`` and its builder plugs into the SDK's panel builders like any other query.
"""

from __future__ import annotations

import json
from typing import Any, Self
from urllib.parse import urlsplit

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    VariableRefresh,
    VariableSort,
)

DATASOURCE_UID = "metrics-warehouse"
DATASOURCE_TYPE = "grafana-postgresql-datasource"  # the plugin id since Grafana 10.2
DATASOURCE = DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)
FOLDER = "Load tests"
# Which runs every panel shows: the dashboard's time range on the run's start, and the
# selected suites and environments (Grafana writes a multi-value as a quoted, comma list).
RUN_FILTER = (
    "$__timeFilter({runs}.started_at)"
    " and {runs}.suite in ($suite) and {runs}.environment in ($environment)"
)


class SqlQuery(cogvariants.Dataquery):
    """A raw SQL query of Grafana's SQL datasources (Postgres, MySQL, MSSQL)."""

    def __init__(self, ref_id: str = "A", raw_sql: str = "", format_val: str = "table"):
        self.ref_id = ref_id
        self.raw_sql = raw_sql
        self.format_val = format_val  # "table" or "time_series"

    def to_json(self) -> dict[str, object]:
        return {
            "refId": self.ref_id,
            "datasource": DATASOURCE.to_json(),
            "editorMode": "code",
            "rawQuery": True,
            "rawSql": self.raw_sql,
            "format": self.format_val,
        }


class SqlQueryBuilder(cogbuilder.Builder[SqlQuery]):
    def __init__(self, raw_sql: str) -> None:
        self._internal = SqlQuery(raw_sql=raw_sql)

    def build(self) -> SqlQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def time_series(self) -> Self:
        """Rows of (time, metric, value) drawn as one series per ``metric``."""
        self._internal.format_val = "time_series"
        return self


def _runs(alias: str = "runs") -> str:
    return RUN_FILTER.format(runs=alias)


def _series(title: str, sql: str, unit: str, description: str) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(SqlQueryBuilder(sql).time_series())
        .unit(unit)
        .span(12)
        .height(8)
    )


def _table(title: str, sql: str, description: str, span: int = 24) -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(SqlQueryBuilder(sql))
        .span(span)
        .height(8)
    )


def _stat(title: str, sql: str, description: str, unit: str = "none") -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(SqlQueryBuilder(sql))
        .unit(unit)
        .span(6)
        .height(4)
    )


def _variable(name: str, schema: str) -> dash.QueryVariable:
    return (
        dash.QueryVariable(name)
        .label(name.capitalize())
        .datasource(DATASOURCE)
        .query(f"select distinct {name} from {schema}.runs order by 1")
        .multi(True)
        .include_all(True)
        .refresh(VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(VariableSort.ALPHABETICAL_ASC)
    )


def _dashboard(uid: str, title: str, description: str, schema: str) -> dash.Dashboard:
    return (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["metrics-pipeline", "load tests"])
        .time("now-30d", "now")
        .refresh("5m")
        .timezone("utc")
        .with_variable(_variable("suite", schema))
        .with_variable(_variable("environment", schema))
    )


def executive(schema: str = "metrics") -> dash.Dashboard:
    s = schema
    latest = f"""
with ranked as (
    select runs.*, row_number() over (
        partition by suite, scenario, environment order by started_at desc
    ) as recency
    from {s}.runs as runs
    where {_runs()}
)
select
    ranked.suite, ranked.scenario, ranked.environment, ranked.run_id, ranked.started_at,
    ranked.service_version,
    case
        when not coalesce(ranked.valid, true) then 'invalid'
        when bool_or(verdicts.verdict = 'regression') then 'regression'
        when bool_or(verdicts.verdict = 'trade-off') then 'trade-off'
        when bool_or(verdicts.verdict = 'suspect') then 'suspect'
        when bool_or(verdicts.verdict in ('ok', 'improvement')) then 'pass'
        else 'no baseline'
    end as verdict,
    count(*) filter (where verdicts.regression) as regressions
from ranked
left join {s}.verdicts as verdicts on verdicts.run_id = ranked.run_id
where ranked.recency = 1
group by ranked.suite, ranked.scenario, ranked.environment, ranked.run_id,
    ranked.started_at, ranked.service_version, ranked.valid
order by ranked.suite, ranked.scenario, ranked.environment"""
    return (
        _dashboard(
            "metrics-pipeline-executive",
            "Load tests: executive",
            "How many runs, how many regressed, and where each suite stands now.",
            s,
        )
        .with_panel(
            _stat(
                "Runs",
                f"select count(*) as runs from {s}.runs as runs where {_runs()}",
                "Runs started in the time range.",
            )
        )
        .with_panel(
            _stat(
                "Runs with a regression",
                f"select count(distinct runs.run_id) as runs from {s}.runs as runs "
                f"join {s}.verdicts as verdicts on verdicts.run_id = runs.run_id "
                f"where verdicts.regression and {_runs()}",
                "Runs whose verdict flags at least one endpoint and metric.",
            )
        )
        .with_panel(
            _stat(
                "Valid runs",
                "select 100.0 * avg(case when coalesce(runs.valid, true) then 1 else 0 end) "
                f"as valid_pct from {s}.runs as runs where {_runs()}",
                "Share of runs whose data passed validation (invalid runs get no verdict).",
                unit="percent",
            )
        )
        .with_panel(
            _stat(
                "Endpoints regressed in the latest runs",
                # The latest valid run (an invalid one has no verdict: the one before still
                # stands, as in the exporter), and each combination's endpoints counted apart.
                f"with latest as (select distinct on (suite, scenario, environment) run_id, "
                f"suite, scenario, environment from {s}.runs as runs where {_runs()} "
                "and coalesce(runs.valid, true) "
                "order by suite, scenario, environment, started_at desc) "
                "select count(distinct (latest.suite, latest.scenario, latest.environment, "
                f"verdicts.endpoint)) as endpoints from {s}.verdicts "
                "as verdicts join latest on latest.run_id = verdicts.run_id "
                "where verdicts.regression",
                "Open regressions: regressed endpoints of each combination's latest valid run.",
            )
        )
        .with_panel(
            _table(
                "Latest run per suite, scenario and environment",
                latest,
                "The word of each combination's latest run: regression, trade-off, suspect "
                "(worse, too few values to test), pass, no baseline or invalid.",
            )
        )
        .with_panel(
            _series(
                "Regressions per run",
                f"select runs.started_at as time, 'regressions' as metric, "
                f"count(*) filter (where verdicts.regression) as value "
                f"from {s}.runs as runs join {s}.verdicts as verdicts "
                f"on verdicts.run_id = runs.run_id where {_runs()} "
                "group by runs.started_at order by 1",
                "none",
                "Endpoint x metric verdicts judged a regression, per run.",
            )
        )
        .with_panel(
            _series(
                "Run p95 latency",
                "select runs.started_at as time, "
                "runs.suite || ' / ' || runs.scenario || ' / ' || runs.environment as metric, "
                f"runs.latency_p95 as value from {s}.run_tiers as runs "
                f"where runs.latency_p95 is not null and {_runs()} order by 1",
                "ms",
                "p95 latency over all successful requests of each run (mart run_tiers).",
            )
        )
    )


def performance(schema: str = "metrics") -> dash.Dashboard:
    s = schema
    return (
        _dashboard(
            "metrics-pipeline-performance",
            "Load tests: performance",
            "Latency, throughput and errors per run and endpoint.",
            s,
        )
        .with_panel(
            _series(
                "p95 latency per endpoint",
                "select runs.started_at as time, summary.endpoint as metric, "
                f"summary.latency_p95 as value from {s}.run_summary as summary "
                f"join {s}.runs as runs on runs.run_id = summary.run_id "
                f"where summary.latency_p95 is not null and {_runs()} order by 1",
                "ms",
                "Successful requests only (table run_summary).",
            )
        )
        .with_panel(
            _series(
                "p50 latency per endpoint",
                "select runs.started_at as time, summary.endpoint as metric, "
                f"summary.latency_p50 as value from {s}.run_summary as summary "
                f"join {s}.runs as runs on runs.run_id = summary.run_id "
                f"where summary.latency_p50 is not null and {_runs()} order by 1",
                "ms",
                "Successful requests only (table run_summary).",
            )
        )
        .with_panel(
            _series(
                "Throughput per run",
                "select runs.started_at as time, "
                "runs.suite || ' / ' || runs.environment as metric, "
                f"perf.throughput_rps as value from {s}.run_performance as perf "
                f"join {s}.runs as runs on runs.run_id = perf.run_id "
                f"where perf.throughput_rps is not null and {_runs()} order by 1",
                "reqps",
                "Requests per second over the run (mart run_performance).",
            )
        )
        .with_panel(
            _series(
                "Error rate per run",
                "select runs.started_at as time, "
                "runs.suite || ' / ' || runs.environment as metric, "
                f"runs.error_rate as value from {s}.run_tiers as runs "
                f"where runs.error_rate is not null and {_runs()} order by 1",
                "percentunit",
                "Failed over all requests (stability tier of mart run_tiers).",
            )
        )
        .with_panel(
            _series(
                "Daily mean p95 latency per endpoint",
                "select cast(daily.day as timestamp) as time, daily.endpoint as metric, "
                f"daily.mean_value as value from {s}.metric_daily as daily "
                "where daily.metric_name = 'latency_p95' and $__timeFilter(daily.day) "
                "and daily.suite in ($suite) and daily.environment in ($environment) "
                "order by 1",
                "ms",
                "Mean over the day's valid runs (mart metric_daily).",
            )
        )
        .with_panel(
            _table(
                "Endpoints of the latest run",
                f"with latest as (select runs.run_id from {s}.runs as runs where {_runs()} "
                "order by runs.started_at desc limit 1) "
                "select summary.run_id, summary.endpoint, summary.requests, summary.errors, "
                "summary.error_rate, summary.throughput_rps, summary.latency_p50, "
                "summary.latency_p95, summary.latency_p99, summary.latency_max "
                f"from {s}.run_summary as summary "
                "join latest on latest.run_id = summary.run_id order by summary.endpoint",
                "Per-endpoint summary of the most recent run in the selection.",
                span=12,
            )
        )
    )


def resources(schema: str = "metrics") -> dash.Dashboard:
    s = schema
    return (
        _dashboard(
            "metrics-pipeline-resources",
            "Load tests: resources",
            "CPU, memory and other samples taken on the hosts during the runs.",
            s,
        )
        .with_panel(
            _series(
                "CPU per run",
                "select runs.started_at as time, runs.suite || ' / ' || runs.environment "
                f"as metric, runs.cpu_pct as value from {s}.run_tiers as runs "
                f"where runs.cpu_pct is not null and {_runs()} order by 1",
                "percent",
                "Mean CPU % over all hosts' samples of the run (efficiency tier).",
            )
        )
        .with_panel(
            _series(
                "Memory per run",
                "select runs.started_at as time, runs.suite || ' / ' || runs.environment "
                f"as metric, runs.mem_pct as value from {s}.run_tiers as runs "
                f"where runs.mem_pct is not null and {_runs()} order by 1",
                "percent",
                "Mean memory % over all hosts' samples of the run (efficiency tier).",
            )
        )
        .with_panel(
            _series(
                "CPU samples",
                "select samples.ts as time, samples.host as metric, samples.value "
                f"from {s}.resources as samples "
                f"join {s}.runs as runs on runs.run_id = samples.run_id "
                f"where samples.metric = 'cpu_pct' and $__timeFilter(samples.ts) "
                "and runs.suite in ($suite) and runs.environment in ($environment) "
                "order by 1",
                "percent",
                "Every CPU sample during the runs, per host (raw rows: kept 30 days).",
            )
        )
        .with_panel(
            _table(
                "Resource usage per run, host and metric",
                "select runs.started_at, usage.run_id, usage.host, usage.metric_name, "
                "usage.samples, usage.mean_value, usage.p95_value, usage.max_value "
                f"from {s}.run_resources as usage "
                f"join {s}.runs as runs on runs.run_id = usage.run_id where {_runs()} "
                "order by runs.started_at desc, usage.host, usage.metric_name limit 500",
                "Mean, p95 and maximum per run, host and metric (mart run_resources).",
            )
        )
    )


def regressions(schema: str = "metrics") -> dash.Dashboard:
    s = schema
    return (
        _dashboard(
            "metrics-pipeline-regressions",
            "Load tests: regressions",
            "Which runs regressed, where, by how much, and how sure we are.",
            s,
        )
        .with_panel(
            _table(
                "Regressions",
                "select runs.started_at, runs.suite, runs.scenario, runs.environment, "
                "runs.run_id, runs.service_version, runs.git_sha, verdicts.endpoint, "
                "verdicts.metric, verdicts.baseline, verdicts.candidate, verdicts.change, "
                "verdicts.ci_low, verdicts.ci_high, verdicts.p_adjusted "
                f"from {s}.verdicts as verdicts "
                f"join {s}.runs as runs on runs.run_id = verdicts.run_id "
                f"where verdicts.regression and {_runs()} "
                "order by runs.started_at desc, verdicts.change desc",
                "Worse by more than the threshold, significant after Benjamini-Hochberg, and "
                "above the minimum absolute effect. Change is relative (+0.25 = 25 % worse), for "
                "error rates in rate points (+0.02 = 2 percentage points worse).",
            )
        )
        .with_panel(
            _series(
                "p95 latency change against the baseline",
                "select runs.started_at as time, verdicts.endpoint as metric, "
                f"verdicts.change as value from {s}.verdicts as verdicts "
                f"join {s}.runs as runs on runs.run_id = verdicts.run_id "
                "where verdicts.metric = 'latency_p95' and verdicts.change is not null "
                f"and {_runs()} order by 1",
                "percentunit",
                "Relative change of each run's p95 against its baseline runs.",
            )
        )
        .with_panel(
            _table(
                "Regressions per endpoint",
                "select verdicts.endpoint, count(*) filter (where verdicts.regression) "
                "as regressions, count(distinct verdicts.run_id) as runs_judged, "
                "max(verdicts.change) filter (where verdicts.regression) as worst_change "
                f"from {s}.verdicts as verdicts "
                f"join {s}.runs as runs on runs.run_id = verdicts.run_id "
                "where verdicts.verdict <> 'no baseline' "
                f"and {_runs()} group by verdicts.endpoint order by 2 desc, 1",
                "How often each endpoint regressed among the runs that had a baseline.",
                span=12,
            )
        )
    )


DASHBOARDS = {
    "executive": executive,
    "performance": performance,
    "resources": resources,
    "regressions": regressions,
}


def dashboard_json(builder: dash.Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (what the file provider loads)."""
    return json.loads(json.dumps(builder.build(), cls=JSONEncoder))


def datasource_provisioning(postgres_url: str | None, schema: str = "metrics") -> dict[str, Any]:
    """Grafana's datasource provisioning for the Postgres warehouse. The password is never
    written: Grafana reads it from METRICS_GRAFANA_PG_PASSWORD when it loads the file."""
    url = urlsplit(postgres_url or "postgresql://grafana@localhost:5432/metrics")
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Metrics warehouse",
                "uid": DATASOURCE_UID,
                "type": DATASOURCE_TYPE,
                "access": "proxy",
                "url": f"{url.hostname or 'localhost'}:{url.port or 5432}",
                "user": url.username or "grafana",
                "isDefault": True,
                "editable": False,
                "jsonData": {
                    "database": url.path.lstrip("/") or "postgres",
                    "sslmode": "disable"
                    if url.hostname in {"localhost", "127.0.0.1"}
                    else "require",
                    "postgresVersion": 1500,
                    "timescaledb": False,
                    # The panels name their schema; this keeps ad-hoc queries there too.
                    "searchPath": schema,
                },
                "secureJsonData": {"password": "${METRICS_GRAFANA_PG_PASSWORD}"},
            }
        ],
    }


def dashboard_provider(path: str) -> dict[str, Any]:
    """Grafana's dashboard provisioning: load every JSON file in ``path`` into one folder."""
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "metrics-pipeline",
                "folder": FOLDER,
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "options": {"path": path, "foldersFromFilesStructure": False},
            }
        ],
    }
