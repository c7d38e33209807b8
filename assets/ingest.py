"""Ingest group: one uploaded run -> canonical warehouse partitions, validated."""

import dagster as dg

from metrics_pipeline.contracts.manifest import ManifestError
from metrics_pipeline.formats import kept_as
from metrics_pipeline.orchestration.partitions import run_check, runs_partitions
from metrics_pipeline.orchestration.resources import (
    AlertingResource,
    ClockResource,
    ObjectStoreResource,
    ReportsResource,
    VerdictRulesResource,
    WarehouseResource,
)
from metrics_pipeline.stages import ci

REQUESTS = dg.AssetKey(["warehouse", "requests"])
EXPECTATIONS = "great_expectations"


@dg.asset(
    key=REQUESTS,
    partitions_def=runs_partitions,
    group_name="ingest",
    kinds={"python", "parquet", "duckdb"},
    check_specs=[
        run_check(
            EXPECTATIONS,
            REQUESTS,
            blocking=True,
            description="Great Expectations suites on every ingested table of the run (types, "
            "ranges, timestamps inside the run's window, unique lines, request or interval "
            "data present). Blocking: an invalid run gets no verdict and is never a baseline.",
        )
    ],
    description="The canonical rows of one uploaded run (requests, resources, events, interval "
    "stats, KPI points), its quarantine and its catalog row; validated, blocking on failure. "
    "An invalid run gets its report (INVALID RUN and why) here, and the alerts only its "
    "earlier version raised are resolved.",
)
def requests(
    context: dg.AssetExecutionContext,
    object_store: ObjectStoreResource,
    warehouse: WarehouseResource,
    clock: ClockResource,
    alerting: AlertingResource,
    reports: ReportsResource,
    verdict_rules: VerdictRulesResource,
) -> dg.MaterializeResult:
    run_id = context.partition_key
    store_warehouse = warehouse.get()
    try:
        report = ci.ingest(object_store.get(), store_warehouse, run_id, now=clock.now())
    except ManifestError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    for problem in report.file_errors:
        context.log.warning(f"run {run_id}: {problem}")

    validation = ci.validate(store_warehouse, report)
    if not validation.valid:
        # The blocking check stops every step after this one: what an earlier, valid version
        # of the run left (its report, the alerts only it raised) is put right here.
        from metrics_pipeline.reports.build import build_run_report

        config = alerting.config()
        ci.withdraw_alerts(
            store_warehouse,
            run_id,
            config,
            alerting.senders(config),
            now=clock.now(),
            notify=alerting.notify,
        )
        try:
            invalid_report = build_run_report(
                store_warehouse,
                run_id,
                reports.path(),
                reports.store(object_store),
                verdict_rules.get(),
            )
        except Exception as exc:  # the run is stored and marked; its report is secondary
            context.log.warning(f"run {run_id}: the invalid run's report not written: {exc}")
        else:
            _show_invalid(context, run_id, invalid_report)
    files_md = "\n".join(
        [
            "| file | format | read | accepted | quarantined | kept as | problem |",
            "|---|---|---:|---:|---:|---|---|",
        ]
        + [
            f"| {f['file']} | {f['format']} | {f['rows_read']} | {f['rows_accepted']} "
            f"| {f['rows_quarantined']} | {kept_as(f)} | {f['error'] or ''} |"
            for f in report.files
        ]
    )
    return dg.MaterializeResult(
        metadata={
            "suite": report.manifest.suite,
            "valid": validation.valid,
            # Which upload this is (upload_versions holds every one ingested, who and when).
            "upload_version": report.version or "",
            "uploaded_by": report.manifest.uploaded_by or "",
            "ignored_objects": ", ".join(report.ignored),
            "rows_read": report.rows_read,
            "rows_accepted": report.rows_accepted,
            "rows_quarantined": report.rows_quarantined,
            # Every canonical row of the run (a run known by its intervals has no requests).
            "dagster/row_count": sum(report.rows.values()),
            **{f"rows/{table}": count for table, count in sorted(report.rows.items())},
            "files": dg.MetadataValue.md(files_md),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=EXPECTATIONS,
                passed=validation.valid,
                severity=dg.AssetCheckSeverity.ERROR,
                description="Run marked invalid: " + "; ".join(validation.problems)
                if validation.problems
                else None,
                metadata={
                    "expectations": dg.MetadataValue.md(validation.as_markdown()),
                    "problems": len(validation.problems),
                    "unexpected_rows": sum(
                        o.unexpected_count for r in validation.results for o in r.failures
                    ),
                },
            )
        ],
    )


def _show_invalid(context: dg.AssetExecutionContext, run_id: str, report) -> None:
    """The run's verdicts and report in the UI say "invalid" (``report``: the invalid run's
    ``reports.build.BuiltReport``). The blocking check skips their steps, so the UI kept
    showing what an earlier, valid version of the run got (a verdict, a report that the files
    on disk no longer say) and, for a first upload, linked the INVALID report nowhere."""
    # Imported here: those modules import this one's asset key.
    from assets.analysis import VERDICTS
    from assets.reports import RUN_REPORT, report_metadata

    metadata = {"verdict": "invalid", **report_metadata(report.summary, report.published)}
    for key in (VERDICTS, RUN_REPORT):
        context.instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=key, partition=run_id, metadata=metadata)
        )
