r"""The warehouse in an object store (``METRICS_WAREHOUSE=s3://bucket/prefix``), shared by hosts.

Objects keep the local layout, hive-partitioned Parquet (``<table>/run_id=<id>/part-*.parquet``,
``<table>/data-*.parquet`` for snapshots), but an object store has no atomic folder rename, so
what a reader sees is decided by one small manifest per table, ``_manifests/<table>.json``
(``{"partitions": {run_id: [keys]}, "replaced": [[key, time], ...]}``; a snapshot's run id is
``""``). Publishing a partition:

1. upload its files under keys no one has used (a random token in the name), before the
   Postgres mirror's transaction opens;
2. read the manifest (one GET), point the run at the new keys and write it back with one
   conditional PUT (``If-Match`` its ETag, ``If-None-Match: *`` for a table's first): readers
   see the old manifest or the new one, never half a partition, and a writer whose manifest
   another host changed meanwhile is refused (412) and starts over from the new one, so no
   host's partition is lost, with or without Postgres. This happens in the mirror's
   transaction, as the local folder's swap does;
3. list the keys the run pointed at before as replaced; replaced keys are deleted by a later
   publication of the table once ``keep_replaced_s`` (10 minutes) have passed, so a reader
   that took its list of keys from the manifest a moment earlier (a DuckDB view, a query, a
   validation under way on another host) can still read them: a folder's rename had no such
   gap to cover, an object store's delete does. (Delta Lake and Iceberg keep replaced files
   for the same reason, until a vacuum.)

A writer killed before 2 leaves unreferenced objects and no visible change: the re-run
publishes the partition once. Readers list only the manifest's keys (DuckDB through an fsspec
filesystem registered per connection, polars with its own S3 client, Great Expectations through
DuckDB), so a DuckDB catalog is built per process from the manifests: no database file is
shared. The conditional PUT keeps the manifests right across hosts; the table's lock (a file
lock, and a Postgres advisory lock every host sees when the mirror is set) only spares writers
the retries. The other read-change-writes (alerts, triage marks: :meth:`Warehouse.lock`) need
the mirror's advisory lock to span hosts.

Staging files, file locks and the process's DuckDB catalog stay in a local folder (``root``).
The warehouse's own folders are prefixes beside the tables, ``_`` where the local layout has
``.`` (``_pending``, retention's trash ``_trash-retention``): no reader lists them.
"""

from __future__ import annotations

import functools
import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import pyarrow.fs as pafs
from botocore.exceptions import ClientError

from metrics_pipeline.contracts.tables import SCHEMAS, SNAPSHOT_TABLES
from metrics_pipeline.storage.postgres import PostgresWarehouse
from metrics_pipeline.storage.warehouse import (
    CATALOG_FILE,
    LEFTOVER_AGE_S,
    PARTITION_KEY,
    PartitionChanged,
    Warehouse,
)

MANIFESTS = "_manifests"
# Conditional writes of a manifest refused because another host changed it first: each retry
# reads the new one, so this many means a host rewrites the table without pause.
MANIFEST_ATTEMPTS = 100
CONDITION_REFUSED = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
# How long a replaced object stays readable: longer than a reader keeps a list of keys (a
# catalog refresh, a query, a run's validation).
KEEP_REPLACED_S = 600.0
PENDING = "_pending"
SNAPSHOT = ""  # the manifest's run id of a whole-table snapshot


