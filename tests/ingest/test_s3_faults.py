"""Uploads and ingests with the S3 connection cut part-way (a proxy in front of a real
S3-compatible server). A cut upload is never ingested as a run; a cut ingest publishes
nothing; re-running either gives the warehouse a clean run gives."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from faults import TcpProxy

from metrics_pipeline.evaluation.demo_data import demo_runs
from metrics_pipeline.ingest.discovery import scan_uploads
from metrics_pipeline.ingest.files import ingest_from_store
from metrics_pipeline.storage import Warehouse
from metrics_pipeline.storage.integrity import check
from metrics_pipeline.storage.objects import S3ObjectStore
from metrics_pipeline.upload.uploader import upload_run

pytestmark = [pytest.mark.services, pytest.mark.slow]

NOW = datetime(2030, 1, 1, tzinfo=UTC)
KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def contents(warehouse: Warehouse) -> dict:
    return {(c.table, c.run_id): (c.parquet_rows, c.parquet_checksum) for c in check(warehouse)}


@pytest.fixture
def stores(s3_endpoint, tmp_path):
    """(the store through a cuttable proxy, the proxy, the store reached directly)."""
    bucket = f"faults-{tmp_path.name.lower().replace('_', '-')[-40:]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", **KEYS).create_bucket(
        Bucket=bucket
    )
    proxy = TcpProxy(urlsplit(s3_endpoint).port)
    through = S3ObjectStore(bucket, endpoint_url=f"http://127.0.0.1:{proxy.port}", **KEYS)
    # Few quick retries: boto3's own retries would only wait for a proxy that stays cut.
    through._client = boto3.client(
        "s3",
        endpoint_url=through.endpoint_url,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 2, "mode": "standard"}),
        **KEYS,
    )
    yield through, proxy, S3ObjectStore(bucket, endpoint_url=s3_endpoint, **KEYS)
    proxy.close()


@pytest.fixture
def run(tmp_path):
    (run,) = demo_runs(1, duration_s=60.0)
    return run, run.write(tmp_path / "runs") / "requests.ndjson"


def test_an_upload_cut_midway_is_not_a_run_until_it_is_uploaded_again(stores, run, tmp_path):
    through, proxy, direct = stores
    demo, path = run
    proxy.cut_after(up=path.stat().st_size // 2)
    with pytest.raises(Exception):  # noqa: B017  (botocore's connection errors vary)
        upload_run(through, [path], demo.manifest)
    assert scan_uploads(direct, None).uploads == []  # no run.json: incomplete, not ingested

    proxy.restore()
    upload_run(through, [path], demo.manifest)
    (upload,) = scan_uploads(direct, None).uploads
    warehouse = Warehouse(tmp_path / "home")
    ingest_from_store(direct, warehouse, upload.run_id, now=NOW)
    assert warehouse.read("requests").height == len(demo.records)


def test_a_reupload_cut_midway_hides_the_run_until_it_is_complete(stores, run, tmp_path):
    through, proxy, direct = stores
    demo, path = run
    upload_run(through, [path], demo.manifest)
    first = scan_uploads(direct, None)
    # A corrected file (the last 100 requests dropped), uploaded under the same run id.
    corrected = tmp_path / "corrected" / path.name
    corrected.parent.mkdir()
    corrected.write_text("".join(path.read_text().splitlines(keepends=True)[:-100]))
    proxy.cut_after(up=corrected.stat().st_size // 2)
    with pytest.raises(Exception):  # noqa: B017
        upload_run(through, [corrected], demo.manifest)
    # The old manifest went first: half-replaced files are never taken for the old run.
    prefix = direct.run_prefix(demo.manifest.suite, demo.manifest.run_id)
    assert direct.head(prefix + "run.json") is None
    assert scan_uploads(direct, first.cursor).uploads == []

    proxy.restore()
    upload_run(through, [corrected], demo.manifest)
    (again,) = scan_uploads(direct, first.cursor).uploads
    assert again.run_id == demo.manifest.run_id and again.version != first.uploads[0].version
    warehouse = Warehouse(tmp_path / "home")
    ingest_from_store(direct, warehouse, again.run_id, now=NOW)
    assert warehouse.read("requests").height == len(demo.records) - 100

    # The same content uploaded once more is the same version: nothing to ingest again.
    upload_run(through, [corrected], demo.manifest)
    assert scan_uploads(direct, scan_uploads(direct, first.cursor).cursor).uploads == []


def test_an_ingest_cut_midway_publishes_nothing_and_a_rerun_equals_a_clean_one(
    stores, run, tmp_path
):
    through, proxy, direct = stores
    demo, path = run
    upload_run(direct, [path], demo.manifest)
    run_id = demo.manifest.run_id
    clean = Warehouse(tmp_path / "clean")
    ingest_from_store(direct, clean, run_id, now=NOW)

    warehouse = Warehouse(tmp_path / "home")
    before = proxy.sent["down"]
    ingest_from_store(through, warehouse, run_id, now=NOW)
    first = contents(warehouse)
    assert first == contents(clean)
    # The same ingest again, the download cut halfway through the result file.
    total = proxy.sent["down"] - before
    proxy.cut_after(down=total // 2)
    with pytest.raises(Exception):  # noqa: B017
        ingest_from_store(through, warehouse, run_id, now=NOW)
    assert proxy.is_cut
    assert contents(warehouse) == first  # the earlier ingest's partitions, whole

    proxy.restore()
    ingest_from_store(through, warehouse, run_id, now=NOW)
    assert contents(warehouse) == contents(clean)
