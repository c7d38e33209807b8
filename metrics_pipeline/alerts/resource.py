"""The alerting resource: where the KPI catalog and the alerting config live."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from metrics_pipeline.alerts.catalog import KpiCatalog, load_catalog
from metrics_pipeline.alerts.config import AlertingConfig, load_alerting
from metrics_pipeline.alerts.delivery import Sender, build_senders
from metrics_pipeline.settings import Settings


class AlertingResource(dg.ConfigurableResource):
    """Paths only: secrets referenced by the config are looked up when sending."""

    catalog_path: str
    config_path: str

    def catalog(self) -> KpiCatalog:
        return load_catalog(Path(self.catalog_path))

    def config(self) -> AlertingConfig:
        return load_alerting(Path(self.config_path))

    def senders(self, config: AlertingConfig) -> dict[str, Sender]:
        return build_senders(config, Settings.secret)

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertingResource:
        return cls(
            catalog_path=str(settings.kpi_catalog), config_path=str(settings.alerting_config)
        )
