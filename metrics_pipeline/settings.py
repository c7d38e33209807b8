"""Every environment decision in one place. Nothing else reads os.environ."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from metrics_pipeline.common.clock import Clock, clock_at, parse_instant

DEFAULT_BUCKET = "loadtests"
# The Postgres schema of the warehouse's tables (a rebuild builds beside it, in one of its own).
DEFAULT_POSTGRES_SCHEMA = "metrics"

# In a checkout, its root; in an installed wheel, site-packages (whose copy of the shipped files
# is the package's ``shipped/`` folder, see pyproject's force-include).
CHECKOUT = Path(__file__).resolve().parents[1]
SHIPPED = Path(__file__).resolve().parent / "shipped"


def shipped_path(relative: str) -> Path:
    """A file or folder the project ships (``config/kpis.yaml``, ``dbt_like_sql``): the
    checkout's, else the installed wheel's copy."""
    checkout = CHECKOUT / relative
    return checkout if checkout.exists() else SHIPPED / relative


# Where the baseline file is unless METRICS_BASELINES says otherwise, relative to the project.
DEFAULT_BASELINES = "config/baselines/load-test-baselines.yaml"


def default_project_dir() -> Path:
    """The folder a relative ``METRICS_BASELINES`` (and its default) is resolved against when
    ``METRICS_PROJECT_DIR`` is unset: the checkout the pipeline runs from (the folder of
    ``pyproject.toml``: ``make``'s, the Docker image's ``/app``, the folder ``workspace.yaml``
    runs the Dagster code in), else, installed as a wheel, the working folder."""
    # Not the working folder: a command run from another folder then read another (usually
    # missing) file than the nightly job did, and retention deleted the runs the real one pins.
    return CHECKOUT if (CHECKOUT / "pyproject.toml").is_file() else Path.cwd()


def project_path(project_dir: Path, value: str) -> Path:
    """``value`` as an absolute path: as given when absolute (``~`` expanded), else under
    ``project_dir``."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else project_dir / path


def _config_error(message: str) -> Exception:
    """A ``ConfigError`` (a ``ValueError`` the commands report in one line, exit 2); imported
    here because it brings yaml and pydantic, which reading the settings does not need."""
    from metrics_pipeline.common.config import ConfigError

    return ConfigError(message)


def _config_file(env: dict[str, str], variable: str, relative: str) -> Path:
    """The variable's path, which must exist (a gate must not fall back to the built-in
    rules because of a typo); unset: ``relative`` in the working folder if it exists there (a
    project's own config), else the shipped default."""
    if env.get(variable):
        path = Path(env[variable]).absolute()
        if not path.is_file():
            raise _config_error(f"{variable}={env[variable]}: no such file")
        return path
    here = Path(relative).absolute()
    return here if here.exists() else shipped_path(relative)


