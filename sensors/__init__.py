"""Sensors: react to runs uploaded to the object store."""

import dagster as dg

from sensors.uploads import new_run_sensor

defs = dg.Definitions(sensors=[new_run_sensor])
