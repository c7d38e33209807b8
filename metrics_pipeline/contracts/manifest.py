"""The run manifest (``run.json``): who ran what, where and when."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    ValidationError,
    model_validator,
)

from metrics_pipeline.common.clock import as_utc
from metrics_pipeline.common.errors import MetricsPipelineError, describe

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")
# Suites name a folder of the bucket just like run ids do, so they follow the same rule.
CLOCK_SKEW = timedelta(minutes=5)
NAME_RULE = "1-128 characters from A-Z a-z 0-9 . _ - and not '.' or '..'"
# The tag `metrics-pipeline run` sets to the load-test command's exit code.
EXIT_CODE_TAG = "exit_code"


class ManifestError(MetricsPipelineError, ValueError):
    """A run manifest that breaks the contract; the message names the field and the rule."""


def check_name(value: str, what: str = "run_id") -> str:
    """Return ``value`` if it is a safe path segment (run id, suite), else raise ValueError."""
    if not RUN_ID_PATTERN.fullmatch(value) or value in {".", ".."}:
        raise ValueError(f"{what} {value!r} is not allowed: use {NAME_RULE}")
    return value


def default_run_id(suite: str, started_at: datetime, distinct: str) -> str:
    """``<suite>-<start, UTC, to the second>-<8 hex digits>``: the run id when none is given.

    The digits are a digest of ``distinct``, which tells this run apart from others of the suite
    started in the same second (e.g. the scenario and the files' names and sizes: uploading the
    same files again gives the same id and replaces the run). The suite is cut so that the id
    keeps within the 128 characters of ``NAME_RULE``.
    """
    digest = hashlib.sha256(distinct.encode()).hexdigest()[:8]
    stamp = f"{as_utc(started_at):%Y%m%dT%H%M%S}-{digest}"
    return f"{suite[: 128 - len(stamp) - 1]}-{stamp}"


SafeName = Annotated[str, AfterValidator(check_name)]
UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]


class LoadProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vus: NonNegativeInt | None = None
    target_rps: NonNegativeFloat | None = None
    duration_s: NonNegativeFloat | None = None


class UploadedFile(BaseModel):
    """One result file of an upload, as the uploader wrote it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=1024)  # the key below raw/<suite>/<run_id>/
    size: NonNegativeInt


class RunManifest(BaseModel):
    """``run.json``: who ran what, where and when. Written last by the uploader."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: SafeName
    suite: Annotated[str, AfterValidator(lambda v: check_name(v, "suite"))]
    scenario: str = Field(min_length=1, max_length=256)
    environment: str = Field(min_length=1, max_length=256)
    started_at: UtcDatetime
    finished_at: UtcDatetime | None = None
    tool: str = Field(default="custom", min_length=1, max_length=64)
    service_version: str | None = None
    git_sha: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    load_profile: LoadProfile = Field(default_factory=LoadProfile)
    # A run id, or "auto" (the default when absent).
    baseline: (
        Annotated[str, AfterValidator(lambda v: v if v == "auto" else check_name(v))] | None
    ) = None
    # Written by the uploader: exactly the files of this upload (objects left under the prefix
    # by an earlier upload are not part of the run), and who uploaded it. Hand-written
    # manifests may omit both: every result file under the prefix is then the run.
    files: tuple[UploadedFile, ...] | None = None
    uploaded_by: str | None = Field(default=None, max_length=256)

    @model_validator(mode="after")
    def _ends_after_it_starts(self) -> RunManifest:
        # Otherwise the run's window is empty and every request is "outside" it.
        if self.finished_at is not None and self.finished_at < self.started_at:
            raise ValueError(
                f"finished_at ({self.finished_at.isoformat()}) is before started_at "
                f"({self.started_at.isoformat()})"
            )
        return self

    @classmethod
    def parse(cls, raw: bytes | str | dict[str, Any], source: str = "run.json") -> RunManifest:
        """Validate a manifest; raise ManifestError naming ``source``, the field and the rule."""
        try:
            if isinstance(raw, dict):
                return cls.model_validate(raw)
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            raise ManifestError(f"invalid manifest {source}: {describe(exc)}") from None

    def window(self, skew: timedelta = CLOCK_SKEW) -> tuple[datetime, datetime | None]:
        """When the run's data may be timestamped: its start to its end (``finished_at``, else
        start + ``load_profile.duration_s``; open when neither is known), widened by ``skew``
        for clocks of load generators that disagree with the uploader's."""
        end = self.finished_at
        if end is None and self.load_profile.duration_s is not None:
            end = self.started_at + timedelta(seconds=self.load_profile.duration_s)
        return self.started_at - skew, None if end is None else end + skew

    def described(self) -> dict[str, Any]:
        """The fields its source sets (a folder's ``run.json``), as values ``parse`` takes,
        without those the uploader writes about an upload (``files``, ``uploaded_by``): what
        an upload of the folder keeps unless an option replaces it."""
        return self.model_dump(exclude_unset=True, exclude={"files", "uploaded_by"})

    @property
    def combination(self) -> tuple[str, str, str]:
        return (self.suite, self.scenario, self.environment)

    def to_row(self) -> dict[str, Any]:
        """One row of the ``runs`` catalog table."""
        return {
            "run_id": self.run_id,
            "suite": self.suite,
            "scenario": self.scenario,
            "environment": self.environment,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "tool": self.tool,
            "service_version": self.service_version,
            "git_sha": self.git_sha,
            "baseline": self.baseline,
        }
