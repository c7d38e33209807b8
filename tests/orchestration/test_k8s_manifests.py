"""The Kubernetes deployment (deploy/k8s): values for the official Dagster Helm chart and the
Secrets they name. No cluster and no Helm here: the files are read as YAML and compared with
the chart's own values.yaml (a copy in tests/fixtures, its first line says which version), with
deploy/dagster.yaml (the same run queue) and with the Settings docstring (the same variables)."""

from __future__ import annotations

import ast
import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
VALUES = K8S / "values.yaml"
SECRETS = K8S / "secrets.example.yaml"
CHART_VALUES = ROOT / "tests" / "fixtures" / "dagster-helm-values.yaml"
INSTANCE = ROOT / "deploy" / "dagster.yaml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
SETTINGS = ROOT / "metrics_pipeline" / "settings.py"
DEFINITIONS = ROOT / "metrics_pipeline" / "orchestration" / "definitions.py"

GRPC_ARGS = ["-m", "metrics_pipeline.orchestration.definitions", "-a", "defs"]
# Given only through a Secret, never as a value in values.yaml.
SECRET_VARIABLES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "METRICS_POSTGRES_URL"}
# Environment variable names that hold credentials (or a URL that may carry one).
SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|ACCESS_KEY|POSTGRES_URL|DSN")
# A URL with a password in it: scheme://user:password@host.
URL_WITH_PASSWORD = re.compile(r"://[^/\s:@]+:[^/\s@]+@")
PLACEHOLDER = "change-me"
# The key the chart reads from global.postgresqlSecretName (DAGSTER_PG_PASSWORD in every pod).
CHART_PASSWORD_KEY = "postgresql-password"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def unknown_keys(ours: Any, chart: Any, path: str = "") -> list[str]:
    """The paths in ``ours`` that the chart's values.yaml (``chart``) does not have.

    Mappings are compared key by key, recursively, except where the chart's mapping is empty
    (``resources: {}``, ``labels: {}``, ``runK8sConfig: {}``): those are free-form Kubernetes
    objects or raw config whose keys the chart cannot list, so anything goes below them.

    Lists: where the chart's list has mapping items (``dagster-user-deployments.deployments``,
    the Celery ``workerQueues``), every item of ours is compared with the chart's first item, the
    example deployment that shows every key a deployment takes. Where the chart's list is empty
    (``env``, ``envSecrets``, ``volumes``, ``tagConcurrencyLimits``) the items are Kubernetes
    objects or Dagster config rather than chart keys and are not compared here (the run queue's
    limits have their own test below).

    A leaf of the chart (``~``, a string, a number) takes any value; a shape the chart gives as a
    non-empty mapping or list must stay one.
    """
    if isinstance(chart, dict) and chart:
        if not isinstance(ours, dict):
            return [f"{path or '<root>'}: the chart has a mapping here"]
        found = []
        for key, value in ours.items():
            where = join(path, key)
            if key not in chart:
                found.append(where)
            else:
                found += unknown_keys(value, chart[key], where)
        return found
    if isinstance(chart, list) and chart and isinstance(chart[0], dict):
        if not isinstance(ours, list):
            return [f"{path}: the chart has a list here"]
        found = []
        for index, item in enumerate(ours):
            found += unknown_keys(item, chart[0], f"{path}[{index}]")
        return found
    return []


