"""Tests of the per-run summary against values computed independently with numpy."""

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from metrics_pipeline.analysis.summary import summarize_requests, summary_markdown
from metrics_pipeline.contracts.tables import SCHEMAS, conform, empty

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
PERCENTILES = {"latency_p50": 50, "latency_p90": 90, "latency_p95": 95, "latency_p99": 99}


def make_requests() -> tuple[pl.DataFrame, dict]:
    """Two runs x two endpoints with some errors; returns the frame and the raw columns."""
    rng = np.random.default_rng(7)
    spec = {
        # run, endpoint: (n requests, indices that fail, start offset s, step s)
        ("r1", "/a"): (40, {3, 17, 39}, 0.0, 0.31),
        ("r1", "/b"): (11, {0}, 2.5, 0.9),
        ("r2", "/a"): (3, set(), 0.0, 0.2),  # whole run spans 0.4 s -> counted as 1 s
        ("r2", "/b"): (2, {0, 1}, 0.1, 0.1),  # only failures: no latency statistics
    }
    columns: dict[str, list] = {"run_id": [], "endpoint": [], "ts": [], "ok": [], "latency_ms": []}
    for (run_id, endpoint), (n, failing, start, step) in spec.items():
        latencies = rng.lognormal(mean=3.0, sigma=0.6, size=n).round(3)
        for i in range(n):
            columns["run_id"].append(run_id)
            columns["endpoint"].append(endpoint)
            columns["ts"].append(T0 + timedelta(seconds=start + i * step))
            columns["ok"].append(i not in failing)
            # Failures get an extreme latency so that mixing them in would show.
            columns["latency_ms"].append(5000.0 if i in failing else float(latencies[i]))
    frame = conform("requests", pl.DataFrame(columns))
    return frame.sample(fraction=1.0, shuffle=True, seed=3), columns


def expected_summary(columns: dict) -> dict[tuple[str, str], dict]:
    run = np.array(columns["run_id"])
    endpoint = np.array(columns["endpoint"])
    seconds = np.array([(t - T0).total_seconds() for t in columns["ts"]])
    ok = np.array(columns["ok"])
    latency = np.array(columns["latency_ms"])
    expected = {}
    for r in np.unique(run):
        in_run = run == r
        span = max(seconds[in_run].max() - seconds[in_run].min(), 1.0)
        for e in np.unique(endpoint[in_run]):
            sel = in_run & (endpoint == e)
            good = latency[sel & ok]
            n = int(sel.sum())
            errors = int((sel & ~ok).sum())
            row = {
                "requests": n,
                "errors": errors,
                "error_rate": errors / n,
                "throughput_rps": n / span,
                "latency_mean": good.mean() if good.size else None,
                "latency_max": good.max() if good.size else None,
            }
            for name, q in PERCENTILES.items():
                row[name] = float(np.percentile(good, q)) if good.size else None
            expected[(str(r), str(e))] = row
    return expected


@pytest.mark.parametrize("lazy", [True, False], ids=["a scan", "a frame"])
def test_summary_matches_numpy_on_successful_requests(lazy):
    frame, columns = make_requests()
    summary = summarize_requests(frame.lazy() if lazy else frame)
    assert summary.schema == SCHEMAS["run_summary"]
    assert summary.select("run_id", "endpoint").rows() == [
        ("r1", "/a"),
        ("r1", "/b"),
        ("r2", "/a"),
        ("r2", "/b"),
    ]
    expected = expected_summary(columns)
    for row in summary.iter_rows(named=True):
        want = expected[(row["run_id"], row["endpoint"])]
        for key, value in want.items():
            if value is None:
                assert row[key] is None, (row["run_id"], row["endpoint"], key)
            else:
                assert row[key] == pytest.approx(value, rel=1e-12), (
                    row["run_id"],
                    row["endpoint"],
                    key,
                )


@pytest.mark.parametrize("seed", range(3))
def test_percentiles_are_the_floats_of_one_pass_quantiles(seed):
    """Two passes over a scan (stats.quantiles) give polars' one-pass floats, also for whole
    milliseconds with heavy ties, one-request endpoints and latencies below 1 µs."""
    rng = np.random.default_rng(seed)
    n = 30_000
    endpoint = rng.choice(["/ms", "/log", "/tiny"], n, p=[0.4, 0.4, 0.2])
    endpoint[0] = "/one"
    latency = np.where(endpoint == "/ms", np.round(rng.lognormal(3, 1, n)), rng.lognormal(2, 1, n))
    latency = np.where(endpoint == "/tiny", rng.choice([0.0, 1e-4, 1e-3, 0.5], n), latency)
    frame = conform(
        "requests",
        pl.DataFrame(
            {
                "run_id": "r",
                "endpoint": endpoint,
                "ts": T0,
                "ok": (rng.random(n) > 0.02) | (endpoint == "/one"),
                "latency_ms": latency,
            }
        ),
    )
    summary = summarize_requests(frame.lazy()).sort("endpoint")
    expected = (
        frame.group_by("endpoint")
        .agg(
            **{
                name: pl.col("latency_ms").filter(pl.col("ok")).quantile(q / 100, "linear")
                for name, q in PERCENTILES.items()
            }
        )
        .sort("endpoint")
    )
    assert summary.select("endpoint", *PERCENTILES).equals(expected)


