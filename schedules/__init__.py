"""Schedules: the nightly and weekly stages (history analyses, forecasts, retention).

The CI stage needs none: it is driven by new_run_sensor. The nightly and weekly jobs join this
package with the analyses they run.
"""

import dagster as dg

defs = dg.Definitions()
