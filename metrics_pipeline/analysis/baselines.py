"""Baselines: which runs a candidate is compared with, and the version-controlled reference
values per combination (suite x scenario x environment x endpoint x metric).

The YAML file (default ``config/baselines/load-test-baselines.yaml``) is reviewed like code:
``metrics-pipeline baseline update`` proposes new values from the warehouse, ``diff`` shows
what would change, and the runs an entry was computed from become the pinned baseline of its
combination. Without a file entry the baseline is dynamic: a rolling window of accepted runs.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from metrics_pipeline.common.errors import MetricsPipelineError, describe
from metrics_pipeline.settings import DEFAULT_BASELINES

BASELINE_RUNS = 5
# Per-run summary columns a baseline is kept for.
METRICS = ("latency_p50", "latency_p95", "latency_p99", "error_rate", "throughput_rps")
IQR_FENCE = 1.5
DEFAULT_PARTS = Path(DEFAULT_BASELINES).parts


class BaselineEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    suite: str
    scenario: str
    environment: str
    endpoint: str
    metric: str
    value: float
    runs: list[str] = Field(min_length=1)
    updated_at: datetime

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.suite, self.scenario, self.environment, self.endpoint, self.metric)


class BaselineFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    baselines: list[BaselineEntry] = Field(default_factory=list)


class BaselineFileError(MetricsPipelineError, ValueError):
    """A baseline file that breaks the schema (the message names the entry and the field), or
    one that must exist and is missing."""


def must_exist(path: Path) -> bool:
    """Whether a missing baseline file at ``path`` is an error rather than "nothing pinned".

    Only the default location (``config/baselines/load-test-baselines.yaml`` of the project,
    see :data:`~metrics_pipeline.settings.DEFAULT_BASELINES`) may be absent: a project that has
    pinned nothing yet. A file configured anywhere else was meant to be there, and reading it
    as empty would unpin its runs (retention then deleted them).
    """
    return Path(path).parts[-len(DEFAULT_PARTS) :] != DEFAULT_PARTS


def load_baselines(path: Path, *, required: bool = False) -> list[BaselineEntry]:
    """The entries of the baseline file at ``path``; none when it is absent, unless
    ``required`` (then a missing file raises :class:`BaselineFileError`)."""
    if not path.exists():
        if required:
            raise BaselineFileError(
                f"{path}: baseline file not found (set METRICS_BASELINES to the file; a "
                "relative path is taken under METRICS_PROJECT_DIR, by default the checkout)"
            )
        return []
    try:
        document = yaml.safe_load(path.read_text()) or {}
        return BaselineFile.model_validate(document).baselines
    except yaml.YAMLError as exc:
        raise BaselineFileError(f"{path}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        raise BaselineFileError(f"{path}: {describe(exc)}") from None


def save_baselines(path: Path, entries: list[BaselineEntry]) -> None:
    """Write entries sorted by key, so that diffs in review show only real changes."""
    document = BaselineFile(baselines=sorted(entries, key=lambda e: e.key))
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Load-test baselines: edit through `metrics-pipeline baseline update` and review.\n"
    body = yaml.safe_dump(document.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    path.write_text(header + body)


def iqr_inliers(values: np.ndarray, fence: float = IQR_FENCE) -> np.ndarray:
    """Mask of values inside Tukey's fences [Q1 - 1.5 IQR, Q3 + 1.5 IQR].

    With fewer than four values quartiles mean little: everything is kept.
    """
    values = np.asarray(values, dtype=float)
    if len(values) < 4:
        return np.ones(len(values), dtype=bool)
    q1, q3 = np.percentile(values, [25, 75])
    spread = fence * (q3 - q1)
    return (values >= q1 - spread) & (values <= q3 + spread)


def accepted_runs(runs: pl.DataFrame, regressed: set[str]) -> pl.DataFrame:
    """Valid runs not judged a regression, oldest first."""
    return runs.filter(pl.col("valid") & ~pl.col("run_id").is_in(sorted(regressed))).sort(
        "started_at", "run_id"
    )


def stale_judgements(
    runs: pl.DataFrame, run_baselines: pl.DataFrame, unsettled: Collection[str] = ()
) -> pl.DataFrame:
    r"""The runs judged against a baseline run that was ingested again since, or that left the
    catalog: one row per such (``run_id``, ``baseline_run_id``), with ``judged_against`` (the
    baseline run's ingest its verdicts read) and ``ingested_at`` (its ingest now; null: gone).

    A row is stale when :math:`t_\text{judged} \ne t_\text{now}`, the baseline run's
    ``runs.ingested_at`` recorded in ``run_baselines`` against the catalog's. A re-upload
    replaces the baseline run's rows whole, so its verdicts compared the candidate with rows
    that no longer exist (and that may have been why the baseline run was uploaded again).

    Left out: rows that recorded no ingest (chosen by a version of the pipeline that did not
    record it), and runs in ``unsettled`` on either side (an ingest still being validated:
    whether that run is a baseline at all is not known yet).
    """
    current = runs.select(
        baseline_run_id="run_id", ingested_at="ingested_at", _present=pl.lit(True)
    )
    unsettled = sorted(unsettled)
    return (
        run_baselines.filter(
            pl.col("baseline_ingested_at").is_not_null()
            & ~pl.col("run_id").is_in(unsettled)
            & ~pl.col("baseline_run_id").is_in(unsettled)
        )
        .join(current, on="baseline_run_id", how="left")
        .filter(
            pl.col("_present").is_null()
            | (pl.col("ingested_at") != pl.col("baseline_ingested_at")).fill_null(True)
        )
        .select(
            "run_id",
            "baseline_run_id",
            judged_against="baseline_ingested_at",
            ingested_at="ingested_at",
        )
        .sort("run_id", "baseline_run_id")
    )


def run_scores(summaries: pl.DataFrame) -> dict[str, float]:
    """One number per run for spotting outlier runs: the median over endpoints of the run's
    p50 latency relative to that endpoint's median across the given runs."""
    if summaries.height == 0:
        return {}
    relative = summaries.filter(pl.col("latency_p50").is_not_null()).with_columns(
        ratio=pl.col("latency_p50") / pl.col("latency_p50").median().over("endpoint")
    )
    scores = relative.group_by("run_id").agg(pl.col("ratio").median())
    return dict(zip(scores["run_id"], scores["ratio"], strict=True))


def dynamic_baseline(
    previous: pl.DataFrame, summaries: pl.DataFrame, n: int = BASELINE_RUNS
) -> list[str]:
    """The last ``n`` of ``previous`` (accepted runs of the combination, oldest first) after
    leaving out outlier runs by the IQR rule on their scores, looked at over the last 2n runs."""
    window = previous.tail(2 * n)["run_id"].to_list()
    scores = run_scores(summaries.filter(pl.col("run_id").is_in(window)))
    scored = [run for run in window if run in scores]
    keep = iqr_inliers(np.array([scores[run] for run in scored]))
    outliers = {run for run, ok in zip(scored, keep, strict=True) if not ok}
    return [run for run in window if run not in outliers][-n:]


def compute_baselines(
    runs: pl.DataFrame,
    summaries: pl.DataFrame,
    regressed: set[str],
    *,
    n: int = BASELINE_RUNS,
    now: datetime | None = None,
) -> list[BaselineEntry]:
    """Reference values for every combination with accepted runs: the median of the per-run
    values over its dynamic baseline window, leaving out outlier values (IQR rule)."""
    now = now or datetime.now(UTC)
    entries = []
    accepted = accepted_runs(runs, regressed)
    for (suite, scenario, environment), group in accepted.group_by(
        ["suite", "scenario", "environment"], maintain_order=True
    ):
        chosen = dynamic_baseline(group, summaries, n)
        window = summaries.filter(pl.col("run_id").is_in(chosen))
        for (endpoint,), rows in window.group_by(["endpoint"], maintain_order=True):
            for metric in METRICS:
                values = rows.filter(pl.col(metric).is_not_null())
                if values.height == 0:
                    continue
                array = values[metric].to_numpy()
                entries.append(
                    BaselineEntry(
                        suite=suite,
                        scenario=scenario,
                        environment=environment,
                        endpoint=endpoint,
                        metric=metric,
                        value=float(np.median(array[iqr_inliers(array)])),
                        runs=sorted(values["run_id"].to_list()),
                        updated_at=now,
                    )
                )
    return sorted(entries, key=lambda e: e.key)


def pinned_runs(
    entries: list[BaselineEntry], suite: str, scenario: str, environment: str
) -> list[str]:
    """The runs the file's entries of a combination were computed from (empty: none pinned)."""
    return sorted(
        {
            run
            for entry in entries
            if (entry.suite, entry.scenario, entry.environment) == (suite, scenario, environment)
            for run in entry.runs
        }
    )


def kept_dates(old: list[BaselineEntry], new: list[BaselineEntry]) -> list[BaselineEntry]:
    """``new``, each entry whose value and runs did not change keeping its ``updated_at`` from
    ``old``: the file is reviewed as a diff, and an update that changes nothing changes no
    line."""
    before = {entry.key: entry for entry in old}
    return [
        entry.model_copy(update={"updated_at": before[entry.key].updated_at})
        if entry.key in before
        and (before[entry.key].value, before[entry.key].runs) == (entry.value, entry.runs)
        else entry
        for entry in new
    ]


def diff_baselines(old: list[BaselineEntry], new: list[BaselineEntry]) -> list[dict]:
    """Entries added, removed or changed in value or runs between two baseline sets."""
    before = {e.key: e for e in old}
    after = {e.key: e for e in new}
    changes = []
    for key in sorted(before.keys() | after.keys()):
        a, b = before.get(key), after.get(key)
        if a and b and a.value == b.value and a.runs == b.runs:
            continue
        change = (b.value / a.value - 1) if a and b and a.value else None
        changes.append(
            {
                "key": " / ".join(key),
                "old": a.value if a else None,
                "new": b.value if b else None,
                "change": change,
                "status": "added" if a is None else "removed" if b is None else "changed",
            }
        )
    return changes
