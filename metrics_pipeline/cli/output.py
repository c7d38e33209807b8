"""Where the commands write, and the one way a command reports bad input (exit 2)."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from metrics_pipeline.common.errors import MetricsPipelineError
from metrics_pipeline.common.text import one_line

# Wide enough for the verdict table when output is piped (CI logs), the terminal width otherwise.
console = Console(width=shutil.get_terminal_size((150, 40)).columns)
err = Console(stderr=True, soft_wrap=True)

BAD_INPUT = 2


def fail(message: str, *more: str) -> NoReturn:
    """Print ``error: message`` on stderr, one such line per further message, and exit 2 (bad
    usage or input)."""
    for line in (message, *more):
        err.print(f"[red]error:[/] {escape(line)}")
    raise typer.Exit(BAD_INPUT)


def print_json(value: object) -> None:
    """Print ``value`` as JSON on stdout, indented; a float that is not finite (a statistic
    that could not be computed, an unbounded interval) is null: NaN and Infinity are not
    JSON, and strict parsers (``JSON.parse``, ``jq``) refuse the whole document. Other
    values JSON lacks (dates) are their text."""

    def finite(item: object) -> object:
        if isinstance(item, float):
            return item if math.isfinite(item) else None
        if isinstance(item, dict):
            return {key: finite(v) for key, v in item.items()}
        if isinstance(item, list | tuple):
            return [finite(v) for v in item]
        return item

    print(json.dumps(finite(value), indent=2, default=str, allow_nan=False))


def fail_on_unreadable(problems: list[str]) -> None:
    """Exit 2 with one ``error:`` line per input file that could not be read (damaged,
    truncated, over a read limit): a verdict on part of a run's data is no verdict, and a CI
    gate must not read it as a regression (1) or a pass (0)."""
    if problems:
        fail(*[f"unreadable input: {one_line(problem)}" for problem in problems])


@contextmanager
def bad_input(*also: type[Exception]) -> Iterator[None]:
    """Our own errors (``MetricsPipelineError``: a bad manifest, config or baseline file, an
    unknown run or alert), a missing file, and the exception types in ``also`` become
    ``fail(message)``: the message already says what is wrong and where."""
    try:
        yield
    except (MetricsPipelineError, FileNotFoundError, *also) as exc:
        fail(str(exc))


class _Commands(typer.Typer):
    """Typer, but our own errors that no command turned into a message (a configuration
    variable naming a missing file, read wherever the settings are) end the command like
    :func:`fail` does, without a traceback."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except MetricsPipelineError as exc:
            err.print(f"[red]error:[/] {escape(one_line(str(exc)))}")
            raise SystemExit(BAD_INPUT) from None


def command_group(help: str, **settings) -> typer.Typer:
    """A group of commands, with plain (click) help: Typer's rich panels print ``<bool>``
    after every flag and a type column that narrow terminals wrap; the plain layout shows
    ``--json`` bare and ``--threshold <float>``."""
    return _Commands(help=help, no_args_is_help=True, rich_markup_mode=None, **settings)
