"""Where the commands write, and the one way a command reports bad input (exit 2)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from metrics_pipeline.common.errors import MetricsPipelineError

# Wide enough for the verdict table when output is piped (CI logs), the terminal width otherwise.
console = Console(width=shutil.get_terminal_size((150, 40)).columns)
err = Console(stderr=True, soft_wrap=True)

BAD_INPUT = 2


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit 2 (bad usage or input)."""
    err.print(f"[red]error:[/] {escape(message)}")
    raise typer.Exit(BAD_INPUT)


@contextmanager
def bad_input(*also: type[Exception]) -> Iterator[None]:
    """Our own errors (``MetricsPipelineError``: a bad manifest, config or baseline file, an
    unknown run or alert), a missing file, and the exception types in ``also`` become
    ``fail(message)``: the message already says what is wrong and where."""
    try:
        yield
    except (MetricsPipelineError, FileNotFoundError, *also) as exc:
        fail(str(exc))
