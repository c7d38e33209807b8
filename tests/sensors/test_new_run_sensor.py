"""new_run_sensor through build_sensor_context, with its cursor, against a local store."""

from __future__ import annotations

import dataclasses
import json

import dagster as dg
import pytest
from dagster._core.execution.build_resources import wrap_resources_for_execution

from metrics_pipeline.contracts.manifest import RunManifest
from metrics_pipeline.ingest import discovery
from metrics_pipeline.ingest.discovery import upload_version
from metrics_pipeline.orchestration.definitions import build_definitions
from metrics_pipeline.storage.objects import NEW_RUNS_PREFIX
from metrics_pipeline.upload.uploader import upload_run
from sensors import uploads

MANIFEST = RunManifest(
    run_id="r-1",
    suite="checkout",
    scenario="browse",
    environment="staging",
    started_at="2026-11-01T02:00:00Z",
)
LINE = b'{"ts": "2026-11-01T02:00:01Z", "endpoint": "/a", "latency_ms": 3.5}\n'


@pytest.fixture
def tick(settings, monkeypatch):
    """Evaluate the sensor once with a cursor; returns the SensorResult-like tick data.

    These tests put objects by hand, without the uploader's marker: every tick lists all of
    raw/ (the tests of the markers below use ``marker_tick``)."""
    monkeypatch.setattr(discovery, "FULL_SCAN_S", 0.0)
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


def test_several_runs_come_oldest_first_and_bad_manifests_are_rejected(store, warehouse, tick):
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
        # Whoever uploaded them is told why, once per run.json, until it is accepted.
        alerts = warehouse.read("alerts").sort("endpoint")
        assert alerts["kind"].to_list() == ["upload_rejected"] * 2
        assert alerts["severity"].to_list() == ["warning"] * 2
        assert alerts["endpoint"].to_list() == [
            "raw/checkout/bad/run.json",
            "raw/other/r-9/run.json",
        ]
        assert "must match its folder" in alerts["summary"][1]
        store.put_bytes(
            "raw/checkout/bad/run.json",
            MANIFEST.model_copy(update={"run_id": "bad"}).model_dump_json().encode(),
        )
        again = tick(instance, result.cursor)
        assert [r.partition_key for r in again.run_requests] == ["bad"]
        statuses = dict(warehouse.read("alerts").select("endpoint", "status").iter_rows())
        assert statuses == {
            "raw/checkout/bad/run.json": "resolved",
            "raw/other/r-9/run.json": "open",
        }
        # A refused upload deleted from the bucket needs no fixing: the next full listing
        # resolves its alert (it stayed open for good).
        store.delete("raw/other/r-9/run.json")
        tick(instance, again.cursor)
    statuses = dict(warehouse.read("alerts").select("endpoint", "status").iter_rows())
    assert set(statuses.values()) == {"resolved"}


def test_a_rebuild_replaying_the_bucket_raises_no_upload_alert(settings, store, warehouse):
    # A rebuild evaluates the sensor over the whole bucket with notify off: the refused
    # uploads were told when they came (raised again, a resolved one would reopen).
    store.put_bytes("raw/checkout/bad/run.json", b"{not json")
    defs = build_definitions(settings, notify=False)
    with (
        dg.instance_for_test() as instance,
        dg.build_sensor_context(
            instance_ref=instance.get_ref(), definitions=defs, resources=defs.resources
        ) as context,
    ):
        defs.resolve_sensor_def("new_run_sensor").evaluate_tick(context)
    assert warehouse.read("alerts").height == 0


def test_a_refused_upload_stops_no_other_when_its_alert_cannot_be_recorded(
    settings, store, tmp_path, monkeypatch
):
    # An alerting config that does not parse: the refused run.json's alert cannot be recorded,
    # and the tick still requests the valid run (it failed, kept its cursor, and the same
    # refused upload stopped every other one from being ingested).
    bad = tmp_path / "alerting.yaml"
    bad.write_text("channels: [\n")
    monkeypatch.setattr(discovery, "FULL_SCAN_S", 0.0)
    defs = build_definitions(dataclasses.replace(settings, alerting_config=bad))
    store.put_bytes("raw/checkout/r-1/run.json", MANIFEST.model_dump_json().encode())
    store.put_bytes("raw/checkout/bad/run.json", b"{not json")
    with (
        dg.instance_for_test() as instance,
        dg.build_sensor_context(
            instance_ref=instance.get_ref(), definitions=defs, resources=defs.resources
        ) as context,
    ):
        result = defs.resolve_sensor_def("new_run_sensor").evaluate_tick(context)
    assert [r.partition_key for r in result.run_requests] == ["r-1"]


def test_nothing_uploaded_skips(tick):
    with dg.instance_for_test() as instance:
        result = tick(instance)
    assert result.run_requests == [] and result.skip_message == "no new runs"


