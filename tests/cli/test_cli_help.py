"""Every command and subcommand of metrics-pipeline explains itself with --help, and the exit
codes the module docstring documents hold for bad input."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from metrics_pipeline.cli import main as cli
from metrics_pipeline.cli.main import app
from metrics_pipeline.evaluation.demo_data import demo_runs

runner = CliRunner()
README = Path(__file__).resolve().parents[2] / "README.md"


def command_paths(command, path: tuple[str, ...] = ()):
    yield path, command
    # Groups (the app, `baseline`, ...) hold their subcommands by name.
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from command_paths(sub, (*path, name))


COMMANDS = list(command_paths(typer.main.get_command(app)))


def test_the_command_tree_has_the_documented_commands():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"compare", "ingest", "upload", "demo", "rebuild", "baseline diff"} <= names


@pytest.mark.parametrize(
    ("path", "command"), COMMANDS, ids=[" ".join(p) or "metrics-pipeline" for p, _ in COMMANDS]
)
def test_help_exits_0_and_describes_the_command(path, command):
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert command.help, f"{' '.join(path)} has no description"
    first_words = " ".join(command.help.split()[:4])
    assert first_words in " ".join(result.output.split())
    # Flags take no value: no "<bool>" after them (Typer's rich panels printed one).
    assert "<bool>" not in result.output


def test_the_exit_codes_are_documented():
    for code in ("0", "1", "2"):
        assert f"{code} " in cli.__doc__


def test_bad_input_and_bad_usage_exit_2(tmp_path, monkeypatch):
    monkeypatch.setenv("METRICS_HOME", str(tmp_path / "home"))
    run = ["--suite", "s", "--scenario", "x", "--env", "e"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert runner.invoke(app, ["upload", str(empty), *run]).exit_code == 2
    assert runner.invoke(app, ["ingest", str(tmp_path / "missing"), *run]).exit_code == 2
    assert runner.invoke(app, ["upload", str(empty)]).exit_code == 2  # --suite missing
    assert runner.invoke(app, ["no-such-command"]).exit_code == 2
    bad = tmp_path / "baselines.yaml"
    bad.write_text("baselines: [{suite: 1}]\n")
    assert runner.invoke(app, ["baseline", "show", "--file", str(bad)]).exit_code == 2


def test_the_demo_is_described_as_it_generates_its_runs():
    slowdown = inspect.signature(demo_runs).parameters["slowdown"].default
    said = f"{(slowdown - 1) * 100:.0f} % slower"
    readme = README.read_text().split("`make demo` generates", 1)[1].split("\n\n", 1)[0]
    assert said in " ".join(readme.split())
    assert said in " ".join(runner.invoke(app, ["demo", "--help"]).output.split())
    # "at 02:00 UTC up to the latest such time at least an hour ago (today's, from 03:00 UTC on)"
    assert "02:00 UTC" in readme and "yesterday" not in readme
    for now, last in (
        ("2031-03-15T12:00", "2031-03-15T02:00"),
        ("2031-03-15T02:30", "2031-03-14T02:00"),
    ):
        (run,) = demo_runs(1, duration_s=1.0, now=datetime.fromisoformat(now).replace(tzinfo=UTC))
        assert run.manifest.started_at == datetime.fromisoformat(last).replace(tzinfo=UTC)
