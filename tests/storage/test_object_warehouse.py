"""The warehouse in an S3-compatible store (moto's server) shared by hosts: a writer killed in
the middle of a partition's upload publishes nothing and its re-run publishes the partition
once; writers on two hosts (two local folders, two processes) lose no partition of each other.
(Reads, writes and views of the object store: tests/storage/test_warehouse.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import urlsplit

import boto3
import polars as pl
import pytest
from faults import TcpProxy, through

from metrics_pipeline.contracts.tables import conform
from metrics_pipeline.storage import Warehouse, warehouse_at
from metrics_pipeline.storage.integrity import check

pytestmark = pytest.mark.services

NOW = datetime(2030, 1, 1, tzinfo=UTC)
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# A partition big enough that its upload takes many round trips: the writer is killed in the
# middle of it (random latencies do not compress).
ROWS = 1_500_000

WRITER = """
import sys
import numpy as np, polars as pl
from metrics_pipeline.contracts.tables import conform
from metrics_pipeline.storage import warehouse_at
url, local, endpoint, postgres, rows = sys.argv[1:]
warehouse = warehouse_at(url, local, postgres, endpoint_url=endpoint)
n = int(rows)
frame = pl.DataFrame({
    "endpoint": ["/big"] * n,
    "latency_ms": np.random.default_rng(1).lognormal(3, 1, n),
    "ok": [True] * n,
    "status": [200] * n,
    "line_no": np.arange(1, n + 1),
})
warehouse.write_partition("requests", "r1", conform("requests", frame))
"""


@pytest.fixture(autouse=True)
def _credentials(monkeypatch):
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def location(s3_endpoint) -> str:
    bucket = f"shared-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    return f"s3://{bucket}/warehouse"


@pytest.fixture
def mirror_url(postgres_url) -> str:
    from servers import new_database

    return new_database(postgres_url)


def keys(s3_endpoint: str, location: str, prefix: str) -> list[str]:
    bucket, _, root = location.removeprefix("s3://").partition("/")
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{root}/{prefix}"
    )
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def manifest(s3_endpoint: str, location: str, table: str, part: str = "partitions"):
    bucket, _, root = location.removeprefix("s3://").partition("/")
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    body = client.get_object(Bucket=bucket, Key=f"{root}/_manifests/{table}.json")["Body"]
    return json.loads(body.read())[part]


def assert_consistent(warehouse: Warehouse) -> None:
    assert [c for c in check(warehouse) if not c.ok] == []


def test_a_writer_killed_mid_upload_publishes_nothing_and_its_rerun_publishes_once(
    s3_endpoint, location, mirror_url, tmp_path
):
    warehouse = warehouse_at(location, tmp_path / "reader", mirror_url, endpoint_url=s3_endpoint)
    old = conform("requests", pl.DataFrame({"endpoint": ["/old"] * 3, "latency_ms": [1.0] * 3}))
    warehouse.write_partition("requests", "r1", old)
    old_keys = manifest(s3_endpoint, location, "requests")["r1"]

    proxy = TcpProxy(urlsplit(s3_endpoint).port)
    args = [location, str(tmp_path / "writer"), through(s3_endpoint, proxy), mirror_url]
    env = os.environ | CREDENTIALS
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, *args, str(ROWS)], env=env, stderr=subprocess.PIPE
    )
    # Killed once a few MB of the partition's file went up: in the middle of its upload.
    deadline = time.monotonic() + 300
    while proxy.sent["up"] < 4_000_000 and writer.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.poll() is None, "the writer finished before it could be killed"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    proxy.close()

    # Nothing of the new partition is seen, in Parquet or in Postgres; nothing is pending.
    assert manifest(s3_endpoint, location, "requests")["r1"] == old_keys
    assert warehouse.read("requests", ["r1"])["endpoint"].to_list() == ["/old"] * 3
    assert warehouse.pending() == {}
    assert_consistent(warehouse)

    # The re-run publishes the partition once; the replaced objects wait for their deletion.
    direct = [location, str(tmp_path / "writer"), s3_endpoint, mirror_url, str(ROWS)]
    rerun = subprocess.run([sys.executable, "-c", WRITER, *direct], env=env, capture_output=True)
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    new_keys = manifest(s3_endpoint, location, "requests")["r1"]
    assert len(new_keys) == 1 and new_keys != old_keys
    replaced = [key for key, _ in manifest(s3_endpoint, location, "requests", "replaced")]
    assert replaced == old_keys
    back = warehouse.read("requests", ["r1"])
    assert back.height == ROWS and back["line_no"].n_unique() == ROWS
    assert_consistent(warehouse)


MANY = """
import sys
import polars as pl
from metrics_pipeline.contracts.tables import conform
from metrics_pipeline.storage import warehouse_at
url, local, endpoint, postgres, host, count = sys.argv[1:]
warehouse = warehouse_at(url, local, postgres or None, endpoint_url=endpoint)
for index in range(int(count)):
    frame = pl.DataFrame({"endpoint": [f"/{host}"] * 2, "latency_ms": [1.0, 2.0]})
    warehouse.write_partition("requests", f"{host}-{index}", conform("requests", frame))