DEFAULT_CELERY_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class Settings:
    """Where things live.

    ``METRICS_HOME``            root of everything local (default ``./.metrics_home``)
    ``METRICS_STORE``           ``local`` (a folder under METRICS_HOME, the default) or ``s3``
    ``METRICS_BUCKET``          bucket name (default ``loadtests``), also the local folder's name
    ``METRICS_S3_ENDPOINT_URL`` S3-compatible endpoint, e.g. MinIO's ``http://minio:9000``
    ``METRICS_S3_REGION``       region for the S3 client (default ``us-east-1``)
    ``METRICS_POSTGRES_URL``    Postgres warehouse (optional)
    ``METRICS_WAREHOUSE``       where the Parquet warehouse lives: a folder (default
                                ``METRICS_HOME/warehouse``) or ``s3://bucket/prefix`` in the
                                S3 store of ``METRICS_S3_ENDPOINT_URL`` (shared by hosts)
    ``METRICS_BASELINES``       the version-controlled baseline file (default
                                ``config/baselines/load-test-baselines.yaml``); a relative path
                                is taken under METRICS_PROJECT_DIR, never the working folder
    ``METRICS_PROJECT_DIR``     the project folder relative ``METRICS_BASELINES`` paths are under
                                (default: the checkout of ``pyproject.toml``; installed as a
                                wheel, the working folder), see :func:`default_project_dir`
    ``METRICS_NIGHTLY_CRON``    when the nightly analyses run (default ``0 3 * * *``)
    ``METRICS_WEEKLY_CRON``     when the weekly ones run (default ``0 5 * * 1``, Mondays)
    ``METRICS_TIMEZONE``        the schedules' time zone (default ``UTC``)
    ``METRICS_KPI_CATALOG``     the KPI / SLA catalog (default ``config/kpis.yaml``: the
                                working folder's, else the shipped one)
    ``METRICS_ALERTING``        alert channels, routes and expected runs
                                (default ``config/alerting.yaml``, found the same way)
    ``METRICS_VERDICT_RULES``   threshold, alpha and run noise per suite and metric
                                (default ``config/verdicts.yaml``, found the same way)
    ``METRICS_EXECUTOR``        ``in_process``, ``multiprocess`` or ``celery`` for every job
                                (default: each job's own, see executors.py)
    ``METRICS_CELERY_BROKER``   Celery broker URL (default ``redis://127.0.0.1:6379/0``)
    ``METRICS_CELERY_BACKEND``  Celery result backend URL (default ``redis://127.0.0.1:6379/0``)
    ``METRICS_NOW``             freeze the pipeline's clock at this ISO 8601 instant (replaying a
                                past day; tests); unset: the system clock
    S3 credentials come from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (boto3's chain).
    """

    home: Path
    store: str = "local"
    bucket: str = DEFAULT_BUCKET
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    postgres_url: str | None = None
    postgres_schema: str = DEFAULT_POSTGRES_SCHEMA
    baselines_file: Path = field(default_factory=lambda: default_project_dir() / DEFAULT_BASELINES)
    project_dir: Path = field(default_factory=default_project_dir)
    nightly_cron: str = "0 3 * * *"
    weekly_cron: str = "0 5 * * 1"
    timezone: str = "UTC"
    kpi_catalog: Path = Path("config/kpis.yaml")
    alerting_config: Path = Path("config/alerting.yaml")
    verdict_rules: Path = Path("config/verdicts.yaml")
    executor: str | None = None
    celery_broker: str = DEFAULT_CELERY_URL
    celery_backend: str = DEFAULT_CELERY_URL
    now: datetime | None = None

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        store = env.get("METRICS_STORE", "local").lower()
        if store not in {"local", "s3"}:
            raise _config_error(f"METRICS_STORE must be 'local' or 's3', not {store!r}")
        warehouse = env.get("METRICS_WAREHOUSE") or None
        if warehouse and "://" in warehouse and not warehouse.startswith("s3://"):
            raise _config_error(
                f"METRICS_WAREHOUSE must be a folder or s3://bucket/prefix, not {warehouse!r}"
            )
        executor = env.get("METRICS_EXECUTOR", "").lower() or None
        if executor not in {None, "in_process", "multiprocess", "celery"}:
            raise _config_error(
                "METRICS_EXECUTOR must be 'in_process', 'multiprocess' or 'celery', "
                f"not {executor!r}"
            )
        project_dir = (
            Path(env["METRICS_PROJECT_DIR"]).expanduser().absolute()
            if env.get("METRICS_PROJECT_DIR")
            else default_project_dir()
        )
        return cls(
            home=Path(env.get("METRICS_HOME", ".metrics_home")).absolute(),
            store=store,
            bucket=env.get("METRICS_BUCKET", DEFAULT_BUCKET),
            s3_endpoint_url=env.get("METRICS_S3_ENDPOINT_URL") or None,
            s3_region=env.get("METRICS_S3_REGION", "us-east-1"),
            postgres_url=env.get("METRICS_POSTGRES_URL") or None,
            warehouse_url=warehouse,
            baselines_file=project_path(
                project_dir, env.get("METRICS_BASELINES") or DEFAULT_BASELINES
            ),
            project_dir=project_dir,
            nightly_cron=env.get("METRICS_NIGHTLY_CRON", "0 3 * * *"),
            weekly_cron=env.get("METRICS_WEEKLY_CRON", "0 5 * * 1"),
            timezone=env.get("METRICS_TIMEZONE", "UTC"),
            kpi_catalog=_config_file(env, "METRICS_KPI_CATALOG", "config/kpis.yaml"),
            alerting_config=_config_file(env, "METRICS_ALERTING", "config/alerting.yaml"),
            verdict_rules=_config_file(env, "METRICS_VERDICT_RULES", "config/verdicts.yaml"),
            executor=executor,
            celery_broker=env.get("METRICS_CELERY_BROKER") or DEFAULT_CELERY_URL,
            celery_backend=env.get("METRICS_CELERY_BACKEND") or DEFAULT_CELERY_URL,
            now=parse_instant(env["METRICS_NOW"]) if env.get("METRICS_NOW") else None,
        )

    @property
    def clock(self) -> Clock:
        """What the pipeline takes as now: ``now`` when set, else the system clock."""
        return clock_at(self.now)

    @property
    def local_store_root(self) -> Path:
        return self.home / "objects" / self.bucket

    # Another folder for the warehouse than METRICS_HOME/warehouse (``rebuild`` builds aside).
    warehouse_dir: Path | None = None
    warehouse_url: str | None = None

    @property
    def warehouse_root(self) -> Path:
        """The warehouse's local folder: the warehouse itself, or with an ``s3://``
        ``warehouse_url`` the staging files, locks and DuckDB catalog of this host."""
        if self.warehouse_dir is None and self.warehouse_url and "://" not in self.warehouse_url:
            return Path(self.warehouse_url).absolute()
        return self.warehouse_dir or self.home / "warehouse"

    @property
    def warehouse_location(self) -> str:
        """Where the warehouse's Parquet files are: ``s3://...`` or a local folder."""
        if self.warehouse_dir is None and self.warehouse_url and "://" in self.warehouse_url:
            return self.warehouse_url
        return str(self.warehouse_root)

    @property
    def dagster_home(self) -> Path:
        """The Dagster instance of the embedded default (SQLite storage)."""
        return self.home / "dagster"

    # Another folder for the reports than METRICS_HOME/reports (``rebuild`` writes aside).
    reports_dir: Path | None = None

    @property
    def reports_root(self) -> Path:
        return self.reports_dir or self.home / "reports"

    @staticmethod
    def has_aws_credentials() -> bool:
        return bool(os.environ.get("AWS_ACCESS_KEY_ID"))

    @staticmethod
    def secret(name: str) -> str | None:
        """A secret the alerting config references as ``${name}`` (webhook URLs, passwords),
        read when a notification is sent so it is never stored."""
        return os.environ.get(name) or None
