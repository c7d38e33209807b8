"""The date-dependent tests pass with the system clock a year ahead.

Demo runs, SLA windows, expected-run alerts, retention and the history jobs all count from
"now"; a test that pins a date instead of injecting the clock goes red the month its date
falls out of a window. These tests run again in a child process whose clock libfaketime moves
365 days ahead (every ``time()``, ``datetime.now()`` and the services they start; see
``tests/moved_clock.py``). ``make test-year-ahead`` runs the whole suite that way.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pytest
from moved_clock import environment

# One test of about three minutes: started first, the other worker's short files fill around it.
pytestmark = [pytest.mark.slow, pytest.mark.start_first]

ROOT = Path(__file__).resolve().parents[1]
# The tests whose data or windows count from today.
DATED = [
    "tests/alerts/test_alerting_jobs.py",
    "tests/stages/test_retention.py",
    "tests/assets/test_history_jobs.py",
    "tests/reports/test_weekly_report.py",
    "tests/analysis/test_sla.py",
]


def ahead(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        command,
        cwd=ROOT,
        env=environment(365) | {"PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=1200,
    )


def test_the_dated_tests_pass_a_year_from_now():
    if "FAKETIME" in os.environ:
        # The whole suite already runs a year ahead; a nested faketime would not add to it.
        pytest.skip("already under faketime: these tests run a year ahead with the suite")
    # A timed wait still works (the monotonic clock is not moved), and the wall clock is.
    clock = ahead(sys.executable, "-c", "import time; time.sleep(0.01); print(time.time())")
    assert clock.returncode == 0, clock.stderr
    moved = datetime.fromtimestamp(float(clock.stdout), UTC) - datetime.now(UTC)
    assert 364 <= moved.days <= 365

    command = (sys.executable, "-X", "faulthandler", "-m", "pytest", "-q", "-p", "no:cacheprovider")
    result = ahead(*command, *DATED)
    if result.returncode < 0:
        # Killed by a signal, not failed: once in about seven runs (2026-12-06) the child died
        # of SIGSEGV in the first test on the S3 warehouse, under the libfaketime preload only
        # (never in a plain run); where is not known yet, hence faulthandler's trace, kept as a
        # warning. A date bug fails a test (exit 1) and is not retried.
        warnings.warn(
            f"dated tests crashed ({result.returncode}): {result.stderr[-3000:]}", stacklevel=1
        )
        result = ahead(*command, *DATED)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " skipped" not in result.stdout
