"""Files written whole or not at all, with the permissions a plain ``open(path, "w")`` gives."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _default_mode() -> int:
    # mkstemp creates files 0600; a report or an object others read should get 0666 minus the
    # umask, like any file the user creates. Reading the umask means setting it back at once.
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def replace_file(path: Path, write: Callable[[BinaryIO], None], prefix: str = ".") -> None:
    """Write ``path`` through ``write(stream)`` into a temporary file beside it, then rename it
    into place: a reader sees the old file or the new one, never half of one. On an error the
    temporary file is removed and ``path`` is untouched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{prefix}{path.name}-")
    try:
        os.fchmod(fd, _default_mode())
        with os.fdopen(fd, "wb") as stream:
            write(stream)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_bytes(path: Path, data: bytes, prefix: str = ".") -> None:
    """``replace_file`` with ``data`` as the new content."""
    replace_file(path, lambda stream: stream.write(data), prefix)


def replace_copy(path: Path, source: Path, prefix: str = ".") -> None:
    """``replace_file`` with a copy of ``source`` as the new content."""

    def copy(stream: BinaryIO) -> None:
        with source.open("rb") as original:
            shutil.copyfileobj(original, stream, 1024 * 1024)

    replace_file(path, copy, prefix)
