"""What the catalog and the alerting configuration share: durations, and YAML documents
validated into one message that names the file, the entry and the field."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ValidationError

from metrics_pipeline.common.errors import MetricsPipelineError, describe

M = TypeVar("M", bound=BaseModel)

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class ConfigError(MetricsPipelineError, ValueError):
    """A configuration file that breaks its schema; the message names the entry and field."""


def parse_duration(value: Any) -> timedelta:
    """``"90s"``, ``"15m"``, ``"6h"``, ``"7d"``, ``"2w"`` (or a timedelta) as a timedelta."""
    if isinstance(value, timedelta):
        return value
    match = _DURATION.fullmatch(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration: use a number and s, m, h, d or w (6h)")
    duration = timedelta(**{_UNITS[match[2]]: float(match[1])})
    if duration <= timedelta(0):
        raise ValueError(f"{value!r} must be longer than zero")
    return duration


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def load_yaml_model(model: type[M], path: Path, what: str) -> M:
    """Validate the YAML document at ``path`` as ``model``; errors name entry and field."""
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path}: not valid YAML: {exc}") from None
    return validate_model(model, document, f"{what} {path}")


def validate_model(model: type[M], document: Any, source: str) -> M:
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe(exc)}") from None
