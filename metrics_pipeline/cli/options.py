"""Options the run commands share, and the run manifest they describe."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from metrics_pipeline.cli.output import bad_input, fail
from metrics_pipeline.common.clock import as_utc
from metrics_pipeline.formats import MANIFEST_NAME, earliest_timestamp

if TYPE_CHECKING:
    from metrics_pipeline.contracts.manifest import RunManifest

# Every option below replaces the field of a run.json in the folder; without the option, the
# run.json's field is kept (see ``manifest_fields``).
Suite = Annotated[
    str | None,
    typer.Option("--suite", help="Test suite, e.g. 'checkout' (required without a run.json)."),
]
Scenario = Annotated[
    str | None,
    typer.Option("--scenario", help="Scenario within the suite (required without a run.json)."),
]
Env = Annotated[
    str | None,
    typer.Option("--env", help="Environment, e.g. 'staging' (required without a run.json)."),
]
RunId = Annotated[
    str | None,
    typer.Option(
        "--run-id",
        help="Run id (default: the run.json's, else <suite>-<start, UTC>-<8 hex digits>).",
    ),
]
StartedAt = Annotated[
    datetime | None,
    typer.Option(
        "--started-at",
        help="When the run started (ISO 8601, UTC if no offset). Default: the run.json's, "
        "else the earliest timestamp in the files.",
    ),
]


def folder_manifest(paths: list[Path]) -> RunManifest | None:
    """The ``run.json`` of the folder among ``paths`` (the product's own manifest, validated),
    None when none has one; two folders with one each, or an invalid one, are bad input."""
    from metrics_pipeline.contracts.manifest import RunManifest

    found = list(
        dict.fromkeys(path / MANIFEST_NAME for path in paths if (path / MANIFEST_NAME).is_file())
    )
    if len(found) > 1:
        fail(f"several {MANIFEST_NAME} ({', '.join(map(str, found))}): one run at a time")
    if not found:
        return None
    with bad_input(OSError):  # ManifestError: the field and the rule
        return RunManifest.parse(found[0].read_bytes(), source=str(found[0]))


def manifest_fields(described: RunManifest | None, **options: object) -> dict[str, object]:
    """The run's manifest fields: those of the folder's run.json (``described``), with the
    ``options`` given (not None; named as the manifest names them) over them. Exit 2 when the
    suite, scenario or environment is in neither."""
    fields = (described.described() if described else {}) | {
        name: value for name, value in options.items() if value is not None
    }
    missing = [
        option
        for option, name in (
            ("--suite", "suite"),
            ("--scenario", "scenario"),
            ("--env", "environment"),
        )
        if name not in fields
    ]
    if missing:
        fail(f"missing option {', '.join(missing)} (or a {MANIFEST_NAME} in the folder naming it)")
    return fields


def manifest_from(
    suite: str | None,
    scenario: str | None,
    env: str | None,
    run_id: str | None,
    started_at: datetime | None,
    paths: list[Path],
    described: RunManifest | None = None,
) -> RunManifest:
    """The manifest of a run of ``paths``: the options given, over the fields of the folder's
    run.json (``described``), over the defaults (the start: the files' earliest timestamp, or
    now; the run id: ``default_run_id``)."""
    # pydantic's models take a tenth of a second to build: not for every command.
    from metrics_pipeline.contracts.manifest import RunManifest, default_run_id

    fields = manifest_fields(
        described,
        suite=suite,
        scenario=scenario,
        environment=env,
        run_id=run_id,
        started_at=started_at,
    )
    # Without a start the run starts at its earliest timestamp (a backfill of old files), or
    # now when the files carry none.
    started = fields.get("started_at") or earliest_timestamp(paths) or datetime.now(UTC)
    if "run_id" not in fields:
        # Two runs of a suite started in the same second differ in scenario, environment or
        # files; the same files uploaded again (started at their earliest timestamp) keep
        # their run id, so the upload replaces the run.
        distinct = [str(fields["scenario"]), str(fields["environment"])]
        distinct += [as_utc(started).isoformat()]
        distinct += sorted(f"{path.name} {path.stat().st_size}" for path in paths)
        fields["run_id"] = default_run_id(str(fields["suite"]), started, "\n".join(distinct))
    source = "from the options" if described is None else "of the folder and the options"
    with bad_input():  # ManifestError: one line naming the field and the rule
        return RunManifest.parse(fields | {"started_at": started}, source=source)
