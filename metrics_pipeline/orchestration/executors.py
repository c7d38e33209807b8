"""Which executor runs the steps of the pipeline's jobs: one process, a process per step, or
Celery workers on any number of machines.

``METRICS_EXECUTOR`` picks it for every job; unset, each job keeps its own default (a chain of
steps runs in one process, a fan-out in a process per step). The composition root passes its
settings when the code location loads, so the webserver, the daemon, the run workers and the
Celery workers, which all load the same code with the same environment, agree on it.
"""

from __future__ import annotations

import dagster as dg

from metrics_pipeline.settings import Settings


def executor_for(settings: Settings, default: dg.ExecutorDefinition) -> dg.ExecutorDefinition:
    """The executor the settings ask for, else the job's ``default``."""
    if settings.executor is None:
        return default
    if settings.executor == "in_process":
        return dg.in_process_executor
    if settings.executor == "multiprocess":
        return dg.multiprocess_executor
    # Imported only when asked for: Celery and its broker client are not needed otherwise.
    from dagster_celery import celery_executor

    # The workers must be started with the same broker and backend (deploy/celery.yaml).
    return celery_executor.configured(
        {"broker": settings.celery_broker, "backend": settings.celery_backend}, name="celery"
    )
