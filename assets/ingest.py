"""Ingest group: one uploaded run -> canonical warehouse partitions, validated."""

import dagster as dg

from metrics_pipeline.ingest import ingest_from_store
from metrics_pipeline.models import ManifestError
from metrics_pipeline.partitions import runs_partitions
from metrics_pipeline.resources import ObjectStore, WarehouseResource
from metrics_pipeline.validation import validate

REQUESTS = dg.AssetKey(["warehouse", "requests"])
EXPECTATIONS = "great_expectations"


@dg.asset(
    key=REQUESTS,
    partitions_def=runs_partitions,
    group_name="ingest",
    kinds={"python", "parquet", "duckdb"},
    check_specs=[dg.AssetCheckSpec(EXPECTATIONS, asset=REQUESTS, blocking=True)],
    description="Per-request rows of one uploaded run (plus its quarantine and catalog row).",
)
def requests(
    context: dg.AssetExecutionContext,
    object_store: ObjectStore,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    run_id = context.partition_key
    store_warehouse = warehouse.get()
    try:
        report = ingest_from_store(object_store, store_warehouse, run_id)
    except ManifestError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    for problem in report.file_errors:
        context.log.warning(f"run {run_id}: {problem}")
    store_warehouse.refresh_catalog()

    validation = validate("requests", store_warehouse.read("requests", [run_id]))
    files_md = "\n".join(
        [
            "| file | format | read | accepted | quarantined | problem |",
            "|---|---|---:|---:|---:|---|",
        ]
        + [
            f"| {f['file']} | {f['format']} | {f['rows_read']} | {f['rows_accepted']} "
            f"| {f['rows_quarantined']} | {f['error'] or ''} |"
            for f in report.files
        ]
    )
    return dg.MaterializeResult(
        metadata={
            "suite": report.manifest.suite,
            "rows_read": report.rows_read,
            "rows_accepted": report.rows_accepted,
            "rows_quarantined": report.rows_quarantined,
            "dagster/row_count": report.rows.get("requests", 0),
            "files": dg.MetadataValue.md(files_md),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=EXPECTATIONS,
                passed=validation.success,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={
                    "expectations": dg.MetadataValue.md(validation.as_markdown()),
                    "failed": len(validation.failures),
                    "unexpected_rows": sum(o.unexpected_count for o in validation.failures),
                },
            )
        ],
    )


ci_stage_job = dg.define_asset_job(
    "ci_stage",
    selection=dg.AssetSelection.groups("ingest", "warehouse", "analysis"),
    partitions_def=runs_partitions,
    # The four steps form a chain, so a process per step would only add imports (seconds
    # each); runs of different partitions still run in parallel, one process per run.
    executor_def=dg.in_process_executor,
    description="Everything one uploaded run needs: ingest, validate, summarise, judge.",
)
