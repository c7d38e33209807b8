"""The object store where load tests upload their raw results: a local folder or S3/MinIO.

Plain classes (Dagster wraps them in ``orchestration.resources.ObjectStoreResource``). Both
stores have the same layout, ``raw/<suite>/<run_id>/{run.json, result files}``,
and the same interface, so assets, sensors and the CLI never know which one they talk to.
"""

from __future__ import annotations

import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from metrics_pipeline.common.errors import MetricsPipelineError
from metrics_pipeline.common.files import replace_bytes, replace_copy
from metrics_pipeline.contracts.manifest import ManifestError
from metrics_pipeline.settings import Settings

RAW_PREFIX = "raw/"
# One empty object per completed upload, written by the uploader after run.json:
# ``new-runs/<UTC time, microseconds>@<suite>@<run_id>``. Keys sort by time, so the sensor lists
# only the recent ones (S3 ``StartAfter``) instead of every object of every run.
NEW_RUNS_PREFIX = "new-runs/"
_MARKER_TIME = "%Y%m%dT%H%M%S.%fZ"
_NAME = r"([A-Za-z0-9._-]{1,128})"
_MARKER = re.compile(rf"new-runs/(\d{{8}}T\d{{6}}\.\d{{6}}Z)@{_NAME}@{_NAME}")


class UnsafeKeyError(MetricsPipelineError, ValueError):
    """An object key that could escape its folder or confuse a shell."""


class RunIdTakenError(ManifestError):
    """A run id uploaded (or about to be) in more than one suite: a manifest that breaks the
    contract that a run id names one run (its ingest fails without retries, as for any)."""


class StoreCredentialsError(MetricsPipelineError):
    """No (or incomplete) credentials for the S3 store in boto3's chain."""


def check_key(key: str) -> str:
    if (
        not key
        or key.startswith("/")
        or "\\" in key
        or "\x00" in key
        or any(part in {"", ".", ".."} for part in key.split("/"))
    ):
        raise UnsafeKeyError(f"object key {key!r} is not allowed (empty part, '..', '\\' or NUL)")
    return key


def new_run_marker(suite: str, run_id: str, at: datetime) -> str:
    """The key announcing the upload of ``raw/<suite>/<run_id>/`` completed at ``at``."""
    return f"{marker_bound(at)}@{suite}@{run_id}"


def marker_bound(at: datetime) -> str:
    """The key every marker written after ``at`` sorts after (a ``start_after`` bound)."""
    return NEW_RUNS_PREFIX + at.astimezone(UTC).strftime(_MARKER_TIME)


def parse_new_run_marker(key: str) -> tuple[datetime, str, str] | None:
    """(time, suite, run id) of a marker key; None for any other key."""
    match = _MARKER.fullmatch(key)
    if match is None or match[2] in {".", ".."} or match[3] in {".", ".."}:
        return None
    at = datetime.strptime(match[1], _MARKER_TIME).replace(tzinfo=UTC)
    return at, match[2], match[3]


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str  # changes whenever the content is replaced
    last_modified: float  # epoch seconds


class ObjectStore(ABC):
    """Where load tests upload their raw results."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``."""

    def list_after(self, prefix: str, start_after: str) -> Iterator[ObjectInfo]:
        """The objects under ``prefix`` whose key sorts after ``start_after``, in key order
        (S3 lists from there; others filter)."""
        return (info for info in self.list(prefix) if info.key > start_after)

    @abstractmethod
    def list_folders(self, prefix: str) -> list[str]:
        """The next path segments below ``prefix`` (which ends with '/')."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """The object's info, or None when it does not exist."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def open(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A binary stream of the object (a context manager)."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; nothing happens when it does not exist."""

    def put_file(self, key: str, path: Path) -> None:
        self.put_bytes(key, Path(path).read_bytes())

    @property
    @abstractmethod
    def description(self) -> str: ...

    def run_prefix(self, suite: str, run_id: str) -> str:
        return f"{RAW_PREFIX}{suite}/{run_id}/"

    def find_run(self, run_id: str) -> str | None:
        """The suite whose folder holds a complete upload (with run.json) of ``run_id``.

        Raises :class:`RunIdTakenError` when several suites hold one: a run id names one
        run, and taking either would lose the other without a word.
        """
        suites = [
            suite
            for suite in self.list_folders(RAW_PREFIX)
            if self.head(f"{self.run_prefix(suite, run_id)}run.json") is not None
        ]
        if len(suites) > 1:
            raise RunIdTakenError(
                f"run {run_id!r} is uploaded in suites {', '.join(map(repr, suites))}: a run id "
                "names one run; remove all but one of "
                + ", ".join(self.run_prefix(suite, run_id) for suite in suites)
            )
        return suites[0] if suites else None


