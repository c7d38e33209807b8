"""The layers of ARCHITECTURE.md hold: import-linter's contracts pass on the tree and fail on a
copy with a violation, and the library's lower packages load without Dagster."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BIN / "lint-imports", "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": str(BIN), "PYTHONPATH": str(cwd)},
    )


def test_the_contracts_hold_on_the_tree():
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # The statistics reaching up into the analysis layer.
        (
            "metrics_pipeline/stats/compare.py",
            "import metrics_pipeline.analysis.verdicts",
            "Layers",
        ),
        # The library importing Dagster.
        ("metrics_pipeline/formats/base.py", "import dagster", "no Dagster"),
        # A library module reaching into the asset layer.
        ("metrics_pipeline/analysis/summary.py", "import assets", "no Dagster"),
    ],
)
def test_a_violation_fails_the_contracts(tmp_path, module, line, contract):
    for name in ("metrics_pipeline", "assets", "sensors", "schedules"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # injected by the test\n")
    done = lint_imports(tmp_path)
    assert done.returncode != 0, done.stdout
    broken = [ln for ln in done.stdout.splitlines() if ln.endswith("BROKEN")]
    assert any(contract in ln for ln in broken), done.stdout


def test_every_library_package_is_under_a_contract():
    """A new package of metrics_pipeline must be placed in the layers (or it escapes them)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c for c in config["contracts"] if c["type"] == "layers"]
    placed = {name.strip() for row in layers["layers"] for name in row.split("|")}
    packages = {
        f"metrics_pipeline.{path.stem if path.is_file() else path.name}"
        for path in (ROOT / "metrics_pipeline").iterdir()
        if (path.is_dir() and (path / "__init__.py").exists())
        or (path.suffix == ".py" and path.name != "__init__.py")
    }
    assert packages - {"metrics_pipeline.shipped"} == placed


def test_the_lower_packages_load_without_dagster():
    code = "import metrics_pipeline.formats, metrics_pipeline.stats, metrics_pipeline.ingest.files"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    loaded = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()]
    assert "metrics_pipeline.ingest.files" in loaded
    assert not [name for name in loaded if name.split(".")[0].startswith("dagster")]
