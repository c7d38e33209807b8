"""The one base of the pipeline's own errors, and pydantic's errors as one readable line.

Every error we raise on purpose derives from :class:`MetricsPipelineError` (and from the
builtin it refines, e.g. ``ValueError``), so a caller (the CLI, an asset) can tell "bad input
or configuration, explained in the message" from a bug.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only annotated: pydantic is not imported for every command
    from pydantic import ValidationError


class MetricsPipelineError(Exception):
    """An error of ours whose message says what is wrong and where (file, field, run)."""


def describe(exc: ValidationError) -> str:
    """``kpis.latency_p95.target: Input should be a valid number`` for every problem."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(document)'}: {err['msg']}"
        for err in exc.errors()
    )
