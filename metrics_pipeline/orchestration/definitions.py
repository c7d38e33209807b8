"""The one composition root: the assets, sensors and schedules packages plus the resources."""

import dagster as dg

import assets
import schedules
import sensors
from metrics_pipeline.orchestration.resources import (
    AlertingResource,
    BaselineFileResource,
    ClockResource,
    ObjectStoreResource,
    ReportsResource,
    VerdictRulesResource,
    WarehouseResource,
)
from metrics_pipeline.settings import Settings


def build_definitions(settings: Settings | None = None, *, notify: bool = True) -> dg.Definitions:
    """Everything Dagster runs, on ``settings`` (default: the environment's).

    ``notify`` false builds jobs that keep the alerts' state and send no notification, and
    write reports to their folder only (not to the bucket), for
    ``rebuild``, which replays history.
    """
    settings = settings or Settings.from_env()
    resources = {
        "object_store": ObjectStoreResource.from_settings(settings),
        "warehouse": WarehouseResource(
            root=settings.warehouse_location,
            local=str(settings.warehouse_root),
            s3_endpoint_url=settings.s3_endpoint_url,
            s3_region=settings.s3_region,
            # As an EnvVar the URL (and any password in it) stays out of the UI and run config.
            postgres_url=dg.EnvVar("METRICS_POSTGRES_URL") if settings.postgres_url else None,
            postgres_schema=settings.postgres_schema,
        ),
        "baselines": BaselineFileResource(path=str(settings.baselines_file)),
        "verdict_rules": VerdictRulesResource(path=str(settings.verdict_rules)),
        # A rebuild (notify false) writes its reports aside and publishes them after its swap.
        "reports": ReportsResource(root=str(settings.reports_root), upload=notify),
        "alerting": AlertingResource.from_settings(settings, notify=notify),
        "clock": ClockResource.from_settings(settings),
    }
    return dg.Definitions.merge(
        assets.build_defs(settings),
        sensors.build_defs(settings),
        schedules.build_defs(settings),
        dg.Definitions(resources=resources),
    )


defs = build_definitions()