@dataclass(frozen=True)
class LocalObjectStore(ObjectStore):
    """A folder with the bucket's layout: the embedded default, no server needed."""

    root: str

    @property
    def description(self) -> str:
        return f"folder {self.root}"

    def _path(self, key: str) -> Path:
        return Path(self.root) / check_key(key)

    def _info(self, path: Path) -> ObjectInfo:
        stat = path.stat()
        key = path.relative_to(self.root).as_posix()
        return ObjectInfo(
            key, stat.st_size, f"{stat.st_mtime_ns:x}-{stat.st_size:x}", stat.st_mtime
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        root = Path(self.root)
        # Walk only below the deepest folder of the prefix instead of the whole bucket.
        folder = root / prefix.rsplit("/", 1)[0] if "/" in prefix else root
        if not folder.is_dir():
            return
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.name.startswith(".upload-"):
                info = self._info(path)
                if info.key.startswith(prefix):
                    yield info

    def list_after(self, prefix: str, start_after: str) -> Iterator[ObjectInfo]:
        # Names first: only the objects after ``start_after`` are stat'ed.
        root = Path(self.root)
        folder = root / prefix.rsplit("/", 1)[0] if "/" in prefix else root
        if not folder.is_dir():
            return
        for path in sorted(folder.rglob("*")):
            key = path.relative_to(root).as_posix()
            if (
                key > start_after
                and key.startswith(prefix)
                and not path.name.startswith(".upload-")
                and path.is_file()
            ):
                yield self._info(path)

    def list_folders(self, prefix: str) -> list[str]:
        folder = self._path(prefix.rstrip("/")) if prefix.strip("/") else Path(self.root)
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir())

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        return self._info(path) if path.is_file() else None

    def get_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    @contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        with self._path(key).open("rb") as stream:
            yield stream

    def put_bytes(self, key: str, data: bytes) -> None:
        # Written aside and renamed, so a reader never sees half an object (as with S3); the
        # listing skips the ".upload-" files still being written.
        replace_bytes(self._path(key), data, prefix=".upload-")

    def put_file(self, key: str, path: Path) -> None:
        replace_copy(self._path(key), Path(path), prefix=".upload-")

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


@dataclass
class S3ObjectStore(ObjectStore):
    """An S3 bucket, on AWS or any S3-compatible server such as MinIO (``endpoint_url``).

    Without keys boto3's own chain applies (environment, profile, instance role).
    """

    bucket: str
    endpoint_url: str | None = None
    region_name: str = "us-east-1"
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = field(default=None, repr=False)
    _client: object = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Found now, before the caller spends anything (a load test, reading files), and said
        # plainly: botocore would raise NoCredentialsError at the first request.
        if self.aws_access_key_id is None:
            self._check_credentials()

    def _check_credentials(self) -> None:
        import boto3
        from botocore.exceptions import PartialCredentialsError

        # boto3.client() below uses this default session, which keeps what it resolves.
        if boto3.DEFAULT_SESSION is None:
            boto3.setup_default_session()
        try:
            found = boto3.DEFAULT_SESSION.get_credentials()
        except PartialCredentialsError as exc:
            raise StoreCredentialsError(
                f"incomplete S3 credentials for {self.description}: {exc}"
            ) from None
        if found is None:
            raise StoreCredentialsError(
                f"no S3 credentials for {self.description}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or use an instance role)"
            )

    @property
    def description(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"s3://{self.bucket}{where}"

    @property
    def client(self):
        if self._client is None:
            import boto3  # boto3 costs ~0.3 s to import; only S3 users pay it

            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=self.region_name,
                aws_access_key_id=self.aws_access_key_id,
                aws_secret_access_key=self.aws_secret_access_key,
            )
        return self._client

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self._listed(Prefix=prefix)

    def list_after(self, prefix: str, start_after: str) -> Iterator[ObjectInfo]:
        return self._listed(Prefix=prefix, StartAfter=start_after)

    def _listed(self, **params: str) -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, **params):
            for obj in page.get("Contents", []):
                yield ObjectInfo(
                    obj["Key"],
                    obj["Size"],
                    obj["ETag"].strip('"'),
                    obj["LastModified"].timestamp(),
                )

    def list_folders(self, prefix: str) -> list[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        folders = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
            folders += [
                p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", [])
            ]
        return sorted(folders)

    def head(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import ClientError

        try:
            obj = self.client.head_object(Bucket=self.bucket, Key=check_key(key))
        except ClientError as exc:
            if exc.response["Error"]["Code"] in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise
        return ObjectInfo(
            key, obj["ContentLength"], obj["ETag"].strip('"'), obj["LastModified"].timestamp()
        )

    def get_bytes(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=check_key(key))["Body"].read()

    @contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        # A spooled local copy gives a seekable, buffered stream with bounded memory, and
        # download_fileobj retries and parallelises ranges for large objects.
        with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as spool:
            self.client.download_fileobj(self.bucket, check_key(key), spool)
            spool.seek(0)
            yield spool  # type: ignore[misc]

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=check_key(key), Body=data)

    def put_file(self, key: str, path: Path) -> None:
        self.client.upload_file(str(path), self.bucket, check_key(key))

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=check_key(key))


def object_store_from_settings(settings: Settings) -> ObjectStore:
    """The configured store: the local folder, or the S3 bucket with boto3's credentials."""
    if settings.store == "local":
        return LocalObjectStore(root=str(settings.local_store_root))
    return S3ObjectStore(
        bucket=settings.bucket,
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
    )