@pytest.fixture
def marker_tick(settings):
    """Evaluate the sensor as the daemon does between two full listings: the cursor's last
    full listing was just now, so only the upload markers are listed."""
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def("new_run_sensor")

    def run(instance, cursor=None, last_tick=None):
        # build_sensor_context takes no last tick; the daemon passes its previous tick's time.
        with dg.SensorEvaluationContext(
            instance_ref=instance.get_ref(),
            last_tick_completion_time=last_tick,
            cursor=cursor,
            repository_def=defs.get_repository_def(),
            resources=wrap_resources_for_execution(defs.resources),
        ) as context:
            return sensor.evaluate_tick(context)

    return run


def test_an_announced_upload_is_found_without_listing_raw(store, marker_tick, tmp_path):
    with dg.instance_for_test() as instance:
        first = marker_tick(instance)  # no cursor: a full listing, nothing there
        assert json.loads(first.cursor)["full_at"] is not None

        # By hand, no marker: not seen until the next full listing.
        store.put_bytes("raw/checkout/r-0/requests.ndjson", LINE)
        store.put_bytes(
            "raw/checkout/r-0/run.json",
            MANIFEST.model_copy(update={"run_id": "r-0"}).model_dump_json().encode(),
        )
        assert marker_tick(instance, first.cursor).run_requests == []

        # The uploader writes the marker last: found by listing the markers alone.
        data = tmp_path / "requests.ndjson"
        data.write_bytes(LINE)
        upload_run(store, [data], MANIFEST)
        (marker,) = [o.key for o in store.list(NEW_RUNS_PREFIX)]
        second = marker_tick(instance, first.cursor)
        assert [r.partition_key for r in second.run_requests] == ["r-1"]
        assert marker in json.loads(second.cursor)["seen"]
        assert marker_tick(instance, second.cursor).run_requests == []

        # A re-upload: a new marker, a new version (a local file's ETag is its mtime).
        upload_run(store, [data], MANIFEST)
        third = marker_tick(instance, second.cursor)
        (again,) = third.run_requests
        assert again.partition_key == "r-1" and again.run_key != second.run_requests[0].run_key

        # A full listing is due FULL_SCAN_S after the last: the hand-made run is found.
        late = marker_tick(instance, discovery.full_scan_next(third.cursor))
        assert [r.partition_key for r in late.run_requests] == ["r-0"]


def test_under_the_daemon_a_tick_waits_for_an_upload(store, marker_tick, tmp_path, monkeypatch):
    # The daemon's clock and its previous tick, given: the tick happened 5 s ago.
    monkeypatch.setattr(uploads, "wall_clock", lambda: 1_000_005.0)
    monkeypatch.setattr(uploads, "POLL_FOR_S", 8.0)
    data = tmp_path / "requests.ndjson"
    data.write_bytes(LINE)
    listings = []

    def scan(store, cursor):
        # The third look at the markers finds an upload that arrived meanwhile.
        listings.append(cursor)
        if len(listings) == 3:
            upload_run(store, [data], MANIFEST)
        return discovery.scan_uploads(store, cursor)

    with dg.instance_for_test() as instance:
        first = marker_tick(instance)
        monkeypatch.setattr(uploads, "scan_uploads", scan)
        # On demand (no previous tick): one look, then it returns.
        assert marker_tick(instance, first.cursor).run_requests == []
        assert len(listings) == 1

        # The daemon's tick keeps looking at the markers until the upload is there, and
        # returns then (not after the whole POLL_FOR_S: 16 looks).
        listings.clear()
        result = marker_tick(instance, first.cursor, last_tick=1_000_000.0)
    assert [r.partition_key for r in result.run_requests] == ["r-1"]
    assert len(listings) == 3


def test_under_the_daemon_a_deleted_refused_upload_has_its_alert_resolved(
    store, warehouse, marker_tick, monkeypatch
):
    # A daemon's tick lists all of raw/, then looks at the markers until it is over: the last
    # look knows nothing of what is gone, and the refused upload's alert stayed open.
    monkeypatch.setattr(uploads, "wall_clock", lambda: 1_000_005.0)
    monkeypatch.setattr(uploads, "POLL_FOR_S", 1.0)
    store.put_bytes("raw/checkout/bad/run.json", b"{not json")
    with dg.instance_for_test() as instance:
        first = marker_tick(instance)
        assert warehouse.read("alerts")["status"].to_list() == ["open"]
        store.delete("raw/checkout/bad/run.json")
        full = discovery.full_scan_next(first.cursor)
        marker_tick(instance, full, last_tick=1_000_000.0)
    assert warehouse.read("alerts")["status"].to_list() == ["resolved"]
