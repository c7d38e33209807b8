"""Schedules: the nightly and weekly stages. The CI stage needs none: new_run_sensor drives it.

Cron strings and the time zone come from the settings (METRICS_NIGHTLY_CRON,
METRICS_WEEKLY_CRON, METRICS_TIMEZONE).
"""

import dagster as dg

from metrics_pipeline.settings import Settings


def build_schedules(settings: Settings) -> list[dg.ScheduleDefinition]:
    return [
        dg.ScheduleDefinition(
            name="nightly_schedule",
            job_name="nightly",
            cron_schedule=settings.nightly_cron,
            execution_timezone=settings.timezone,
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description="The nightly job: the marts, change points, drifts, findings and their "
            "alerts over the whole history, then retention.",
        ),
        dg.ScheduleDefinition(
            name="weekly_schedule",
            job_name="weekly",
            cron_schedule=settings.weekly_cron,
            execution_timezone=settings.timezone,
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description="The weekly job: forecasts, capacity findings and their alerts, the "
            "week's report.",
        ),
    ]


def build_defs(settings: Settings) -> dg.Definitions:
    """The nightly and weekly schedules, at the settings' times."""
    return dg.Definitions(schedules=build_schedules(settings))