"""


@pytest.mark.parametrize("coordination", ["postgres", "none"])
def test_writers_on_two_hosts_keep_each_others_partitions(
    s3_endpoint, location, coordination, tmp_path, request
):
    # Two hosts: each its own local folder (staging, file locks, catalog), each publishing
    # partitions of its own runs as fast as it can; both change the table's manifest. With
    # Postgres an advisory lock orders them; without it only the manifest's conditional write
    # does (a host that read an older manifest is refused and starts over).
    mirror_url = request.getfixturevalue("mirror_url") if coordination == "postgres" else ""
    count = 25
    env = os.environ | CREDENTIALS
    hosts = [
        subprocess.Popen(
            [sys.executable, "-c", MANY, location, str(tmp_path / host), s3_endpoint, mirror_url,
             host, str(count)],
            env=env,
            stderr=subprocess.PIPE,
        )
        for host in ("a", "b")
    ]  # fmt: skip
    for proc in hosts:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-2000:]

    warehouse = warehouse_at(
        location, tmp_path / "reader", mirror_url or None, endpoint_url=s3_endpoint
    )
    expected = sorted(f"{host}-{index}" for host in ("a", "b") for index in range(count))
    assert warehouse.run_ids("requests") == expected
    assert warehouse.read("requests").height == 2 * len(expected)
    assert_consistent(warehouse)


def test_threads_sharing_a_file_object_keep_their_own_positions(s3_endpoint, location, tmp_path):
    # DuckDB's threads read the row groups of one file through one file object, each as a
    # seek then a read; pyarrow lets go of the GIL while reading, so with one shared position
    # a seek of one thread moved the read of another (corrupt Parquet pages).
    import threading

    import duckdb

    warehouse = warehouse_at(location, tmp_path / "local", endpoint_url=s3_endpoint)
    n = 200_000
    frame = pl.DataFrame({"endpoint": ["/a"] * n, "latency_ms": [float(i) for i in range(n)]})
    warehouse.write_partition("requests", "r1", conform("requests", frame))
    (url,) = warehouse.files("requests", ["r1"])
    with warehouse.filesystem.open(url, "rb") as shared:
        content = shared.read()
    assert len(content) > 4096

    with warehouse.filesystem.open(url, "rb") as shared:
        sought, moved, read = threading.Event(), threading.Event(), {}

        def first() -> None:
            shared.seek(0)
            sought.set()
            moved.wait(60)
            read["first"] = shared.read(16)

        thread = threading.Thread(target=first)
        thread.start()
        sought.wait(60)
        shared.seek(4096)  # another thread's seek, between the first one's seek and read
        moved.set()
        thread.join(60)
        assert read["first"] == content[:16]
        assert shared.read(16) == content[4096 : 4096 + 16]

    con = duckdb.connect(config={"threads": 4})
    con.register_filesystem(warehouse.filesystem)
    rows, total = con.execute(
        f"select count(*), sum(latency_ms) from read_parquet('{url}')"
    ).fetchone()
    assert (rows, total) == (n, float(sum(range(n))))


def test_replaced_objects_stay_readable_for_a_while_then_go(s3_endpoint, location, tmp_path):
    from metrics_pipeline.storage.object_warehouse import ObjectWarehouse

    now = [1000.0]
    warehouse = ObjectWarehouse(
        location, tmp_path / "local", endpoint_url=s3_endpoint, wall_clock=lambda: now[0]
    )

    def frame(endpoint: str) -> pl.DataFrame:
        return conform("requests", pl.DataFrame({"endpoint": [endpoint], "latency_ms": [1.0]}))

    warehouse.write_partition("requests", "r1", frame("/v1"))
    listed = warehouse.files("requests")  # a reader's list of keys, taken now
    warehouse.write_partition("requests", "r1", frame("/v2"))
    assert warehouse.read("requests")["endpoint"].to_list() == ["/v2"]
    # The reader that listed the keys before the replacement can still read them ...
    old = pl.read_parquet(listed, storage_options=warehouse.storage_options)
    assert old["endpoint"].to_list() == ["/v1"]
    now[0] += warehouse.keep_replaced_s - 1
    warehouse.write_partition("requests", "r2", frame("/other"))
    assert all(key in keys(s3_endpoint, location, "requests/") for key in stored(listed))
    # ... until the delay has passed: the next publication of the table deletes them.
    now[0] += 1
    warehouse.write_partition("requests", "r3", frame("/other"))
    assert not set(stored(listed)) & set(keys(s3_endpoint, location, "requests/"))
    assert manifest(s3_endpoint, location, "requests", "replaced") == []


def stored(urls: list[str]) -> list[str]:
    """Object keys of ``s3://bucket/key`` URLs."""
    return [url.removeprefix("s3://").partition("/")[2] for url in urls]