class ObjectWarehouse(Warehouse):
    r"""The warehouse under ``url`` (``s3://bucket/prefix``) of an S3-compatible store.

    ``root`` is a local folder for staging files, file locks and this process's DuckDB
    catalog; ``endpoint_url`` and ``region`` name the store (MinIO: its URL). Credentials
    come from the environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``), as for the
    bucket of uploads. A replaced object is deleted ``keep_replaced_s`` after its replacement
    (module docstring, step 3), both times on ``wall_clock``; by default the store's own
    clock (the ``Date`` of its answers), the same for every host whatever their clocks say.
    """

    def __init__(
        self,
        url: str,
        root: str | Path,
        mirror: PostgresWarehouse | None = None,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        keep_replaced_s: float = KEEP_REPLACED_S,
        wall_clock: Callable[[], float] | None = None,
    ):
        super().__init__(root, mirror)
        self.keep_replaced_s = keep_replaced_s
        # When a key was replaced: a wall clock, not the pipeline's (METRICS_NOW may freeze
        # that one), since the delay protects readers running now; the store's, so that a
        # host whose clock runs ahead does not delete what another replaced a moment ago.
        self.wall_clock = wall_clock or self._store_clock
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"a warehouse URL is s3://bucket[/prefix], not {url!r}")
        self.url = url.rstrip("/")
        self.base = f"{parts.netloc}/{parts.path.strip('/')}".rstrip("/")
        self.endpoint_url = endpoint_url
        self.region = region
        self.fs = _s3(endpoint_url, region)

    @functools.cached_property
    def client(self):
        """boto3's S3 client: single-GET reads, conditional PUTs and deletes that leave no
        folder-marker objects behind (pyarrow's delete_file recreates the parent "folder")."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region)

    # -- readers ------------------------------------------------------------------------

    @functools.cached_property
    def filesystem(self):
        """The store as an fsspec filesystem (``s3://`` URLs), for DuckDB: fsspec's wrapper of
        the pyarrow filesystem (s3fs would pin another botocore than boto3's), whose files
        DuckDB's threads can share (:class:`SharedReadFile`)."""
        from fsspec.implementations.arrow import ArrowFSWrapper

        class S3(ArrowFSWrapper):
            protocol = "s3"  # DuckDB routes a URL to a registered filesystem by its protocol

            def _open(self, path, mode="rb", *args, **kwargs):
                if mode != "rb":
                    return super()._open(path, mode, *args, **kwargs)
                return SharedReadFile(self.fs.open_input_file(path))

        return S3(self.fs)

    @property
    def storage_options(self) -> dict[str, str]:
        options = {"aws_region": self.region}
        if self.endpoint_url:
            options["aws_endpoint_url"] = self.endpoint_url
            if self.endpoint_url.startswith("http://"):
                options["aws_allow_http"] = "true"
        return options

    def _attach(self, con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
        con.register_filesystem(self.filesystem)
        return con

    def files(self, table: str, run_ids: Iterable[str] | None = None) -> list[str]:
        partitions = self._manifest(table)
        if table in SNAPSHOT_TABLES:
            return [self._url(key) for key in partitions.get(SNAPSHOT, [])]
        wanted = sorted(partitions) if run_ids is None else dict.fromkeys(run_ids)
        return sorted(self._url(key) for run_id in wanted for key in partitions.get(run_id, []))

    def run_ids(self, table: str) -> list[str]:
        return sorted(self._manifest(table))

    def refresh_catalog(self, attempts: int = 20) -> Path:
        """The catalog file, built when opened (:meth:`open_catalog`; the marts build their
        views themselves): views over a bucket's files read every partition's footer from the
        store when created (15 ms each on moto: 3 s at 200 partitions), and every step of a run
        refreshes the catalog after its writes. The catalog is this process's own anyway."""
        return self.root / CATALOG_FILE

    def open_catalog(self, read_only: bool = True) -> duckdb.DuckDBPyConnection:
        if not read_only:  # the catalog file, with views built now from the manifests
            super().refresh_catalog()
        return super().open_catalog(read_only)

    def _partition_files_sql(self, table: str, files: list) -> str:
        # The manifest's keys, not a glob: objects of an unfinished or replaced partition
        # share the prefix and must stay unseen.
        return "[" + ", ".join(f"'{file}'" for file in files) + "]"

    def partition_dir(self, table: str, run_id: str) -> Path:
        raise NotImplementedError(
            f"the warehouse at {self.url} has no partition folders (`rebuild` needs a local "
            "warehouse for now)"
        )

    def private_folder(self, name: str) -> tuple[pafs.FileSystem, str]:
        # In the bucket, beside the tables: the trash copies a partition's objects server-side
        # and hosts sharing the warehouse share its trash. "_" for the local "." as in PENDING.
        return self.fs, self._path("_" + name.removeprefix("."))

    def leftovers(
        self, older_than_s: float = LEFTOVER_AGE_S, now_s: float | None = None
    ) -> list[str]:
        r"""The local leftovers (:meth:`Warehouse.leftovers`) and, as ``s3://`` URLs, the
        objects under the tables' prefixes that no manifest lists, as partitions or as replaced
        keys: the uploads of a writer killed before it swapped the manifest, and the empty
        folder markers earlier versions' deletes left (``.../run_id=<id>/``). Times are the
        store's (its objects' modification times) and ``now_s``'s (default ``wall_clock``)."""
        now_s = self.wall_clock() if now_s is None else now_s
        cutoff = now_s - older_than_s
        found = super().leftovers(older_than_s, now_s)
        for table in SCHEMAS:
            stored, _ = self._fetch(f"{MANIFESTS}/{table}.json")
            if stored is None:
                # Objects without a manifest are a table never published, or one whose
                # manifest was lost: not leftovers to delete (that would be every partition).
                continue
            document = _normalised(stored)
            known = {self._path(key) for keys in document["partitions"].values() for key in keys}
            known |= {self._path(key) for key, _ in document["replaced"]}
            bucket, prefix = self._bucket_key(f"{table}/")
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix
            )
            for item in (item for page in pages for item in page.get("Contents", [])):
                path = f"{bucket}/{item['Key']}"
                unlisted = item["Key"].endswith(".parquet") and path not in known
                marker = item["Key"].endswith("/") and item["Size"] == 0
                if (unlisted or marker) and item["LastModified"].timestamp() < cutoff:
                    found.append(f"s3://{path}")
        return found

    def remove_leftovers(self, leftovers: Iterable[str]) -> None:
        leftovers = list(leftovers)
        urls = [entry for entry in leftovers if entry.startswith("s3://")]
        super().remove_leftovers(entry for entry in leftovers if not entry.startswith("s3://"))
        for url in urls:
            bucket, _, name = url.removeprefix("s3://").partition("/")
            self.client.delete_object(Bucket=bucket, Key=name)

    # -- writers ------------------------------------------------------------------------

    def _stage(self, table: str, run_id: str | None, folder: Path) -> list[str]:
        """Upload ``folder``'s files under keys no one has used; their keys."""
        stem = f"{table}/data" if run_id is None else f"{table}/{PARTITION_KEY}={run_id}/part"
        token = uuid.uuid4().hex
        keys = []
        for index, file in enumerate(sorted(folder.glob("*.parquet")) if folder.exists() else []):
            key = f"{stem}-{token}-{index}.parquet"
            pafs.copy_files(str(file), self._path(key), destination_filesystem=self.fs)
            keys.append(key)
        return keys

    def _put(
        self,
        table: str,
        run_id: str | None,
        staged: list[str],
        expected: list[str] | None = None,
    ) -> None:
        """Point the table's manifest at ``staged`` for the run (a conditional write, retried
        on the newer manifest when another host got there first); then delete the keys
        replaced at least ``keep_replaced_s`` ago, as far as the store lets us now.

        With ``expected`` (the run's :meth:`files` a caller decided from), raise
        :class:`PartitionChanged` if the manifest's keys for the run differ: hosts without a
        shared lock may publish the run in between."""
        run_id = SNAPSHOT if run_id is None else run_id
        key = f"{MANIFESTS}/{table}.json"
        # Our writes carry this token: a PUT whose answer was lost is resent by the client with
        # the same If-Match and refused (412) although it was stored; the manifest read back
        # then shows our token, and the publication is done (never redone on top of itself).
        token = uuid.uuid4().hex
        # The time of the replacement, once: a retry comes milliseconds later (and the store's
        # clock costs a request).
        now = self.wall_clock()
        with self._folder_lock(f"manifest={table}"):
            for attempt in range(MANIFEST_ATTEMPTS):
                stored, etag = self._fetch(key)
                if stored is not None and stored.get("token") == token:
                    break
                document = _normalised(stored)
                partitions = document["partitions"]
                current = sorted(self._url(k) for k in partitions.get(run_id, []))
                if expected is not None and current != sorted(expected):
                    raise PartitionChanged(f"{table} of {run_id} changed")
                replaced = document["replaced"] + [[k, now] for k in partitions.pop(run_id, [])]
                if staged:
                    partitions[run_id] = staged
                expired = [k for k, at in replaced if now - at >= self.keep_replaced_s]
                kept = [[k, at] for k, at in replaced if now - at < self.keep_replaced_s]
                written = {"partitions": partitions, "replaced": kept, "token": token}
                if self._write_if(key, written, etag):
                    break
                time.sleep(min(0.5, 0.01 * 2 ** min(attempt, 6)) * (0.5 + random.random()))
            else:
                raise OSError(
                    f"the manifest of {table} in {self.url} changed under every one of "
                    f"{MANIFEST_ATTEMPTS} attempts to publish {run_id or 'its snapshot'}"
                )
        for old in expired:
            # The manifest no longer lists it: if the store refuses now, `check` finds it a
            # day later as a leftover. The publication stands either way.
            with suppress(OSError, ClientError):
                self._delete(old)

    def _discard(self, staged: list[str]) -> None:
        """Delete the uploads of a publication that was refused (best effort: what stays is a
        leftover for `check`)."""
        for key in staged:
            with suppress(OSError, ClientError):
                self._delete(key)

    @contextmanager
    def _folder_lock(self, name: str) -> Iterator[None]:
        """The local file lock and, with a Postgres mirror, an advisory lock every host sees
        (under another name than :meth:`lock`'s, which takes this one too)."""
        with super()._folder_lock(name):
            if self.mirror is None:
                yield
            else:
                with self.mirror.session_lock(f"objects:{name}"):
                    yield

    def _mark_pending(self, marker: str, tables: list[str]) -> None:
        self._write(f"{PENDING}/{marker}.json", tables)

    def clear_pending(self, marker: str) -> None:
        self._delete(f"{PENDING}/{marker}.json")

    def pending(self) -> dict[str, list[str]]:
        found = self.fs.get_file_info(pafs.FileSelector(self._path(PENDING), allow_not_found=True))
        return {
            Path(info.path).stem: json.loads(self._read(info.path))
            for info in sorted(found, key=lambda info: info.path)
            if info.path.endswith(".json")
        }

    # -- objects ------------------------------------------------------------------------

    def _manifest(self, table: str) -> dict[str, list[str]]:
        return self._document(table)["partitions"]

    def _document(self, table: str) -> dict:
        return _normalised(self._fetch(f"{MANIFESTS}/{table}.json")[0])

    def _store_clock(self) -> float:
        """The store's time now: the ``Date`` header of a HEAD of the bucket (seconds)."""
        bucket, _ = self._bucket_key("")
        headers = self.client.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPHeaders"]
        return parsedate_to_datetime(headers["date"]).timestamp()

    def _fetch(self, key: str):
        """The JSON value stored at ``key`` and its ETag, ``(None, None)`` when absent. One
        GET: a reader gets one version whole (pyarrow's input stream asks the size first and
        then the range, and a PUT in between cut the new version to the old length)."""
        bucket, name = self._bucket_key(key)
        try:
            response = self.client.get_object(Bucket=bucket, Key=name)
        except self.client.exceptions.NoSuchKey:
            return None, None
        return json.loads(response["Body"].read()), response["ETag"]

    def _write_if(self, key: str, value, etag: str | None) -> bool:
        """Store ``value`` at ``key`` only if it still has ``etag`` (is still absent when
        ``None``); ``False`` when another writer changed it first."""
        bucket, name = self._bucket_key(key)
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        body = json.dumps(value, sort_keys=True).encode()
        try:
            self.client.put_object(Bucket=bucket, Key=name, Body=body, **condition)
        except ClientError as exc:
            # 412: the ETag moved; 409: a concurrent conditional write of the same key.
            if exc.response["Error"]["Code"] in {
                "PreconditionFailed",
                "ConditionalRequestConflict",
            }:
                return False
            raise
        return True

    def _bucket_key(self, key: str) -> tuple[str, str]:
        bucket, _, name = self._path(key).partition("/")
        return bucket, name

    def _path(self, key: str) -> str:
        return f"{self.base}/{key}"

    def _url(self, key: str) -> str:
        return f"s3://{self._path(key)}"

    def _read(self, path: str) -> bytes:
        with self.fs.open_input_stream(path) as stream:
            return stream.read()

    def _write(self, key: str, value) -> None:
        with self.fs.open_output_stream(self._path(key)) as stream:
            stream.write(json.dumps(value, sort_keys=True).encode())

    def _delete(self, key: str) -> None:
        bucket, name = self._bucket_key(key)
        self.client.delete_object(Bucket=bucket, Key=name)  # an absent key is no error


def _normalised(stored) -> dict:
    """A manifest's document with both parts, empty for a table not yet published."""
    stored = stored or {}
    return {"partitions": stored.get("partitions", {}), "replaced": stored.get("replaced", [])}


class SharedReadFile:
    r"""A read-only file that several threads may seek and read at once.

    DuckDB's threads read row groups of one Parquet file through one Python file object, each
    as ``seek(offset)`` then ``read(n)``; pyarrow releases the GIL while it reads, so with one
    shared position a thread's seek moved another's read (corrupt footers and pages:
    "TProtocolException: Invalid data"). Here each thread has its own position and every read
    is positional (``read_at``, which Arrow allows concurrently).
    """

    def __init__(self, native: pafs.NativeFile):
        self._native = native
        self.size = native.size()
        self._position = threading.local()

    def tell(self) -> int:
        return getattr(self._position, "value", 0)

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.tell(), 2: self.size}[whence]
        self._position.value = base + offset
        return self._position.value

    def read(self, size: int = -1) -> bytes:
        start = self.tell()
        size = self.size - start if size is None or size < 0 else min(size, self.size - start)
        data = self._native.read_at(size, start) if size > 0 else b""
        self._position.value = start + len(data)
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return self._native.closed

    def close(self) -> None:
        self._native.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@functools.cache
def _s3(endpoint_url: str | None, region: str) -> pafs.S3FileSystem:
    options = {"region": region}
    if endpoint_url:
        parts = urlsplit(endpoint_url)
        options |= {"endpoint_override": parts.netloc, "scheme": parts.scheme or "https"}
    return pafs.S3FileSystem(**options)
