"""The README's two commands on a stock distribution Python: Debian's /usr/bin/python3 refuses
`pip install` outside a venv (PEP 668), and no uv is on the PATH. `make install` brings uv into
a project-local venv, then `make demo` runs the whole pipeline."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import service_unavailable

ROOT = Path(__file__).resolve().parents[2]
STOCK_PYTHON = Path("/usr/bin/python3")

pytestmark = pytest.mark.slow


def tracked_copy(target: Path) -> Path:
    """The repository as a fresh clone has it (tracked files only, no venv, no caches)."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / name.decode()
        if source.is_file():
            (target / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name.decode())
    return target


def test_make_demo_on_the_distributions_python_without_uv(tmp_path):
    if not STOCK_PYTHON.exists() or shutil.which("make") is None:
        service_unavailable(f"{STOCK_PYTHON} or make is missing (a Debian/Ubuntu machine has both)")
    repo = tracked_copy(tmp_path / "clone")
    # Only the distribution's directories: /usr/bin/python3 is the python3, and no uv.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("VIRTUAL_ENV", "PYTHON", "UV", "METRICS_", "DAGSTER_"))
    } | {"PATH": "/usr/bin:/bin", "METRICS_NOW": "2031-03-15T12:00:00Z", "COLUMNS": "250"}
    assert shutil.which("uv", path=env["PATH"]) is None
    demo = subprocess.run(
        ["make", "demo"], cwd=repo, env=env, capture_output=True, text=True, timeout=900
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert (repo / ".uv-bootstrap" / "bin" / "uv").exists()
    python = subprocess.run(
        [repo / ".venv" / "bin" / "python", "-c", "import sys; print(sys.base_prefix)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert python.stdout.strip() == "/usr"  # the project's venv is of the stock Python
    assert "regressions in checkout-20310315-6: /api/orders" in demo.stdout
