"""When a change counts, per suite, scenario, environment and metric: the verdict rules file.

One YAML file (default ``config/verdicts.yaml``, ``METRICS_VERDICT_RULES`` overrides it) lists
overrides of the built-in :class:`~metrics_pipeline.analysis.verdicts.MetricRule` defaults,
applied in file order (a later entry wins)::

    version: 1
    rules:
      - description: the perf lab's dedicated machines vary less than shared CI runners
        scope: {environments: [perf-lab]}
        run_noise: 0.04
      - description: checkout's p99 is judged on a wider threshold
        scope: {suites: [checkout]}
        metrics: [latency_p99]
        threshold: 0.30

An entry sets any of ``threshold``, ``alpha``, ``run_noise`` and ``min_effect``, for the
``metrics`` listed (default: every metric; an entry without ``metrics`` leaves the error rate's
own ``run_noise`` alone, see ``OWN_RUN_NOISE``) of the runs its ``scope`` selects (default:
every run). Rules are per run, not per endpoint: a scope names no endpoints.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from metrics_pipeline.analysis.kpi_catalog import Scope
from metrics_pipeline.analysis.verdicts import (
    DEFAULT_RULES,
    RESOURCE_METRICS,
    VerdictPolicy,
    for_every_metric,
)
from metrics_pipeline.common.config import load_yaml_model

# Every metric a rule may name: the judged ones and each resource metric on its own.
RULE_METRICS = frozenset(DEFAULT_RULES) | frozenset(RESOURCE_METRICS)


class VerdictRule(BaseModel):
    """One override; see the module docstring."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str | None = None
    scope: Scope = Scope()
    metrics: list[str] | None = None
    threshold: float | None = Field(default=None, gt=0)
    alpha: float | None = Field(default=None, gt=0, lt=1)
    run_noise: float | None = Field(default=None, ge=0, le=2)
    min_effect: float | None = Field(default=None, ge=0)

    @field_validator("scope")
    @classmethod
    def _per_run(cls, scope: Scope) -> Scope:
        if scope.endpoints is not None:
            raise ValueError("verdict rules apply to whole runs: a scope names no endpoints")
        return scope

    @field_validator("metrics")
    @classmethod
    def _known(cls, metrics: list[str] | None) -> list[str] | None:
        unknown = sorted(set(metrics or ()) - RULE_METRICS)
        if unknown:
            raise ValueError(f"unknown metric {unknown}; known: {sorted(RULE_METRICS)}")
        return metrics

    def changes(self) -> dict[str, float]:
        fields = ("threshold", "alpha", "run_noise", "min_effect")
        return {name: value for name in fields if (value := getattr(self, name)) is not None}


class VerdictRules(BaseModel):
    """The rules file: overrides in order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = 1
    rules: list[VerdictRule] = []

    def policy(self, suite: str, scenario: str, environment: str) -> VerdictPolicy:
        """The policy of one run: the built-in defaults with every matching rule applied in
        order."""
        rules = dict(VerdictPolicy().rules)
        for rule in self.rules:
            if not rule.scope.matches_run(suite, scenario, environment):
                continue
            for metric in rule.metrics or sorted(rules):
                changes = rule.changes()
                if not rule.metrics:
                    changes = for_every_metric(metric, changes)
                rules[metric] = replace(rules.get(metric) or rules["resource"], **changes)
        return VerdictPolicy(rules)


def load_verdict_rules(path: Path) -> VerdictRules:
    """The rules at ``path`` (none, i.e. the built-in defaults, when the file does not exist).

    Raises ``ConfigError`` naming the file, the entry and the field of every problem.
    """
    if not path.exists():
        return VerdictRules()
    return load_yaml_model(VerdictRules, path, "verdict rules")
