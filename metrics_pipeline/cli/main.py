"""The ``metrics-pipeline`` command.

Exit codes, the same for every command:

* 0 success: done, and nothing the command gates on was found.
* 1 the command found what it gates on: a regression (``compare``, ``versions``), a change
  (``baseline diff``), a missed target (``backtest``), a failed run (``demo``, ``rebuild``),
  Parquet and Postgres that differ (``check``),
  a run that failed validation (``ingest``), a notification still waiting (``alerts deliver``).
* 2 bad usage or input: an unknown command or option, a missing argument, an invalid
  manifest, unreadable or missing files, a bad baseline file.

``run`` exits with the load-test command's own code (2 when that is 0 but the command left
no result file, or for bad input). Long loops (``upload`` over files, ``ingest`` over files,
``demo`` and ``rebuild`` over runs) draw a progress bar on stderr.
"""

from __future__ import annotations

from metrics_pipeline.cli import check, gate, monitoring, pipeline, query, runs
from metrics_pipeline.cli.alerts import alerts_app
from metrics_pipeline.cli.baseline import baseline_app
from metrics_pipeline.cli.output import command_group
from metrics_pipeline.cli.triage import triage_app

app = command_group(
    "Load-test metrics pipeline: upload, ingest, compare, and the end-to-end demo.",
    add_completion=False,
)
for command in (
    gate.compare,
    gate.versions,
    runs.upload,
    runs.ingest,
    pipeline.demo,
    pipeline.backtest,
    pipeline.report,
    pipeline.rebuild,
    pipeline.retention,
    monitoring.exporter,
    query.sql,
    check.check,
):
    app.command()(command)
# `run -- <command>`: everything after the options is the load test's own command line.
app.command(context_settings={"ignore_unknown_options": True})(runs.run)
app.add_typer(monitoring.monitoring_app, name="monitoring")
app.add_typer(baseline_app, name="baseline")
app.add_typer(alerts_app, name="alerts")
app.add_typer(triage_app, name="triage")
