"""Options the run commands share, and the run manifest they describe."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from metrics_pipeline.cli.output import bad_input
from metrics_pipeline.common.clock import as_utc
from metrics_pipeline.formats import earliest_timestamp

if TYPE_CHECKING:
    from metrics_pipeline.contracts.manifest import RunManifest

Suite = Annotated[str, typer.Option("--suite", help="Test suite, e.g. 'checkout'.")]
Scenario = Annotated[str, typer.Option("--scenario", help="Scenario within the suite.")]
Env = Annotated[str, typer.Option("--env", help="Environment, e.g. 'staging'.")]
RunId = Annotated[
    str | None,
    typer.Option(
        "--run-id",
        help="Run id (default: <suite>-<start, UTC>-<8 hex digits>; the same files give the "
        "same id).",
    ),
]
StartedAt = Annotated[
    datetime | None,
    typer.Option(
        "--started-at",
        help="When the run started (ISO 8601, UTC if no offset). Default: the earliest "
        "timestamp in the files.",
    ),
]


def manifest_from(
    suite: str,
    scenario: str,
    env: str,
    run_id: str | None,
    started_at: datetime | None,
    paths: list[Path],
) -> RunManifest:
    # pydantic's models take a tenth of a second to build: not for every command.
    from metrics_pipeline.contracts.manifest import RunManifest, default_run_id

    # Without --started-at the run starts at its earliest timestamp (a backfill of old files),
    # or now when the files carry none.
    started = started_at or earliest_timestamp(paths) or datetime.now(UTC)
    # Two runs of a suite started in the same second differ in scenario, environment or files;
    # the same files uploaded again (started at their earliest timestamp) keep their run id,
    # so the upload replaces the run.
    distinct = [scenario, env, as_utc(started).isoformat()]
    distinct += sorted(f"{path.name} {path.stat().st_size}" for path in paths)
    with bad_input(ValueError):
        return RunManifest(
            run_id=run_id or default_run_id(suite, started, "\n".join(distinct)),
            suite=suite,
            scenario=scenario,
            environment=env,
            started_at=started,
        )
