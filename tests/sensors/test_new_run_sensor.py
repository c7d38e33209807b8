"""new_run_sensor through build_sensor_context, with its cursor, against a local store."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from metrics_pipeline.contracts.manifest import RunManifest
from metrics_pipeline.ingest.discovery import upload_version
from metrics_pipeline.orchestration.definitions import build_definitions

MANIFEST = RunManifest(
    run_id="r-1",
    suite="checkout",
    scenario="browse",
    environment="staging",
    started_at="2026-11-01T02:00:00Z",
)
LINE = b'{"ts": "2026-11-01T02:00:01Z", "endpoint": "/a", "latency_ms": 3.5}\n'


@pytest.fixture
def tick(settings):
    """Evaluate the sensor once with a cursor; returns the SensorResult-like tick data."""
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def("new_run_sensor")

    def run(instance, cursor=None):
        with dg.build_sensor_context(
            instance_ref=instance.get_ref(),
            cursor=cursor,
            definitions=defs,
            resources=defs.resources,
        ) as context:
            return sensor.evaluate_tick(context)

    return run


def test_incomplete_upload_is_ignored_until_its_manifest_arrives(store, tick):
    store.put_bytes("raw/checkout/r-1/requests.ndjson", LINE)
    with dg.instance_for_test() as instance:
        first = tick(instance)
        assert first.run_requests == [] and first.skip_message == "no new runs"

        manifest = store.put_bytes("raw/checkout/r-1/run.json", MANIFEST.model_dump_json().encode())
        second = tick(instance, first.cursor)
        (request,) = second.run_requests
        version = upload_version(store.list("raw/checkout/r-1/"))
        assert request.partition_key == "r-1"
        assert request.run_key == f"r-1:{version}"
        assert request.tags["upload_version"] == version
        assert request.tags["suite"] == "checkout"
        (partitions,) = second.dynamic_partitions_requests
        assert list(partitions.partition_keys) == ["r-1"]
        assert manifest is None

        third = tick(instance, second.cursor)
        assert third.run_requests == []
        assert "raw/checkout/r-1/run.json" in json.loads(third.cursor)["recent"]


def test_reupload_with_changed_manifest_is_requested_again(store, tick):
    store.put_bytes("raw/checkout/r-1/requests.ndjson", LINE)
    store.put_bytes("raw/checkout/r-1/run.json", MANIFEST.model_dump_json().encode())
    with dg.instance_for_test() as instance:
        first = tick(instance)
        changed = MANIFEST.model_copy(update={"tags": {"retry": "1"}})
        store.put_bytes("raw/checkout/r-1/run.json", changed.model_dump_json().encode())
        second = tick(instance, first.cursor)
    (old,), (new,) = first.run_requests, second.run_requests
    assert old.partition_key == new.partition_key == "r-1"
    assert old.run_key != new.run_key


def test_a_corrected_file_with_the_same_manifest_is_requested_again(store, tick):
    # The sensor used to key on run.json's ETag: a fixed result file under an unchanged
    # manifest was never ingested.
    store.put_bytes("raw/checkout/r-1/requests.ndjson", LINE)
    store.put_bytes("raw/checkout/r-1/run.json", MANIFEST.model_dump_json().encode())
    with dg.instance_for_test() as instance:
        first = tick(instance)
        store.put_bytes("raw/checkout/r-1/requests.ndjson", LINE.replace(b"3.5", b"4.5"))
        second = tick(instance, first.cursor)
        third = tick(instance, second.cursor)
    (old,), (new,) = first.run_requests, second.run_requests
    assert old.partition_key == new.partition_key == "r-1"
    assert old.run_key != new.run_key
    assert third.run_requests == []


def test_several_runs_come_oldest_first_and_bad_manifests_are_rejected(store, tick):
    for day in (3, 1, 2):
        manifest = MANIFEST.model_copy(
            update={"run_id": f"r-{day}", "started_at": MANIFEST.started_at.replace(day=day)}
        )
        store.put_bytes(f"raw/checkout/r-{day}/run.json", manifest.model_dump_json().encode())
    store.put_bytes("raw/checkout/bad/run.json", b"{not json")
    store.put_bytes(
        "raw/other/r-9/run.json",
        MANIFEST.model_copy(update={"run_id": "r-9"}).model_dump_json().encode(),
    )  # suite in the manifest differs from its folder
    with dg.instance_for_test() as instance:
        result = tick(instance)
    assert [r.partition_key for r in result.run_requests] == ["r-1", "r-2", "r-3"]


def test_nothing_uploaded_skips(tick):
    with dg.instance_for_test() as instance:
        result = tick(instance)
    assert result.run_requests == [] and result.skip_message == "no new runs"
