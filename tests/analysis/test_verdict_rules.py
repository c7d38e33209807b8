"""The verdict rules file: overrides of the built-in thresholds per suite, scenario,
environment and metric."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from metrics_pipeline.analysis.verdict_rules import VerdictRules, load_verdict_rules
from metrics_pipeline.analysis.verdicts import DEFAULT_RULES, VerdictPolicy, judge_run
from metrics_pipeline.common.config import ConfigError
from metrics_pipeline.settings import shipped_path
from tests.analysis.test_verdicts import scaled_run

RULES = """
version: 1
rules:
  - description: quiet machines
    scope: {environments: [lab]}
    run_noise: 0.03
  - scope: {suites: [checkout], environments: [lab]}
    metrics: [latency_p99, mem_pct]
    threshold: 0.5
"""


def rules_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "verdicts.yaml"
    path.write_text(text)
    return path


def test_rules_apply_in_order_to_the_runs_and_metrics_they_select(tmp_path):
    rules = load_verdict_rules(rules_file(tmp_path, RULES))
    lab = rules.policy("checkout", "buy", "lab")
    assert lab.rule("latency_p50").run_noise == 0.03
    assert lab.rule("latency_p50").threshold == 0.20
    assert lab.rule("latency_p99").threshold == 0.5 and lab.rule("latency_p99").run_noise == 0.03
    # A metric without a built-in rule of its own starts from the resource rule.
    assert lab.rule("mem_pct").threshold == 0.5 and lab.rule("cpu_pct").threshold == 0.20
    # Floors the file does not touch stay.
    assert lab.rule("latency_p99").min_effect == DEFAULT_RULES["latency_p99"].min_effect
    assert rules.policy("search", "buy", "lab").rule("latency_p99").threshold == 0.20
    assert rules.policy("checkout", "buy", "ci") == VerdictPolicy()


def test_the_shipped_file_and_a_missing_one_are_the_built_in_defaults(tmp_path):
    assert load_verdict_rules(shipped_path("config/verdicts.yaml")) == VerdictRules()
    assert load_verdict_rules(tmp_path / "absent.yaml").policy("s", "x", "e") == VerdictPolicy()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("rules: [{metrics: [latency_p42], threshold: 0.3}]", "unknown metric ['latency_p42']"),
        ("rules: [{scope: {endpoints: ['/a']}, threshold: 0.3}]", "a scope names no endpoints"),
        ("rules: [{alpha: 1.5}]", "alpha"),
        ("rules: [{threshold: -0.1}]", "threshold"),
        ("rules: [{treshold: 0.3}]", "treshold"),
    ],
)
def test_a_broken_rule_names_the_file_and_the_field(tmp_path, text, words):
    path = rules_file(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_verdict_rules(path)
    assert str(path) in str(error.value) and words in str(error.value)


def test_a_suite_that_declares_its_machines_quiet_gets_its_regression_found(tmp_path):
    # One baseline run: the prior run noise decides. At 10 % a 35 % slower median is within
    # what two runs may differ by; a suite whose runs vary by 3 % gets it flagged.
    base, cand = scaled_run("b", 1.0, seed=1), scaled_run("c", 1.35, seed=2)
    rules = load_verdict_rules(rules_file(tmp_path, RULES))

    def p50(policy: VerdictPolicy) -> dict:
        verdicts = judge_run(cand, base, ["b"], policy)
        return verdicts.filter(pl.col("metric") == "latency_p50").row(0, named=True)

    assert p50(rules.policy("checkout", "buy", "ci"))["verdict"] == "ok"
    quiet = p50(rules.policy("checkout", "buy", "lab"))
    assert quiet["verdict"] == "regression" and quiet["noise"].startswith("prior 3%")


def test_a_run_noise_for_every_metric_leaves_the_error_rates_own(tmp_path):
    # The error rate moves by a third between identical runs on any machine: a quiet lab's
    # 3 % (an entry without `metrics`, or --run-noise) is the latencies' spread, not its.
    lab = load_verdict_rules(rules_file(tmp_path, RULES)).policy("checkout", "buy", "lab")
    assert lab.rule("latency_p50").run_noise == 0.03
    assert lab.rule("error_rate").run_noise == DEFAULT_RULES["error_rate"].run_noise == 0.30
    overridden = VerdictPolicy().overridden(run_noise=0.05, threshold=0.3)
    assert overridden.rule("error_rate").run_noise == 0.30
    assert overridden.rule("error_rate").threshold == overridden.rule("throughput").threshold
    assert overridden.rule("throughput").run_noise == 0.05
    named = RULES + "  - metrics: [error_rate]\n    run_noise: 0.5\n"
    assert (
        load_verdict_rules(rules_file(tmp_path, named))
        .policy("a", "b", "c")
        .rule("error_rate")
        .run_noise
        == 0.5
    )