def join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def nodes(tree: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (path, node) of a parsed YAML tree, the root first."""
    yield path, tree
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from nodes(value, join(path, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from nodes(value, f"{path}[{index}]")


def literal_secrets(values: Any) -> list[str]:
    """Where ``values`` holds a secret itself instead of naming a Secret that holds it."""
    found = []
    for path, node in nodes(values):
        if isinstance(node, str) and URL_WITH_PASSWORD.search(node):
            found.append(f"{path}: a URL with a password")
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            # A password given as text (a flag such as generatePostgresqlPasswordSecret is not).
            literal = not isinstance(value, bool | dict | list) and value not in (None, "")
            if "password" in str(key).lower() and literal:
                found.append(f"{join(path, key)}: a password (use a Secret)")
        # An environment variable as Kubernetes writes it: {name, value} or {name, valueFrom}.
        name = node.get("name")
        if isinstance(name, str) and SECRET_NAME.search(name):
            if "value" in node:
                found.append(f"{path}: {name} has a literal value")
            elif "valueFrom" in node and set(node["valueFrom"] or {}) != {"secretKeyRef"}:
                found.append(f"{path}: {name} does not come from a secretKeyRef")
        # `env` written as a mapping (the chart turns it into a ConfigMap).
        if isinstance(node.get("env"), dict):
            for name in node["env"]:
                if SECRET_NAME.search(str(name)):
                    found.append(f"{join(path, 'env')}.{name}: a secret in a ConfigMap")
    return found


def secret_references(values: Any) -> dict[str, set[str]]:
    """The Secrets ``values`` names, each with the keys it must hold (empty: the whole Secret
    becomes variables)."""
    referenced: dict[str, set[str]] = {}
    for _, node in nodes(values):
        if not isinstance(node, dict):
            continue
        for source in node.get("envSecrets") or []:
            referenced.setdefault(source["name"], set())
        reference = (node.get("valueFrom") or {}).get("secretKeyRef")
        if reference:
            referenced.setdefault(reference["name"], set()).add(reference["key"])
    global_name = values["global"]["postgresqlSecretName"]
    referenced.setdefault(global_name, set()).add(CHART_PASSWORD_KEY)
    return referenced


def example_secrets() -> dict[str, dict[str, str]]:
    docs = [doc for doc in yaml.safe_load_all(SECRETS.read_text()) if doc]
    assert all(doc["kind"] == "Secret" for doc in docs)
    return {doc["metadata"]["name"]: doc.get("stringData", {}) for doc in docs}


def the_deployment(values: Any) -> dict:
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    return deployment


def documented_settings() -> set[str]:
    """The METRICS_* variables the Settings docstring lists (one ``NAME`` per entry)."""
    module = ast.parse(SETTINGS.read_text())
    (settings,) = [n for n in module.body if isinstance(n, ast.ClassDef) and n.name == "Settings"]
    doc = ast.get_docstring(settings) or ""
    return set(re.findall(r"^\s*``(METRICS_[A-Z0-9_]+)``", doc, flags=re.MULTILINE))


@pytest.fixture(scope="module")
def values() -> Any:
    return load(VALUES)


@pytest.fixture(scope="module")
def chart() -> Any:
    return load(CHART_VALUES)


def test_every_yaml_file_parses():
    files = sorted([*K8S.glob("*.yaml"), *K8S.glob("*.yml")])
    assert {VALUES, SECRETS} <= set(files)
    for path in files:
        docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
        assert docs, path
        assert all(isinstance(doc, dict) for doc in docs), path
    assert (K8S / "README.md").is_file()


def test_the_chart_copy_names_its_version_and_source(chart):
    first = CHART_VALUES.read_text().splitlines()[0]
    assert first.startswith("#")
    assert "helm/dagster/values.yaml" in first
    assert re.search(r"\b[0-9a-f]{40}\b", first), "the commit the copy was taken at"
    # It is the chart's values file: the sections these values set are there.
    assert {"dagster-user-deployments", "runLauncher", "dagsterDaemon", "postgresql"} <= set(chart)


def test_values_use_only_keys_the_chart_has(values, chart):
    assert unknown_keys(values, chart) == []


def test_the_key_check_reports_an_unknown_key(values, chart):
    # The check above must be able to fail: a typo at each level is reported by its path.
    broken = copy.deepcopy(values)
    broken["runLaunchers"] = {}
    queue = broken["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    queue["maxConcurentRuns"] = 2
    the_deployment(broken)["dagsterApiGrpcArg"] = GRPC_ARGS
    broken["postgresql"]["service"]["prot"] = 5432
    assert unknown_keys(broken, chart) == [
        "dagster-user-deployments.deployments[0].dagsterApiGrpcArg",
        "postgresql.service.prot",
        "dagsterDaemon.runCoordinator.config.queuedRunCoordinator.maxConcurentRuns",
        "runLaunchers",
    ]
    # A key below a free-form object (resources) is not the chart's to know.
    assert unknown_keys({"dagsterDaemon": {"resources": {"limits": {"cpu": 1}}}}, chart) == []


def test_the_code_server_runs_the_projects_definitions(values):
    deployment = the_deployment(values)
    assert deployment["dagsterApiGrpcArgs"] == GRPC_ARGS
    assert deployment["port"] == 3030
    assert deployment["image"]["repository"]
    # The module defines `defs` at its top level, as `-a defs` expects.
    module = ast.parse(DEFINITIONS.read_text())
    assigned = {
        target.id
        for node in module.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    assert "defs" in assigned
    # The chart sets the container's args to `dagster api grpc ...`: with no ENTRYPOINT in the
    # image they run as they are, with the image's PATH (its virtualenv) and working folder.
    instructions = [
        line.split()[0]
        for line in DOCKERFILE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert "ENTRYPOINT" not in instructions
    assert "/app/.venv/bin" in DOCKERFILE.read_text()
    # Run pods get the code server's environment, secrets and volumes.
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True


def test_each_run_gets_its_own_pod_behind_the_instances_queue(values):
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] is True
    assert coordinator["type"] == "QueuedRunCoordinator"
    queue = coordinator["config"]["queuedRunCoordinator"]
    instance = load(INSTANCE)["run_coordinator"]
    assert instance["class"] == "QueuedRunCoordinator"
    # The chart passes these through unchanged: the same limits as deploy/dagster.yaml.
    assert queue["tagConcurrencyLimits"] == instance["config"]["tag_concurrency_limits"]
    assert queue["tagConcurrencyLimits"] == [
        {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    ]
    assert queue["dequeueIntervalSeconds"] == instance["config"]["dequeue_interval_seconds"]
    # A number: the chart's template would print an {env: ...} mapping as a Go map.
    limit = queue["maxConcurrentRuns"]
    assert isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1
    # Run limits in one place only: the chart refuses both at once.
    assert values["concurrency"]["enabled"] is False


def test_every_pod_that_loads_the_code_gets_the_pipelines_environment(values):
    deployment = the_deployment(values)
    env = {item["name"]: item for item in deployment["env"]}
    assert env["METRICS_STORE"]["value"] == "s3"
    bucket = env["METRICS_BUCKET"]["value"]
    assert bucket
    assert env["METRICS_S3_ENDPOINT_URL"]["value"].startswith(("http://", "https://"))
    # The warehouse in the object store, shared by the code server and every run pod.
    assert env["METRICS_WAREHOUSE"]["value"].startswith(f"s3://{bucket}/")
    # METRICS_HOME is pod-local scratch on a volume of the pod.
    home = env["METRICS_HOME"]["value"]
    assert home.startswith("/")
    mounts = {mount["name"]: mount["mountPath"] for mount in deployment["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in deployment["volumes"]}
    (scratch,) = [name for name, path in mounts.items() if path == home]
    assert "emptyDir" in volumes[scratch]
    # The credentials and the mirror's URL come from a Secret given to the code server and to
    # every run pod, never from a value.
    assert SECRET_VARIABLES.isdisjoint(env)
    secrets = example_secrets()
    given = {source["name"] for source in deployment["envSecrets"]}
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert given <= {source["name"] for source in launcher["envSecrets"]}
    assert set().union(*(secrets[name] for name in given)) >= SECRET_VARIABLES


def test_values_hold_no_literal_secret(values):
    assert literal_secrets(values) == []
    # The chart must not generate the instance's password Secret from a value in this file.
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["postgresql"]["enabled"] is False


def test_the_secret_check_reports_a_literal(values):
    broken = copy.deepcopy(values)
    env = the_deployment(broken)["env"]
    env.append({"name": "AWS_SECRET_ACCESS_KEY", "value": "abc"})
    env.append({"name": "METRICS_POSTGRES_URL", "valueFrom": {"configMapKeyRef": {}}})
    env.append({"name": "METRICS_EXTRA", "value": "postgresql://u:p@db/x"})
    broken["postgresql"]["postgresqlPassword"] = "test"
    found = literal_secrets(broken)
    assert len(found) == 4, found
    for expected in (
        "AWS_SECRET_ACCESS_KEY has a literal value",
        "METRICS_POSTGRES_URL does not come from a secretKeyRef",
        ".value: a URL with a password",
        "postgresql.postgresqlPassword: a password",
    ):
        assert any(expected in item for item in found), expected


def test_every_secret_named_is_in_the_example_with_placeholders_only(values):
    secrets = example_secrets()
    for name, keys in secret_references(values).items():
        assert name in secrets, name
        assert keys <= set(secrets[name]), name
    assert secret_references(values)[values["global"]["postgresqlSecretName"]] == {
        CHART_PASSWORD_KEY
    }
    for doc in yaml.safe_load_all(SECRETS.read_text()):
        # stringData only: `data` is base64, which would hide a real value from this check.
        assert "data" not in doc
        for key, value in doc["stringData"].items():
            assert PLACEHOLDER in value, f"{doc['metadata']['name']}.{key}"


def test_every_metrics_variable_named_is_one_settings_documents():
    documented = documented_settings()
    assert {"METRICS_HOME", "METRICS_WAREHOUSE", "METRICS_POSTGRES_URL"} <= documented
    for path in (VALUES, SECRETS):
        named = set(re.findall(r"\bMETRICS_[A-Z0-9_]+\b", path.read_text()))
        assert named, path
        assert named - documented == set(), path