def test_error_rate_and_throughput_by_hand():
    frame, _ = make_requests()
    rows = {(r["run_id"], r["endpoint"]): r for r in summarize_requests(frame).to_dicts()}
    # r1 spans from 0 s (/a) to max(39 * 0.31, 2.5 + 10 * 0.9) = 12.09 s.
    assert rows[("r1", "/a")]["error_rate"] == pytest.approx(3 / 40)
    assert rows[("r1", "/a")]["throughput_rps"] == pytest.approx(40 / 12.09)
    assert rows[("r1", "/b")]["error_rate"] == pytest.approx(1 / 11)
    assert rows[("r1", "/b")]["throughput_rps"] == pytest.approx(11 / 12.09)
    # r2 spans 0.4 s, less than the 1 s floor.
    assert rows[("r2", "/a")]["throughput_rps"] == pytest.approx(3.0)
    assert rows[("r2", "/b")]["error_rate"] == 1.0
    assert rows[("r2", "/b")]["throughput_rps"] == pytest.approx(2.0)


def test_percentiles_by_hand_on_a_tiny_sample():
    frame = conform(
        "requests",
        pl.DataFrame(
            {
                "run_id": ["r"] * 5,
                "endpoint": ["/x"] * 5,
                "ts": [T0 + timedelta(seconds=s) for s in (0, 1, 2, 3, 4)],
                "ok": [True, True, True, True, False],
                "latency_ms": [40.0, 10.0, 30.0, 20.0, 1.0],
            }
        ),
    )
    row = summarize_requests(frame).row(0, named=True)
    # Sorted good latencies 10 20 30 40: p50 at rank 1.5 -> 25, p90 at 2.7 -> 37, p99 at 2.97.
    assert row["latency_p50"] == pytest.approx(25.0)
    assert row["latency_p90"] == pytest.approx(37.0)
    assert row["latency_p95"] == pytest.approx(38.5)
    assert row["latency_p99"] == pytest.approx(39.7)
    assert row["latency_mean"] == pytest.approx(25.0)
    assert row["latency_max"] == 40.0
    assert (row["requests"], row["errors"], row["error_rate"]) == (5, 1, 0.2)
    assert row["throughput_rps"] == pytest.approx(5 / 4)


def test_empty_requests_give_an_empty_summary():
    summary = summarize_requests(empty("requests"))
    assert summary.schema == SCHEMAS["run_summary"]
    assert summary.height == 0


def test_summary_markdown_escapes_endpoint_names():
    frame = conform(
        "requests",
        pl.DataFrame(
            {
                "run_id": ["r"],
                "endpoint": ["/x|<script>"],
                "ts": [T0],
                "ok": [True],
                "latency_ms": [3.0],
            }
        ),
    )
    markdown = summary_markdown(summarize_requests(frame))
    body = markdown.splitlines()[2]
    assert "<script>" not in body
    # Only the table's own separators are unescaped pipes: 9 of them for 8 columns.
    unescaped_pipes = sum(
        1 for i, c in enumerate(body) if c == "|" and (i == 0 or body[i - 1] != "\\")
    )
    assert unescaped_pipes == 9


