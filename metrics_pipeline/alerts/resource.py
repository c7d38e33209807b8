"""The alerting resource: where the KPI catalog and the alerting config live."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import dagster as dg

from metrics_pipeline.alerts.catalog import KpiCatalog, load_catalog
from metrics_pipeline.alerts.config import AlertingConfig, load_alerting
from metrics_pipeline.alerts.delivery import Sender, build_senders
from metrics_pipeline.alerts.lifecycle import Signals
from metrics_pipeline.alerts.service import Outcome, process
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

    def apply(
        self,
        store,
        signals_for: Callable[[AlertingConfig, datetime], Signals],
        now: datetime,
    ) -> Outcome:
        """Load the config, build the signals from it and ``now``, then update the alerts and
        deliver what is due (``service.process``)."""
        config = self.config()
        return process(store, config, signals_for(config, now), now, self.senders(config))

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertingResource:
        return cls(
            catalog_path=str(settings.kpi_catalog), config_path=str(settings.alerting_config)
        )
