"""Progress bars for the commands that loop over measurable work (files, runs, steps).

They draw on stderr, so a command's stdout (tables, JSON) stays clean for pipes; without a
terminal (CI logs) rich leaves out the animation.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)


def progress_bar(console: Console) -> Progress:
    """A bar with the step's description, done / total and the elapsed time."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        # Gone when done: the command's own summary line says what happened.
        transient=True,
    )
