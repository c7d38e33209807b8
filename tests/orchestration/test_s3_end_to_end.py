"""The production path on a real S3-compatible server process (moto's, on loopback):
upload -> new_run_sensor -> ci_stage materializations -> verdict. Same code as with MinIO."""

from __future__ import annotations

import boto3
import dagster as dg
import polars as pl
import pytest
from conftest import upload_demo_runs

from metrics_pipeline.orchestration.definitions import build_definitions
from metrics_pipeline.orchestration.inprocess import sense_and_run
from metrics_pipeline.settings import Settings
from metrics_pipeline.storage import Warehouse
from metrics_pipeline.storage.objects import S3ObjectStore, object_store_from_settings

pytestmark = [pytest.mark.slow, pytest.mark.services]


@pytest.fixture
def s3_settings(s3_endpoint, tmp_path, monkeypatch) -> Settings:
    # moto accepts any credentials; they travel through dg.EnvVar like real ones.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    bucket = f"loadtests-{tmp_path.name.lower().replace('_', '-')[-40:]}"
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    return Settings(home=tmp_path / "home", store="s3", bucket=bucket, s3_endpoint_url=s3_endpoint)


def test_upload_to_s3_becomes_a_verdict(s3_settings, tmp_path):
    store = object_store_from_settings(s3_settings)
    assert isinstance(store, S3ObjectStore)
    runs = upload_demo_runs(store, tmp_path / "runs", count=3)
    # An upload still in progress (no run.json yet) must be left alone.
    store.put_bytes("raw/checkout/half-done/requests.ndjson", b"{}\n")

    with dg.instance_for_test() as instance:
        defs = build_definitions(s3_settings)
        assert isinstance(defs.resources["object_store"].get(), S3ObjectStore)
        tick = sense_and_run(defs, instance)
        assert tick.run_ids == [r.manifest.run_id for r in runs]
        assert all(result.success for result in tick.results.values())

    warehouse = Warehouse(s3_settings.warehouse_root)
    last = runs[-1].manifest.run_id
    assert warehouse.read("requests", [last]).height == len(runs[-1].records)
    flagged = warehouse.read("verdicts", [last]).filter(pl.col("regression"))
    assert set(flagged["endpoint"]) == {"/api/orders"}


def test_s3_store_lists_heads_and_streams_objects(s3_settings, tmp_path):
    store = object_store_from_settings(s3_settings)
    store.put_bytes("raw/s/r/a.ndjson", b"x" * 10)
    (tmp_path / "b.jsonl").write_bytes(b"y" * 20)
    store.put_file("raw/s/r/b.jsonl", tmp_path / "b.jsonl")
    assert [(o.key, o.size) for o in store.list("raw/s/")] == [
        ("raw/s/r/a.ndjson", 10),
        ("raw/s/r/b.jsonl", 20),
    ]
    assert store.list_folders("raw/") == ["s"]
    assert store.head("raw/s/r/missing") is None
    with store.open("raw/s/r/b.jsonl") as stream:
        assert stream.read() == b"y" * 20
    before = store.head("raw/s/r/a.ndjson").etag
    store.put_bytes("raw/s/r/a.ndjson", b"changed")
    assert store.head("raw/s/r/a.ndjson").etag != before
