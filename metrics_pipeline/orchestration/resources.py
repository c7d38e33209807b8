"""Dagster resources: thin configurable wrappers around the library's plain classes.

Each holds only configuration (paths, URLs, names) so Dagster can show it and ship it to other
processes; ``get()`` (or a method) builds the plain object the library works with. The
library's modules are imported there, not at the top: every process that loads the code
location (webserver, daemon, code server, each run) imports this module, and most need few of
them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from metrics_pipeline.common.clock import clock_at, parse_instant
from metrics_pipeline.common.errors import MetricsPipelineError
from metrics_pipeline.settings import DEFAULT_POSTGRES_SCHEMA, Settings
from metrics_pipeline.storage.objects import LocalObjectStore, ObjectStore, S3ObjectStore

if TYPE_CHECKING:
    from metrics_pipeline.alerts.config import AlertingConfig
    from metrics_pipeline.alerts.delivery import Sender
    from metrics_pipeline.alerts.lifecycle import Signals
    from metrics_pipeline.alerts.service import Outcome
    from metrics_pipeline.analysis.baselines import BaselineEntry
    from metrics_pipeline.analysis.kpi_catalog import KpiCatalog
    from metrics_pipeline.analysis.verdict_rules import VerdictRules
    from metrics_pipeline.storage import Warehouse


class ObjectStoreResource(dg.ConfigurableResource):
    """The bucket runs are uploaded to: a local folder (``root``) or S3/MinIO (``bucket``)."""

    root: str | None = None
    bucket: str | None = None
    endpoint_url: str | None = None
    region_name: str = "us-east-1"
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None

    def get(self) -> ObjectStore:
        if self.root is not None:
            return LocalObjectStore(root=self.root)
        if not self.bucket:
            raise ValueError("ObjectStoreResource needs a root folder or a bucket")
        return S3ObjectStore(
            bucket=self.bucket,
            endpoint_url=self.endpoint_url,
            region_name=self.region_name,
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> ObjectStoreResource:
        """Credentials stay ``EnvVar``s, so the UI and the run config never show them."""
        if settings.store == "local":
            return cls(root=str(settings.local_store_root))
        credentials = {}
        if settings.has_aws_credentials():
            credentials = {
                "aws_access_key_id": dg.EnvVar("AWS_ACCESS_KEY_ID"),
                "aws_secret_access_key": dg.EnvVar("AWS_SECRET_ACCESS_KEY"),
            }
        return cls(
            bucket=settings.bucket,
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            **credentials,
        )


# Metadata of a step failure caused by what a person typed in the Launchpad (a week, an alert
# id): they see it at once in the UI, the same input fails again (not retried), and the run
# failure sensor pages nobody for it.
LAUNCHPAD_INPUT = "launchpad_input"


def launchpad_input_error(exc: Exception) -> dg.Failure:
    """The step failure for a Launchpad value that cannot be used (see ``LAUNCHPAD_INPUT``)."""
    return dg.Failure(description=str(exc), allow_retries=False, metadata={LAUNCHPAD_INPUT: True})


@contextmanager
def not_retried() -> Iterator[None]:
    """Our errors (a configuration file that is missing or breaks its schema) as a step
    failure that the jobs' retry policy does not repeat: the same file would fail again, and
    the retries' back-off only delays the report (7 s a step)."""
    try:
        yield
    except MetricsPipelineError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc


class BaselineFileResource(dg.ConfigurableResource):
    """The version-controlled baseline file (absent: every baseline is dynamic)."""

    path: str

    def entries(self) -> list[BaselineEntry]:
        from metrics_pipeline.analysis.baselines import load_baselines

        with not_retried():
            return load_baselines(Path(self.path))


class VerdictRulesResource(dg.ConfigurableResource):
    """The verdict rules file (threshold, alpha, run noise per suite and metric; absent: the
    built-in defaults)."""

    path: str

    def get(self) -> VerdictRules:
        from metrics_pipeline.analysis.verdict_rules import load_verdict_rules

        with not_retried():
            return load_verdict_rules(Path(self.path))


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse: Parquet partitions under ``root`` (a folder, or ``s3://bucket/prefix``
    with ``local`` for this host's staging files, locks and DuckDB catalog) and the catalog."""

    root: str
    local: str | None = None
    postgres_url: str | None = None
    postgres_schema: str = DEFAULT_POSTGRES_SCHEMA
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"

    def get(self) -> Warehouse:
        from metrics_pipeline.storage import warehouse_at

        return warehouse_at(
            self.root,
            self.local or self.root,
            self.postgres_url,
            endpoint_url=self.s3_endpoint_url,
            region=self.s3_region,
            postgres_schema=self.postgres_schema,
        )


class ClockResource(dg.ConfigurableResource):
    """What the assets and sensors take as now: the system clock, or an instant frozen in
    ``frozen_at`` (ISO 8601; ``METRICS_NOW``) to replay a past day or to test on fixed data."""

    frozen_at: str | None = None

    def now(self) -> datetime:
        return clock_at(parse_instant(self.frozen_at) if self.frozen_at else None)()

    @classmethod
    def from_settings(cls, settings: Settings) -> ClockResource:
        return cls(frozen_at=settings.now.isoformat() if settings.now else None)


class ReportsResource(dg.ConfigurableResource):
    """The folder the reports are written to (``METRICS_HOME/reports`` by default), and
    whether they go to the bucket too (not from a rebuild: it publishes them after its swap)."""

    root: str
    upload: bool = True

    def path(self) -> Path:
        return Path(self.root)

    def store(self, object_store: ObjectStoreResource) -> ObjectStore | None:
        """Where the reports are uploaded: the bucket, or nowhere."""
        return object_store.get() if self.upload else None


class AlertingResource(dg.ConfigurableResource):
    """Paths only: secrets referenced by the config are looked up when sending.

    ``notify`` false (a rebuild) keeps the alerts' state up to date and notifies nobody.
    """

    catalog_path: str
    config_path: str
    notify: bool = True

    def catalog(self) -> KpiCatalog:
        from metrics_pipeline.analysis.kpi_catalog import load_catalog

        with not_retried():
            return load_catalog(Path(self.catalog_path))

    def config(self) -> AlertingConfig:
        from metrics_pipeline.alerts.config import load_alerting

        with not_retried():
            return load_alerting(Path(self.config_path))

    def senders(self, config: AlertingConfig) -> dict[str, Sender]:
        from metrics_pipeline.alerts.delivery import build_senders

        return build_senders(config, Settings.secret)

    def apply(
        self,
        store,
        signals_for: Callable[[AlertingConfig, datetime], Signals],
        now: datetime,
        *,
        deliver_now: bool = True,
    ) -> Outcome:
        """Load the config, build the signals from it and ``now``, then update the alerts and
        deliver what is due (``service.process``; ``deliver_now`` false: queue only)."""
        from metrics_pipeline.alerts.service import process

        config = self.config()
        return process(
            store,
            config,
            signals_for(config, now),
            now,
            self.senders(config),
            notify=self.notify,
            deliver_now=deliver_now,
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, notify: bool = True) -> AlertingResource:
        return cls(
            catalog_path=str(settings.kpi_catalog),
            config_path=str(settings.alerting_config),
            notify=notify,
        )