def test_interval_summaries_use_one_source_and_pool_the_requests():
    from datetime import UTC, datetime

    from metrics_pipeline.analysis.summary import summarize_intervals, summarize_run

    t = datetime(2026, 11, 1, tzinfo=UTC)
    intervals = conform(
        "interval_stats",
        pl.DataFrame(
            {
                "run_id": ["r"] * 4,
                "ts": [t + timedelta(seconds=s) for s in (10, 20, 30, 30)],
                "endpoint": ["/a"] * 4,
                "source_file": ["history.csv", "history.csv", "history.csv", "stats.csv"],
                "interval_s": [10.0, 10.0, 10.0, None],
                "count": [10, 30, 60, 100],
                "errors": [0, 3, 1, 4],
                "mean": [9.0, 21.0, 28.0, 99.0],
                "p50": [10.0, 20.0, 30.0, 99.0],
                "p95": [20.0, 40.0, 60.0, 99.0],
                "max": [25.0, 80.0, 61.0, 99.0],
            }
        ),
    )
    (row,) = summarize_intervals(intervals).iter_rows(named=True)
    assert row["requests"] == 100 and row["errors"] == 4  # history.csv only: 3 rows beat 1
    assert row["error_rate"] == pytest.approx(0.04)
    assert row["throughput_rps"] == pytest.approx(100 / 30)
    # The mean of all requests is the count-weighted mean of the intervals' means.
    assert row["latency_mean"] == pytest.approx((10 * 9 + 30 * 21 + 60 * 28) / 100)
    # Percentiles of all the requests lie between the intervals' own.
    assert 10.0 < row["latency_p50"] < 30.0 and 40.0 < row["latency_p95"] < 61.0
    assert row["latency_max"] == 80.0 and row["latency_p99"] is None  # never reported
    # Endpoints with per-request rows keep their exact summary; the rest come from intervals.
    requests = conform(
        "requests",
        pl.DataFrame(
            {"run_id": ["r"], "ts": [t], "endpoint": ["/b"], "ok": [True], "latency_ms": [5.0]}
        ),
    )
    combined = summarize_run(requests, intervals)
    assert combined["endpoint"].to_list() == ["/a", "/b"]


def test_a_summary_of_one_interval_is_the_tools_own_percentiles():
    from metrics_pipeline.analysis.summary import summarize_intervals

    row = {"run_id": "k6", "ts": None, "endpoint": "(all)", "source_file": "summary.json"}
    tool = {"min": 3.0, "p50": 20.0, "p90": 30.0, "p95": 40.0, "p99": 50.0, "max": 60.0}
    intervals = conform("interval_stats", pl.DataFrame([row | tool | {"count": 600}]))
    (summary,) = summarize_intervals(intervals).iter_rows(named=True)
    for name in ("p50", "p90", "p95", "p99"):
        assert summary[f"latency_{name}"] == pytest.approx(tool[name], rel=1e-9)


def test_interval_summaries_show_the_percentile_of_all_the_requests():
    """Artillery-like 10 s periods cut from known requests: a slow tail (10 % of the requests
    3x slower) that fell mostly into one period. The run's p95 is that of all its requests
    (numpy's, type 7); the count-weighted mean of the periods' p95, the summary before, was
    more than 20 % below it."""
    from metrics_pipeline.analysis.summary import summarize_intervals

    rng = np.random.default_rng(11)
    sizes, tail_shares = (300, 300, 300), (0.01, 0.01, 0.28)
    periods = [
        rng.lognormal(np.log(40.0), 0.25, n) * np.where(rng.random(n) < share, 3.0, 1.0)
        for n, share in zip(sizes, tail_shares, strict=True)
    ]
    rows = [
        {
            "run_id": "art",
            "ts": T0 + timedelta(seconds=10 * (i + 1)),
            "endpoint": "/search",
            "source_file": "report.json",
            "interval_s": 10.0,
            "count": values.size,
            "errors": 0,
            "mean": values.mean(),
            "min": values.min(),
            "max": values.max(),
            **{f"p{q}": np.percentile(values, q) for q in (50, 90, 95, 99)},
        }
        for i, values in enumerate(periods)
    ]
    (summary,) = summarize_intervals(conform("interval_stats", pl.DataFrame(rows))).iter_rows(
        named=True
    )
    everything = np.concatenate(periods)
    weighted_p95 = np.average([r["p95"] for r in rows], weights=sizes)
    assert weighted_p95 < 0.8 * np.percentile(everything, 95)  # the old summary's error
    # Within what six percentiles per period can tell (their p90 lies in the gap between the
    # two modes of the slow period, where the intervals say nothing).
    for q in (50, 95, 99):
        assert summary[f"latency_p{q}"] == pytest.approx(np.percentile(everything, q), rel=0.1)
    assert summary["latency_mean"] == pytest.approx(everything.mean())


def test_a_percentile_reported_as_zero_stays_zero():
    """Whole milliseconds: a sub-millisecond endpoint reports 0 (the floor of 0.5 ms the
    logarithms need is not a latency)."""
    from metrics_pipeline.analysis.summary import summarize_intervals

    row = {"run_id": "k6", "ts": None, "endpoint": "/ping", "source_file": "summary.json"}
    tool = {"min": 0.0, "p50": 0.0, "p90": 1.0, "p95": 1.0, "p99": 2.0, "max": 3.0}
    intervals = conform("interval_stats", pl.DataFrame([row | tool | {"count": 500}]))
    (summary,) = summarize_intervals(intervals).iter_rows(named=True)
    assert summary["latency_p50"] == 0.0
    assert summary["latency_p95"] == pytest.approx(1.0) and summary["latency_p99"] == pytest.approx(
        2.0
    )
