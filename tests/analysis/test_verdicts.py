"""Baseline choice and per-run verdicts on labelled synthetic data."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from metrics_pipeline.analysis.verdicts import (
    TOO_FEW,
    VerdictPolicy,
    change_words,
    choose_baseline,
    history_noise,
    judge_run,
    run_verdict,
)
from metrics_pipeline.contracts.tables import conform
from metrics_pipeline.evaluation.demo_data import demo_runs
from metrics_pipeline.formats.canonical_jsonl import request_row
from metrics_pipeline.stats import compare_runs, rate_statistic

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def runs_table(rows: list[dict]) -> pl.DataFrame:
    defaults = {"suite": "s", "scenario": "x", "environment": "e", "valid": True, "baseline": None}
    return conform("runs", pl.DataFrame([defaults | r for r in rows]))


def test_baseline_is_the_last_five_accepted_runs_of_the_same_combination():
    table = runs_table(
        [{"run_id": f"r{i}", "started_at": T0 + timedelta(days=i)} for i in range(1, 9)]
        + [
            {"run_id": "other-env", "started_at": T0, "environment": "prod"},
            {"run_id": "invalid", "started_at": T0 + timedelta(days=7, hours=1), "valid": False},
            {"run_id": "later", "started_at": T0 + timedelta(days=30)},
        ]
    )
    candidate = table.filter(pl.col("run_id") == "r8").row(0, named=True)
    assert choose_baseline(table, candidate, regressed={"r6"}) == ["r2", "r3", "r4", "r5", "r7"]
    first = table.filter(pl.col("run_id") == "r1").row(0, named=True)
    assert choose_baseline(table, first, regressed=set()) == []


def test_explicit_baseline_wins_and_unknown_one_gives_none():
    table = runs_table(
        [{"run_id": f"r{i}", "started_at": T0 + timedelta(days=i)} for i in range(3)]
    )
    candidate = table.row(2, named=True)
    assert choose_baseline(table, candidate | {"baseline": "r0"}, set()) == ["r0"]
    assert choose_baseline(table, candidate | {"baseline": "nope"}, set()) == []
    assert choose_baseline(table, candidate | {"baseline": "auto"}, set()) == ["r0", "r1"]


def requests_of(run) -> pl.DataFrame:
    rows = [request_row(r) for r in run.records]
    return conform(
        "requests",
        pl.DataFrame(rows, infer_schema_length=None).with_columns(
            run_id=pl.lit(run.manifest.run_id)
        ),
    )


def test_only_the_slowed_endpoint_is_flagged_and_tiny_endpoints_are_spared():
    # /health answers in ~0.6 ms: 30 % slower is 0.2 ms, under the 1 ms floor -> not a regression.
    # (Its p99, ~1.5 ms, moves 0.45 ms; the demo's default 60 % slowdown would move it about
    # 0.9 ms, at the floor, and the estimate may land either side.)
    runs = demo_runs(6)
    slowed = demo_runs(6, slowed_endpoint="/health", slowdown=1.3)[-1]
    baseline = pl.concat([requests_of(r) for r in runs[:-1]])
    ids = [r.manifest.run_id for r in runs[:-1]]

    verdicts = judge_run(requests_of(runs[-1]), baseline, ids)
    assert set(verdicts.filter(pl.col("regression"))["endpoint"]) == {"/api/orders"}
    assert (verdicts["p_adjusted"] >= verdicts["p_value"]).all()
    assert verdicts.height == 5 * 5  # endpoints x (p50, p95, p99, error rate, throughput)
    assert run_verdict(verdicts) == "regression"

    health = judge_run(requests_of(slowed), baseline, ids)
    assert not health["regression"].any()
    row = health.filter((pl.col("endpoint") == "/health") & (pl.col("metric") == "latency_p50"))
    assert row["change"][0] > 0.2  # large in relative terms, yet below the absolute floor


def fixed_rate_requests(
    run_id: str, rps: float, latency_ms: float, seconds: int = 60, seed: int = 0
):
    rng = np.random.default_rng(seed)
    n = int(rps * seconds)
    offsets = np.sort(rng.uniform(0, seconds, n))
    return conform(
        "requests",
        pl.DataFrame(
            {
                "run_id": run_id,
                "ts": [T0 + timedelta(seconds=float(o)) for o in offsets],
                "endpoint": "/a",
                "ok": True,
                "latency_ms": rng.lognormal(np.log(latency_ms), 0.3, n),
            }
        ),
    )


def as_intervals(requests: pl.DataFrame, window_s: int = 10) -> pl.DataFrame:
    """A run as a tool without per-request data reports it: per window of ``window_s`` the
    count, errors, min, max and numpy's p50, p90, p95, p99 of the successful latencies."""
    rows = []
    start = requests["ts"].min()
    window = ((requests["ts"] - start).dt.total_microseconds() // (window_s * 10**6)).to_numpy()
    for w in np.unique(window):
        part = requests.filter(pl.Series(window == w))
        ok = part["latency_ms"].filter(part["ok"]).to_numpy()
        p50, p90, p95, p99 = np.quantile(ok, [0.5, 0.9, 0.95, 0.99])
        rows.append(
            {
                "run_id": part["run_id"][0],
                "ts": start + timedelta(seconds=float((w + 1) * window_s)),
                "endpoint": part["endpoint"][0],
                "interval_s": float(window_s),
                "count": part.height,
                "errors": int((~part["ok"]).sum()),
                "min": ok.min(),
                "p50": p50,
                "p90": p90,
                "p95": p95,
                "p99": p99,
                "max": ok.max(),
            }
        )
    return conform("interval_stats", pl.DataFrame(rows))


def test_runs_known_only_by_intervals_get_latency_and_throughput_verdicts():
    base_requests = [fixed_rate_requests(f"b{i}", 40, 10, seed=i) for i in range(3)]
    base = pl.concat([as_intervals(r) for r in base_requests])
    no_requests = conform("requests", pl.DataFrame())

    def judged(candidate: pl.DataFrame) -> dict[str, dict]:
        verdicts = judge_run(
            no_requests,
            no_requests,
            ["b0", "b1", "b2"],
            candidate_intervals=as_intervals(candidate),
            baseline_intervals=base,
        )
        return {row["metric"]: row for row in verdicts.iter_rows(named=True)}

    same = judged(fixed_rate_requests("c", 40, 10, seed=9))
    assert {row["verdict"] for row in same.values()} == {"ok"}
    assert same["latency_p50"]["note"] == "p50 of 6 intervals' requests"
    fewer = judged(fixed_rate_requests("c", 28, 10, seed=9))["throughput"]
    assert fewer["verdict"] == "regression" and fewer["change"] == pytest.approx(0.3, abs=0.05)
    slower = judged(fixed_rate_requests("c", 40, 15, seed=9))["latency_p50"]
    assert slower["verdict"] == "regression" and slower["change"] == pytest.approx(0.5, abs=0.1)


def locust_history(requests: pl.DataFrame, window_s: int = 10) -> pl.DataFrame:
    """Rows as Locust's stats history writes them: one a second, its count the requests of
    that second, its percentiles (and max) those of the last ``window_s`` seconds."""
    start = requests["ts"].min()
    second = ((requests["ts"] - start).dt.total_microseconds() // 10**6).to_numpy()
    latency = requests["latency_ms"].to_numpy()
    rows = []
    for s in range(window_s, int(second.max())):  # from the first full window on
        window = latency[(second > s - window_s) & (second <= s)]
        p50, p90, p95, p99 = np.quantile(window, [0.5, 0.9, 0.95, 0.99])
        rows.append(
            {
                "run_id": requests["run_id"][0],
                "ts": start + timedelta(seconds=s + 1),
                "endpoint": "/a",
                "interval_s": 1.0,
                "count": int((second == s).sum()),
                "errors": 0,
                **{"p50": p50, "p90": p90, "p95": p95, "p99": p99, "max": window.max()},
            }
        )
    return conform("interval_stats", pl.DataFrame(rows))


def test_a_sliding_window_history_is_judged_on_the_requests_its_percentiles_describe():
    """At 5 requests/s, Locust's p95 of the last 10 s describes 50 requests, not the 5 of
    its row: taken as 5, each row's p95 stood for a lower level of the distribution and the
    pooled p95 came out 19 % high, moving with the request rate."""
    base = pl.concat(
        [locust_history(fixed_rate_requests(f"b{i}", 20, 10, 120, seed=i)) for i in range(3)]
    )
    slow_rate = locust_history(fixed_rate_requests("c", 5, 10, 120, seed=9))
    no_requests = conform("requests", pl.DataFrame())
    verdicts = judge_run(
        no_requests,
        no_requests,
        ["b0", "b1", "b2"],
        candidate_intervals=slow_rate,
        baseline_intervals=base,
    )
    rows = {r["metric"]: r for r in verdicts.iter_rows(named=True)}
    true_p95 = 10 * math.exp(0.3 * 1.6449)  # fixed_rate_requests: log-normal, sigma 0.3
    for metric in ("latency_p50", "latency_p95"):
        assert rows[metric]["verdict"] == "ok"
    assert rows["latency_p95"]["candidate"] == pytest.approx(true_p95, rel=0.06)
    assert rows["latency_p95"]["baseline"] == pytest.approx(true_p95, rel=0.03)


def test_interval_rows_without_a_min_a_length_or_a_percentile():
    """Locust's history: no min, no length on an entry's first row; a run whose tool wrote no
    p99; an endpoint that answered in half of the run's intervals (Artillery writes no row
    for the others): its throughput counts the whole run."""
    base_requests = [fixed_rate_requests(f"b{i}", 40, 10, seed=i) for i in range(3)]
    no_requests = conform("requests", pl.DataFrame())

    def locust_like(requests: pl.DataFrame) -> pl.DataFrame:
        rows = as_intervals(requests).with_columns(min=None)
        first = pl.int_range(pl.len()) == 0
        return rows.with_columns(
            pl.when(first).then(None).otherwise("interval_s").alias("interval_s")
        )

    base = pl.concat([locust_like(r) for r in base_requests])
    base = base.with_columns(
        pl.when(pl.col("run_id") == "b0").then(None).otherwise("p99").alias("p99")
    )
    candidate = locust_like(fixed_rate_requests("c", 40, 10, seed=9))
    sparse = candidate.with_columns(endpoint=pl.lit("/b")).filter(pl.int_range(pl.len()) % 2 == 0)
    verdicts = judge_run(
        no_requests,
        no_requests,
        ["b0", "b1", "b2"],
        candidate_intervals=pl.concat([candidate, sparse]),
        baseline_intervals=pl.concat([base, base.with_columns(endpoint=pl.lit("/b"))]),
    )
    rows = {(r["endpoint"], r["metric"]): r for r in verdicts.iter_rows(named=True)}
    assert {r["verdict"] for (endpoint, _), r in rows.items() if endpoint == "/a"} == {"ok"}
    throughput = rows[("/a", "throughput")]
    assert throughput["candidate"] == pytest.approx(40.0, rel=0.05)
    assert throughput["baseline"] == pytest.approx(40.0, rel=0.05)
    # b0 wrote no p99: judged on b1 and b2 alone, not on a p99 made up from p95 and max
    without_b0 = judge_run(
        no_requests,
        no_requests,
        ["b1", "b2"],
        candidate_intervals=candidate,
        baseline_intervals=base.filter(pl.col("run_id") != "b0"),
    ).filter(pl.col("metric") == "latency_p99")
    assert rows[("/a", "latency_p99")]["baseline"] == without_b0["baseline"][0]
    # a candidate of one interval (about 400 requests, 4 beyond its p99): shown, not judged
    few = judge_run(
        no_requests,
        no_requests,
        ["b1", "b2"],
        candidate_intervals=candidate.head(1),
        baseline_intervals=base,
    ).filter(pl.col("metric") == "latency_p99")
    assert np.isnan(few["p_value"][0]) and few["note"][0].endswith(TOO_FEW)
    # /b answered in intervals 1, 3, 5 of the candidate's 6 (the first without a length):
    # its requests in the timed ones over the run's 50 timed seconds, not over its own 20
    timed_b = sparse.filter(pl.col("interval_s").is_not_null())["count"].sum()
    assert rows[("/b", "throughput")]["candidate"] == pytest.approx(timed_b / 50.0)
    assert rows[("/b", "throughput")]["verdict"] == "regression"


def resources_of(run_id: str, mem: float, seed: int = 0, metric: str = "proc_rss_bytes"):
    rng = np.random.default_rng(seed)
    return conform(
        "resources",
        pl.DataFrame(
            {
                "run_id": run_id,
                "ts": [T0 + timedelta(seconds=i) for i in range(60)],
                "host": "web-1",
                "metric": metric,
                "value": rng.normal(mem, 1.0, 60) * 2**20,
            }
        ),
    )


def test_throughput_that_drops_is_a_regression_and_one_that_rises_is_not():
    base = pl.concat([fixed_rate_requests(f"b{i}", 40, 10, seed=i) for i in range(3)])
    slower = judge_run(fixed_rate_requests("c", 28, 10, seed=9), base, ["b0", "b1", "b2"])
    row = slower.filter(pl.col("metric") == "throughput").row(0, named=True)
    assert row["regression"] and row["change"] == pytest.approx(0.3, abs=0.08)
    faster = judge_run(fixed_rate_requests("c", 52, 10, seed=9), base, ["b0", "b1", "b2"])
    assert not faster.filter(pl.col("metric") == "throughput")["regression"][0]


def test_better_latency_bought_with_more_memory_is_a_trade_off_not_a_pass():
    base = fixed_rate_requests("b", 40, 20, seed=1)
    faster = fixed_rate_requests("c", 40, 13, seed=2)
    verdicts = judge_run(
        faster,
        base,
        ["b"],
        candidate_resources=resources_of("c", 60.0, seed=3),
        baseline_resources=resources_of("b", 40.0, seed=4),
    )
    memory = verdicts.filter(pl.col("endpoint") == "(resources)").row(0, named=True)
    assert memory["metric"] == "proc_rss_bytes" and memory["verdict"] == "trade-off"
    assert memory["change"] == pytest.approx(0.5, abs=0.05)
    assert run_verdict(verdicts) == "trade-off"
    same = judge_run(
        faster,
        base,
        ["b"],
        candidate_resources=resources_of("c", 40.0, seed=3),
        baseline_resources=resources_of("b", 40.0, seed=4),
    )
    assert run_verdict(same) == "pass"


def scaled_run(run_id: str, factor: float, seed: int) -> pl.DataFrame:
    run = fixed_rate_requests(run_id, 40, 10, seconds=30, seed=seed)
    return run.with_columns(pl.col("latency_ms") * factor)


def test_run_to_run_noise_of_the_baseline_keeps_an_ordinary_run_from_a_verdict():
    # The endpoint's latency moves by up to 25 % between identical runs; a candidate like the
    # slowest baseline run is ordinary.
    factors = [0.85, 1.0, 1.25, 0.9, 1.1]
    ids = [f"b{i}" for i in range(5)]
    base = pl.concat(
        [scaled_run(r, f, seed=i) for i, (r, f) in enumerate(zip(ids, factors, strict=True))]
    )
    cand = scaled_run("c", 1.35, seed=9)
    by_run = judge_run(cand, base, ids)
    assert not by_run["regression"].any()
    # Pooled as if one run, the requests alone do not decide: the prior's run noise does.
    pooled = judge_run(cand, base.with_columns(run_id=pl.lit("b")), ["b"])
    assert set(pooled["noise"].drop_nulls()) == {"prior 10% + 0.5 abs.", "prior 10%", "prior 30%"}
    # The same candidate twice as slow stands out against the runs' spread.
    slower = judge_run(scaled_run("c", 2.2, seed=9), base, ids)
    assert set(slower.filter(pl.col("regression"))["metric"]) >= {"latency_p50", "latency_p95"}


def test_worse_by_less_than_the_threshold_is_not_a_regression_and_faster_is_an_improvement():
    ids = [f"b{i}" for i in range(5)]
    base = pl.concat([scaled_run(r, 1 + 0.02 * (i - 2), seed=i) for i, r in enumerate(ids)])
    modest = judge_run(scaled_run("c", 1.15, seed=9), base, ids)
    row = modest.filter(pl.col("metric") == "latency_p50").row(0, named=True)
    assert 0.10 < row["change"] < 0.20 and row["verdict"] == "ok"
    faster = judge_run(scaled_run("c", 0.6, seed=9), base, ids)
    p50 = faster.filter(pl.col("metric") == "latency_p50").row(0, named=True)
    assert p50["verdict"] == "improvement" and not p50["regression"]
    assert run_verdict(faster) == "pass"


def test_a_candidate_too_small_to_test_and_far_slower_is_suspect():
    # Baseline runs of 1,200 requests, a candidate of 12, ten times slower: its percentiles
    # have no sampling variance, so no test, but the rows say "suspect", and so does the run.
    ids = [f"b{i}" for i in range(3)]
    base = pl.concat([scaled_run(r, 1.0, seed=i) for i, r in enumerate(ids)])
    tiny = fixed_rate_requests("c", 4, 100, seconds=3, seed=9)
    verdicts = judge_run(tiny, base, ids)
    p50 = verdicts.filter(pl.col("metric") == "latency_p50").row(0, named=True)
    assert p50["verdict"] == "suspect" and not p50["regression"]
    assert p50["change"] > 5 and math.isnan(p50["p_value"])
    assert run_verdict(verdicts) == "suspect"
    # Untested, a candidate of 12 requests like the baseline can still be flagged (its p95 is
    # almost its maximum), but never as a regression.
    same = judge_run(fixed_rate_requests("c", 4, 10, seconds=3, seed=9), base, ids)
    assert not same["regression"].any() and run_verdict(same) in {"pass", "suspect"}


def test_whole_machine_resources_are_reported_but_not_judged_on_one_baseline_run():
    base = fixed_rate_requests("b", 40, 20, seed=1)
    cand = fixed_rate_requests("c", 40, 20, seed=2)
    verdicts = judge_run(
        cand,
        base,
        ["b"],
        candidate_resources=resources_of("c", 60.0, seed=3, metric="mem_pct"),
        baseline_resources=resources_of("b", 40.0, seed=4, metric="mem_pct"),
    )
    memory = verdicts.filter(pl.col("metric") == "mem_pct").row(0, named=True)
    assert memory["change"] == pytest.approx(0.5, abs=0.05)
    assert memory["verdict"] == "ok" and "not judged" in memory["note"]


def test_an_endpoint_the_candidate_never_called_is_reported_missing():
    base = pl.concat(
        [
            fixed_rate_requests("b", 40, 20, seed=1),
            fixed_rate_requests("b", 10, 20, seed=2).with_columns(endpoint=pl.lit("/gone")),
        ]
    )
    verdicts = judge_run(fixed_rate_requests("c", 40, 20, seed=3), base, ["b"])
    gone = verdicts.filter(pl.col("endpoint") == "/gone").row(0, named=True)
    assert gone["verdict"] == "missing" and not gone["regression"]


def test_a_noisy_history_keeps_a_change_within_its_spread_from_a_verdict():
    # The combination's earlier runs differ by about 20 %: more than the 10 % prior, so the
    # measured spread decides, and a 60 % slower median is within it.
    summaries = pl.DataFrame(
        {
            "run_id": [f"h{i}" for i in range(8)],
            "endpoint": "/a",
            "latency_p50": [50.0, 65.0, 40.0, 60.0, 45.0, 70.0, 37.5, 55.0],
            "latency_p95": [100.0] * 8,
            "latency_p99": [None] * 8,
            "requests": [2400] * 8,
            "error_rate": [0.0] * 8,
            "throughput_rps": [40.0] * 8,
        }
    )
    history = history_noise(summaries)
    assert history[("/a", "latency_p50")].df == 7
    assert ("/a", "latency_p99") not in history
    base = fixed_rate_requests("b", 40, 50, seed=1)
    cand = fixed_rate_requests("c", 40, 80, seed=2)
    prior_only = judge_run(cand, base, ["b"]).filter(pl.col("metric") == "latency_p50")
    assert prior_only.row(0, named=True)["verdict"] == "regression"
    assert prior_only["noise"][0] == "prior 10% + 0.5 abs."
    with_history = judge_run(cand, base, ["b"], history=history)
    row = with_history.filter(pl.col("metric") == "latency_p50").row(0, named=True)
    assert row["verdict"] == "ok" and row["noise"] == "history of 8 runs (7 df)"


def test_a_history_knows_how_many_values_each_run_had_and_counts_only_runs_with_a_value():
    summaries = pl.DataFrame(
        {
            "run_id": ["h0", "h1", "h2"],
            "endpoint": "/a",
            "latency_p50": [50.0, 55.0, 52.0],
            "latency_p95": [100.0, 110.0, 104.0],
            "latency_p99": [None, None, None],
            "requests": [2000, 1000, 4000],
            "error_rate": [0.01, float("nan"), 0.0],
            "throughput_rps": [40.0, 20.0, 40.0],
        }
    )
    history = history_noise(summaries)
    # The latencies are the successful requests'; the throughput's per-second values are
    # the run's seconds; a rate needs its value.
    assert history[("/a", "latency_p50")].sizes == (1980.0, 1000.0, 4000.0)
    assert history[("/a", "throughput")].sizes == (50.0, 50.0, 100.0)
    rate = history[("/a", "error_rate")]
    assert rate.sizes == (2000.0, 4000.0) and rate.source == "history of 2 runs"
    assert history[("/a", "latency_p95")].source == "history of 3 runs"
    # A run without throughput (none measured) has no size, and the others keep theirs.
    idle = history_noise(summaries.with_columns(throughput_rps=pl.Series([40.0, 0.0, 40.0])))
    assert idle[("/a", "throughput")].sizes == (50.0, 100.0)


@pytest.mark.parametrize(
    ("change", "words"),
    [(0.05, "5.0 % worse"), (-0.30, "30.0 % better"), (0.0, "no change"), (float("nan"), "-")],
)
def test_changes_are_shown_in_words_that_need_no_legend(change, words):
    """Throughput 10.0/s -> 9.5/s (change +0.05: lower is worse) reads "5.0 % worse", as a
    latency 10 ms -> 10.5 ms does; never a bare "+5.0 %"."""
    assert change_words(change) == words


def test_error_rates_change_in_percentage_points():
    assert change_words(0.093, "error_rate") == "9.30 pp worse"


def test_baseline_runs_days_apart_measure_the_noise_runs_back_to_back_keep_the_floor():
    # Five baseline runs within 2 % of each other, a candidate 30 % slower. Taken on five
    # days, their spread is the run noise and the change stands far out of it; taken minutes
    # apart, they may share the machine's moment, so the 10 % prior stays a floor.
    ids = [f"b{i}" for i in range(5)]

    def baseline(step: timedelta) -> pl.DataFrame:
        return pl.concat(
            [
                scaled_run(r, 1 + 0.01 * (i - 2), seed=i).with_columns(pl.col("ts") + step * i)
                for i, r in enumerate(ids)
            ]
        )

    cand = scaled_run("c", 1.30, seed=9).with_columns(pl.col("ts") + timedelta(days=5))
    apart = judge_run(cand, baseline(timedelta(days=1)), ids)
    p50 = apart.filter(pl.col("metric") == "latency_p50").row(0, named=True)
    assert p50["verdict"] == "regression"
    assert p50["noise"].startswith("5 baseline runs") and "at least" not in p50["noise"]
    together = judge_run(cand, baseline(timedelta(minutes=2)), ids)
    floored = together.filter(pl.col("metric") == "latency_p50").row(0, named=True)
    assert floored["noise"].startswith("prior 10% + 0.5 abs. (at least")
    assert floored["ci_high"] - floored["ci_low"] > 2 * (p50["ci_high"] - p50["ci_low"])
    assert floored["p_value"] > 10 * p50["p_value"]


def test_errors_stated_without_their_requests_are_shown_not_a_crash():
    # A k6 summary with a threshold on an endpoint's failures but trends without `count`:
    # errors and no requests. A rate of 3 of 0 raised out of judge_run (and `compare` exited
    # 1, its code for a regression).
    no_requests = conform("requests", pl.DataFrame())
    runs = [
        as_intervals(fixed_rate_requests(r, 40, 10, seed=i)).with_columns(
            count=pl.lit(None, pl.Int64), errors=pl.lit(2 + i, pl.Int64)
        )
        for i, r in enumerate(["b0", "b1", "b2", "c"])
    ]
    verdicts = judge_run(
        no_requests,
        no_requests,
        ["b0", "b1", "b2"],
        candidate_intervals=runs[-1],
        baseline_intervals=pl.concat(runs[:3]),
    )
    rate = verdicts.filter(pl.col("metric") == "error_rate").row(0, named=True)
    assert rate["verdict"] == "ok" and not rate["regression"] and math.isnan(rate["p_value"])
    assert rate["note"] == "errors without the requests they were among: not judged"


def test_a_significant_change_below_the_threshold_is_ok_and_says_so():
    # Five baseline runs on five days within 2 % of each other, a candidate 8 % slower: beyond
    # the measured run noise, below the 20 % threshold. "ok" alone would read as no change.
    ids = [f"b{i}" for i in range(5)]
    base = pl.concat(
        [
            scaled_run(r, 1 + 0.01 * (i - 2), seed=i).with_columns(pl.col("ts") + timedelta(days=i))
            for i, r in enumerate(ids)
        ]
    )
    cand = scaled_run("c", 1.08, seed=9).with_columns(pl.col("ts") + timedelta(days=5))
    p50 = judge_run(cand, base, ids).filter(pl.col("metric") == "latency_p50").row(0, named=True)
    assert p50["verdict"] == "ok" and p50["p_adjusted"] < 0.05 and p50["ci_low"] > 0
    assert p50["note"] == "significant, below the threshold"
    same = scaled_run("c", 1.0, seed=9).with_columns(pl.col("ts") + timedelta(days=5))
    unchanged = judge_run(same, base, ids).filter(pl.col("metric") == "latency_p50")
    assert unchanged["note"][0] is None


def test_the_adjustment_counts_only_the_tests_that_can_decide():
    # A run with a whole-machine sample (reported, never judged) and no error on either side
    # (a rate whose p-value is 1 whatever happens): neither enters the Benjamini-Hochberg
    # family; the other rows are adjusted among themselves, as statsmodels computes it.
    from statsmodels.stats.multitest import multipletests

    base = pl.concat([scaled_run(f"b{i}", 1 + 0.05 * (i - 1), seed=i) for i in range(3)])
    verdicts = judge_run(
        scaled_run("c", 1.3, seed=9),
        base,
        ["b0", "b1", "b2"],
        candidate_resources=resources_of("c", 60.0, seed=3, metric="mem_pct"),
        baseline_resources=pl.concat(
            [resources_of(f"b{i}", 40.0 + i, seed=4 + i, metric="mem_pct") for i in range(3)]
        ),
    )
    by_metric = {row["metric"]: row for row in verdicts.iter_rows(named=True)}
    assert by_metric["error_rate"]["p_value"] == 1.0
    assert by_metric["mem_pct"]["p_value"] < 0.01 and "not judged" in by_metric["mem_pct"]["note"]
    left_out = {"error_rate", "mem_pct"}
    assert all(np.isnan(by_metric[m]["p_adjusted"]) for m in left_out)
    family = verdicts.filter(
        ~pl.col("metric").is_in(sorted(left_out)) & pl.col("p_value").is_not_null()
    )
    assert family.height >= 4
    expected = multipletests(family["p_value"].to_numpy(), method="fdr_bh")[1]
    np.testing.assert_allclose(family["p_adjusted"].to_numpy(), expected, rtol=1e-12)


def test_an_error_rate_that_moves_a_third_between_identical_runs_is_no_regression():
    # Identical runs of 20,000 requests whose error rate moves by about 30 % from run to run
    # (1 % times a Gamma multiplier of mean 1 and CV 0.3), judged on one baseline run: the
    # error rate's prior must hold that spread. With the latencies' 10 % prior 12 % of these
    # pairs were regressions; the CV of a Gamma(a, 1/a) multiplier is 1/sqrt(a).
    rng = np.random.default_rng(20261207)
    policy = VerdictPolicy()
    rule, prior = policy.rule("error_rate"), policy.prior("error_rate")
    requests, pairs = 20_000, 400

    def judged(base_errors: int, cand_errors: int):
        return compare_runs(
            [rate_statistic(base_errors, requests)],
            rate_statistic(cand_errors, requests),
            statistic="rate",
            scale="arcsine",
            threshold=rule.threshold,
            alpha=rule.alpha,
            min_effect=rule.min_effect,
            prior=prior,
        )

    shape = 1 / 0.3**2
    errors = rng.binomial(requests, 0.01 * rng.gamma(shape, 1 / shape, (pairs, 2)))
    flagged = sum(judged(int(b), int(c)).regression for b, c in errors)
    assert flagged / pairs <= 0.05
    # A real jump still stands out: 1 % -> 5 %, and errors where there were none.
    assert judged(200, 1000).regression and judged(0, 500).regression
    # judge_run takes the error rate's prior from the same policy.
    base = fixed_rate_requests("b", 40, 10, seed=1).with_columns(
        ok=pl.Series(np.arange(2400) % 50 != 0)
    )
    rows = judge_run(fixed_rate_requests("c", 40, 10, seed=2), base, ["b"])
    assert rows.filter(pl.col("metric") == "error_rate")["noise"].to_list() == [prior.source]


def test_error_rates_are_not_pooled_over_endpoints_of_other_sizes():
    # Three baseline runs of five endpoints: the latencies' spread is pooled over the
    # endpoints (one machine's noise), the error rates' is not: theirs holds each endpoint's
    # sampling error, which differs with its size and is all there is without errors.
    def run(run_id: str, seed: int) -> pl.DataFrame:
        parts = []
        for i, rps in enumerate([2, 40, 40, 40, 40]):
            part = fixed_rate_requests(run_id, rps, 10, seed=seed * 10 + i)
            errors = np.random.default_rng(seed * 10 + i).random(part.height) < 0.03
            parts.append(part.with_columns(endpoint=pl.lit(f"/e{i}"), ok=pl.Series(~errors)))
        return pl.concat(parts)

    ids = ["b1", "b2", "b3"]
    base = pl.concat([run(r, i) for i, r in enumerate(ids)])
    rows = judge_run(run("c", 9), base, ids)
    noise = dict(zip(rows["metric"], rows["noise"], strict=False))
    assert "endpoints' runs" in noise["latency_p50"]
    error_noise = rows.filter(pl.col("metric") == "error_rate")["noise"]
    assert error_noise.str.contains("endpoints").sum() == 0
