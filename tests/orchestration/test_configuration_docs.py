"""Every environment variable is in the README's one Configuration table, and the deployment
files set only variables that something reads."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "metrics_pipeline" / "settings.py"
# Read by Dagster itself (the instance folder) and by boto3, not by Settings.
READ_BY_DAGSTER_OR_BOTO = {"DAGSTER_HOME", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def documented() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}


def read_by_settings() -> set[str]:
    source = SETTINGS.read_text()
    return set(re.findall(r"""(?:env|os\.environ)\.get\(\s*["']([A-Z][A-Z0-9_]+)["']""", source))


def read_by_deploy_configs() -> set[str]:
    """Names the instance and worker configs take with Dagster's ``env:`` source."""
    names = set()
    for config in ("dagster.yaml", "celery.yaml"):
        names |= set(
            re.findall(r"env:\s*([A-Z][A-Z0-9_]+)", (ROOT / "deploy" / config).read_text())
        )
    return names


def test_every_variable_settings_reads_is_in_the_readme_table():
    names = read_by_settings()
    assert {"METRICS_HOME", "METRICS_EXECUTOR", "METRICS_CELERY_BROKER"} <= names
    assert names - documented() == set()


def test_every_variable_the_deploy_configs_read_is_in_the_readme_table():
    assert read_by_deploy_configs() - documented() == set()


def test_the_compose_file_sets_only_documented_variables_that_are_read():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    ours = {name: s for name, s in compose["services"].items() if "build" in s}
    assert {"webserver", "daemon"} <= set(ours)
    readers = read_by_settings() | read_by_deploy_configs() | READ_BY_DAGSTER_OR_BOTO
    for name, service in ours.items():
        variables = set(service["environment"])
        assert variables - documented() == set(), name
        assert variables - readers == set(), name
    # The production setup the README describes: S3 (MinIO), the Postgres warehouse and instance.
    env = ours["daemon"]["environment"]
    assert env["METRICS_STORE"] == "s3"
    assert env["METRICS_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert env["METRICS_POSTGRES_URL"].startswith("postgresql://")
    assert {"minio", "postgres"} <= set(compose["services"])


def test_the_compose_file_holds_no_credentials_and_publishes_on_loopback_only():
    text = (ROOT / "docker-compose.yml").read_text()
    compose = yaml.safe_load(text)
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
        environment = service.get("environment", {})
        for variable, value in environment.items():
            if re.search(r"PASSWORD|SECRET|ACCESS_KEY|ROOT_USER", variable):
                # Credentials are interpolated from .env, which compose requires to be set.
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", str(value)), (name, variable)
    url = compose["x-pipeline"]["environment"]["METRICS_POSTGRES_URL"]
    assert "${POSTGRES_PASSWORD:?" in url
    # Every interpolated variable is in the committed example; .env itself is ignored.
    used = set(re.findall(r"\$\{([A-Z_]+):\?", text))
    example = (ROOT / ".env.example").read_text()
    assert used == set(re.findall(r"^([A-Z_]+)=", example, re.M))
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def test_the_image_installs_the_locked_dependencies():
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "uv sync --frozen" in dockerfile
    assert "deploy/dagster.yaml" in dockerfile


def test_the_instance_runs_one_run_per_partition_at_a_time():
    """deploy/dagster.yaml's run queue, as Dagster itself loads it: one run per run id."""
    import dagster as dg

    config = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())["run_coordinator"]
    config["config"]["max_concurrent_runs"] = 2  # an env: source elsewhere
    with dg.instance_for_test(overrides={"run_coordinator": config}) as instance:
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
    assert {
        "key": "dagster/partition",
        "value": {"applyLimitPerUniqueValue": True},
        "limit": 1,
    } in limits
