"""`pip install .` outside the checkout: the wheel carries the SQL models and the default
configs, so the demo runs its whole pipeline (CI stage and nightly marts) from any folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).parent / "uv"

pytestmark = pytest.mark.slow


def run(*command, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, timeout=900, **kwargs
    )
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done


def test_the_installed_wheel_runs_the_demo_outside_the_checkout(tmp_path):
    # The locked dependencies (from uv's cache), then the project itself built as a wheel.
    requirements = tmp_path / "requirements.txt"
    run(UV, "export", "--frozen", "--no-dev", "--no-emit-project", "-o", requirements, cwd=ROOT)
    venv = tmp_path / "venv"
    run(UV, "venv", "--quiet", "--python", sys.executable, venv)
    python = venv / "bin" / "python"
    run(UV, "pip", "install", "--quiet", "--python", python, "-r", requirements)
    run(UV, "pip", "install", "--quiet", "--python", python, "--no-deps", ROOT)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("METRICS_", "VIRTUAL_ENV", "PYTHONPATH"))
    } | {
        "METRICS_HOME": str(tmp_path / "home"),
        "METRICS_NOW": "2031-03-15T12:00:00Z",
        "COLUMNS": "250",
    }
    shipped = run(
        python, "-c", "import metrics_pipeline.storage.sql_models as m; print(m.MODELS_DIR)",
        cwd=elsewhere, env=env,
    )  # fmt: skip
    assert str(ROOT) not in shipped.stdout and "site-packages" in shipped.stdout
    done = run(venv / "bin" / "metrics-pipeline", "demo", "--runs", "3", cwd=elsewhere, env=env)
    assert "regressions in checkout-20310315-3: /api/orders" in done.stdout
    assert "nightly: ok" in done.stdout
