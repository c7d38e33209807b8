"""Sensors: react to runs uploaded to the object store."""

import dagster as dg

from sensors.alerting import alert_delivery_sensor, alert_on_run_failure, resolve_on_run_success
from sensors.uploads import new_run_sensor

defs = dg.Definitions(
    sensors=[new_run_sensor, alert_delivery_sensor, alert_on_run_failure, resolve_on_run_success]
)