def test_refreshing_the_catalog_leaves_the_store_alone(tmp_path):
    # Every step refreshes the catalog after its writes; for a bucket that would read every
    # partition's footer each time, so the views are built when the catalog is opened. An
    # endpoint nothing listens on shows the refresh reaches for nothing.
    from servers import free_port

    warehouse = warehouse_at(
        "s3://nowhere/warehouse", tmp_path, endpoint_url=f"http://127.0.0.1:{free_port()}"
    )
    assert warehouse.refresh_catalog() == tmp_path / "warehouse.duckdb"


def test_leftovers_of_a_killed_writer_are_found_and_removed(s3_endpoint, location, tmp_path):
    # What a writer killed before its manifest swap uploaded: objects no manifest lists.
    import pyarrow.fs as pafs

    warehouse = warehouse_at(location, tmp_path / "local", endpoint_url=s3_endpoint)
    frame = conform("requests", pl.DataFrame({"endpoint": ["/a"], "latency_ms": [1.0]}))
    warehouse.write_partition("requests", "r1", frame)
    warehouse.write_partition("requests", "r1", frame)  # the first keys are now "replaced"
    (published,) = warehouse.files("requests", ["r1"])
    orphan = published.replace("part-", "part-orphan-")
    warehouse.fs.copy_file(published.removeprefix("s3://"), orphan.removeprefix("s3://"))
    staging = tmp_path / "local" / ".staging" / "r1-killed"
    staging.mkdir(parents=True)
    (staging / "part-0.parquet").write_bytes(b"half")
    assert isinstance(warehouse.fs, pafs.S3FileSystem)

    # Ages count from the store's and the file system's times, whatever this process's clock
    # says (it may be moved): both leftovers dated at the orphan's upload.
    uploaded = warehouse.fs.get_file_info(orphan.removeprefix("s3://")).mtime.timestamp()
    os.utime(staging, (uploaded, uploaded))
    # Younger than a day: perhaps a write under way; a day later: leftovers.
    assert warehouse.leftovers(now_s=uploaded) == []
    later = uploaded + 2 * 24 * 3600
    found = warehouse.leftovers(now_s=later)
    assert sorted(found) == sorted([str(staging), orphan])
    warehouse.remove_leftovers(found)
    assert warehouse.leftovers(now_s=later) == []
    assert not staging.exists() and stored([orphan])[0] not in keys(s3_endpoint, location, "")
    # The data and the replaced keys (readers in flight may use them) are untouched.
    assert warehouse.read("requests")["endpoint"].to_list() == ["/a"]
    assert len(manifest(s3_endpoint, location, "requests", "replaced")) == 1


READER = """
import sys
from metrics_pipeline.storage import warehouse_at
url, local, endpoint, rounds = sys.argv[1:]
warehouse = warehouse_at(url, local, endpoint_url=endpoint)
for _ in range(int(rounds)):
    warehouse.files("requests")
"""


