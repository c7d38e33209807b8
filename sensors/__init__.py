"""Sensors: react to runs uploaded to the object store, to baseline runs uploaded again and to
the alerts' outbox."""

import dagster as dg

from metrics_pipeline.settings import Settings
from sensors.alerting import alert_delivery_sensor, alert_on_run_failure, resolve_on_run_success
from sensors.baselines import stale_verdicts_sensor
from sensors.uploads import new_run_sensor

SENSORS = [
    new_run_sensor,
    stale_verdicts_sensor,
    alert_delivery_sensor,
    alert_on_run_failure,
    resolve_on_run_success,
]


def build_defs(settings: Settings) -> dg.Definitions:
    """The sensors (they take everything they need from the resources, not the settings)."""
    return dg.Definitions(sensors=SENSORS)
