r"""Run a command with the system clock moved ahead: ``python tests/moved_clock.py DAYS CMD...``.

libfaketime, preloaded into the command and every process it starts (servers included), adds
``DAYS`` days to the wall clock (``time()``, ``datetime.now()``, file times it reports). The
monotonic clock stays real: timed waits (``Event.wait``, ``time.sleep``, a lock's timeout) compute
their deadlines from it, and a faked one would put them a year away. The library comes from
PyPI's ``libfaketime`` (a dev dependency): Debian 12's 0.9.10 build shifts an absolute monotonic
sleep even when told not to fake that clock, so every ``time.sleep`` fails with EINVAL there.

``make test-year-ahead`` runs the whole suite this way; ``tests/test_clock_ahead.py`` runs the
date-dependent tests this way in every CI run.
"""

from __future__ import annotations

import os
import sys


def environment(days: int, base: dict[str, str] | None = None) -> dict[str, str]:
    r"""The environment that runs a process ``days`` days ahead of the system clock."""
    import libfaketime

    base = dict(os.environ if base is None else base)
    _, additions = libfaketime.get_reload_information()
    # get_reload_information() replaces LD_LIBRARY_PATH and LD_PRELOAD; keep what was there.
    for name in ("LD_LIBRARY_PATH", "LD_PRELOAD"):
        if base.get(name) and base[name] not in additions[name]:
            additions[name] = f"{additions[name]}:{base[name]}"
    return base | additions | {"FAKETIME": f"+{days}d"}


def without(env: dict[str, str]) -> dict[str, str]:
    r"""``env`` without libfaketime, for a server that cannot start under it: redis-server's
    jemalloc reads the clock while libfaketime initialises and the process exits. (A broker's
    clock enters no result.)"""
    env = dict(env)
    preload = [lib for lib in env.get("LD_PRELOAD", "").split(":") if "faketime" not in lib]
    env["LD_PRELOAD"] = ":".join(preload)
    env.pop("FAKETIME", None)
    return env


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: python tests/moved_clock.py DAYS COMMAND [ARG...]")
    days, command = int(sys.argv[1]), sys.argv[2:]
    os.execvpe(command[0], command, environment(days))