def test_a_reader_never_sees_half_a_manifest(s3_endpoint, location, tmp_path):
    # A reader lists the partitions over and over while a writer publishes: each read of the
    # manifest is one whole version (a size-then-range read once cut a new version to the old
    # length: "Unterminated string").
    warehouse = warehouse_at(location, tmp_path / "writer", endpoint_url=s3_endpoint)
    frame = conform("requests", pl.DataFrame({"endpoint": ["/a"], "latency_ms": [1.0]}))
    warehouse.write_partition("requests", "r-0", frame)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, location, str(tmp_path / "reader"), s3_endpoint, "400"],
        env=os.environ | CREDENTIALS,
        stderr=subprocess.PIPE,
    )
    index = 1
    while reader.poll() is None:
        warehouse.write_partition("requests", f"r-{index}", frame)
        index += 1
    assert reader.returncode == 0, reader.stderr.read().decode()[-2000:]
    assert warehouse.run_ids("requests") == sorted(f"r-{i}" for i in range(index))


def test_a_table_whose_manifest_is_gone_is_not_taken_for_leftovers(s3_endpoint, location, tmp_path):
    # Objects no manifest lists are a killed writer's leftovers only when the table has a
    # manifest; without one they may be every partition of a table whose manifest was lost.
    warehouse = warehouse_at(location, tmp_path / "local", endpoint_url=s3_endpoint)
    frame = conform("requests", pl.DataFrame({"endpoint": ["/a"], "latency_ms": [1.0]}))
    warehouse.write_partition("requests", "r1", frame)
    bucket, _, root = location.removeprefix("s3://").partition("/")
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.delete_object(Bucket=bucket, Key=f"{root}/_manifests/requests.json")
    # However old the objects: now_s at infinity makes every object old enough.
    assert [url for url in warehouse.leftovers(now_s=float("inf")) if "requests" in url] == []


def test_deleting_replaced_objects_leaves_no_folder_markers(s3_endpoint, location, tmp_path):
    from metrics_pipeline.storage.object_warehouse import ObjectWarehouse

    now = [1000.0]
    warehouse = ObjectWarehouse(
        location, tmp_path / "local", endpoint_url=s3_endpoint, wall_clock=lambda: now[0]
    )
    frame = conform("requests", pl.DataFrame({"endpoint": ["/a"], "latency_ms": [1.0]}))
    warehouse.write_partition("requests", "r1", frame)
    warehouse.delete_partition("requests", "r1")
    now[0] += warehouse.keep_replaced_s
    warehouse.write_partition("requests", "r2", frame)  # deletes r1's objects
    assert keys(s3_endpoint, location, "requests/run_id=r1") == []
    # A marker an earlier version left is a leftover, which `check --repair` removes.
    bucket, _, root = location.removeprefix("s3://").partition("/")
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.put_object(Bucket=bucket, Key=f"{root}/requests/run_id=r0/", Body=b"")
    found = warehouse.leftovers(now_s=float("inf"))
    assert found == [f"s3://{bucket}/{root}/requests/run_id=r0/"]
    warehouse.remove_leftovers(found)
    assert keys(s3_endpoint, location, "requests/run_id=r0") == []
    assert warehouse.read("requests")["endpoint"].to_list() == ["/a"]


def test_a_manifest_write_whose_answer_is_lost_counts_once(s3_endpoint, location, tmp_path):
    # The store applies the PUT of a manifest, its answer is lost on the way back, the client
    # resends the PUT with the same If-Match and the store refuses it (412): the publication
    # is done, not taken for another writer's and redone on top of itself (which listed the
    # run's own new keys as replaced: deleted 10 minutes later).
    from faults import HttpProxy

    from metrics_pipeline.storage.object_warehouse import ObjectWarehouse

    warehouse = ObjectWarehouse(
        location, tmp_path / "local", endpoint_url=s3_endpoint, wall_clock=lambda: 1000.0
    )
    proxy = HttpProxy(s3_endpoint)
    # The manifests' reads and writes go through the proxy (the uploads do not).
    warehouse.client = boto3.client("s3", endpoint_url=proxy.url, region_name="us-east-1")
    frame = conform("requests", pl.DataFrame({"endpoint": ["/a"], "latency_ms": [1.0]}))
    warehouse.write_partition("requests", "r1", frame)
    proxy.lose_answer_once("PUT", "_manifests/requests.json")
    warehouse.write_partition("requests", "r2", frame)
    assert len(proxy.lost) == 1

    published = manifest(s3_endpoint, location, "requests")
    replaced = {key for key, _ in manifest(s3_endpoint, location, "requests", "replaced")}
    assert sorted(published) == ["r1", "r2"] and not set(published["r2"]) & replaced
    assert warehouse.read("requests", ["r2"]).height == 1
    proxy.close()
