"""Verdict calibration: how far can a per-run regression verdict be trusted?

Simulates candidate and baseline runs with a known true effect, hands them to the product's
``judge_run`` (``metrics_pipeline.analysis.verdicts``; nothing else of the product is used
besides the ``requests`` table schema) with ``VerdictPolicy.uniform(threshold=0.20,
alpha=0.05)`` and its defaults otherwise, and scores the verdicts:

* **false-alarm rate (FA)**: share of effect-0 replications whose row has verdict
  ``regression``; the **per-run FA** counts a run as a false alarm when any of its rows
  (latency, error rate, throughput, ...) has verdict ``regression``;
* **recall** at each true effect: share of replications with verdict ``regression``; the
  column "+10 %" is the rate at which a change half the 20 % threshold is flagged;
* **CI coverage**: share of replications (all effects pooled) whose ``[ci_low, ci_high]``
  contains the true relative change, which is ``effect`` for every latency quantile (the
  effect multiplies every latency, so it multiplies every quantile).

Latency rows (``latency_p50``, ``latency_p95``, and ``latency_p99`` if the product reports
it) are scored separately; ``error_rate`` is scored for false alarms only (its true change is
always 0). The generator is this file's own and knows nothing of how the product computes.

Model (one replication of one cell)
-----------------------------------
A run is ``N`` requests on one endpoint, observed over 60 s:

* latencies ``median * exp(sigma * Z)``, ``Z ~ Normal(0, 1)``; with the *mixture* tail, each
  request independently (probability 5 %) is 3x slower;
* timestamps at a constant rate: request ``i`` at ``60 s * (i + U_i) / N``, ``U_i ~ U(0, 1)``
  (one request per 60/N s slot, so throughput per second is stable; the load is open-model:
  the true effect does not change throughput);
* ``ok`` is False (status 500, error "HTTP 500") with the run's own error rate ``p_run ~
  Beta(kappa * p, kappa * (1 - p))``, ``kappa = 1000`` (overdispersion: at ``p = 1 %`` the
  per-run rate has a standard deviation of 0.31 percentage points); failed requests have
  latencies from the same distribution;
* **run-to-run drift** ``d``: every run (each baseline run and the candidate) multiplies all
  its latencies by ``exp(e)``, ``e ~ Normal(0, sd = ln(1 + d))``, drawn once per run;
* **true effect**: the candidate's latencies are further multiplied by ``1 + effect``.

The baseline is ``k`` such runs pooled in one frame (``run_id`` base-0 .. base-{k-1}) and
``baseline_runs`` lists them; the candidate is one more run (``run_id`` cand).

Scenario parameters, drawn per replication (the same draw for replication ``r`` in every
cell), from the stream of the chosen split:

* ``median`` log-uniform in [20, 200] ms (quantized variant: [2, 4] ms);
* ``sigma`` uniform in [0.4, 0.6];
* tail shape: plain log-normal or the 5 %-3x mixture, probability 1/2 each;
* base error rate ``p`` log-uniform in [0.5 %, 2 %].

Within a replication the same random draws serve every drift and every effect (common random
numbers): only the drift scale and the effect factor change. Cells are therefore positively
correlated, but each cell's rate is an unbiased estimate with the binomial Monte-Carlo
standard error ``sqrt(p (1 - p) / R)`` shown next to it (also for coverage, which pools the
seven effects' 7R intervals: a replication's intervals share its draws and cover together;
for a rate of 0 or 100 %, "<x" is the one-sided 95 % bound 3/R, the rule of three).

Variants and grid
-----------------
* ``lognormal`` (main): baseline runs ``k`` in {1, 3, 5} x requests per run ``N`` in
  {200, 2000, 50000} x drift in {0, 3, 10 %} x effect in {0, 10, 15, 20, 25, 30, 50 %};
  replications per (N, k): 500 / 500 / 100 for N = 200 / 2000 / 50000 (``--reps``).
* ``quantized``: median 2-4 ms, latencies rounded to whole milliseconds after drift and effect
  (as JMeter and Artillery report them); k in {1, 3, 5} x N in {200, 2000, 50000}, drift 3 %,
  effect in {0, 30, 50 %}; replications 300 / 200 / 50. Scored for FA and recall only
  (rounding makes the true change of a quantile differ from the effect).
* ``short-candidate``: the main grid, but the candidate run has N / 10 requests (20, 200,
  5,000) at the same rate (6 s) against baseline runs of N: the sampling variance of the
  candidate's statistic is ten times a baseline run's.
* ``--quick``: the same grid with 40 / 40 / 8 replications (quantized 20 / 10 / 2): a smoke
  run of about a minute, too coarse to judge the product by.

Cost: about 18 CPU-minutes (9-10 min wall with 2 processes on the idle 2-core machine) for the
full run on the working tree of 2026-12-06 (about 9 ms per judge_run call at N <= 2000 and 60 ms
at 50,000, generation included); an implementation that bootstraps can be 30x slower:
``--estimate`` times it first.

Splits: ``--split dev`` and ``--split heldout`` (default) draw everything (scenario parameters
and noise) from different seed streams. The published tables are the held-out ones; tune
nothing on them.

Usage
-----
    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/verdict_calibration.py            # full
    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/verdict_calibration.py --quick    # ~1 min
    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/verdict_calibration.py --estimate # time it
    ... --split dev            # the stream to experiment on
    ... --reps 100,50,10       # replications for N = 200, 2000, 50000 (main variant)

Writes the tables to ``bench/results/verdict_calibration.md`` (``.quick`` / ``.dev`` before
``.md`` for those runs, or ``--out``) and prints them, with PASS/FAIL per target, the wall
time, the load average and the peak RSS. At most 2 worker processes (``--jobs``).
"""

from __future__ import annotations

import os

# One thread per process: at most two processes share a 2-core machine (before numpy/polars).
for _var in ("POLARS_MAX_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import multiprocessing as mp  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter, defaultdict  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from provenance import git_state  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"

THRESHOLD = 0.20
ALPHA = 0.05
ENDPOINT = "/api/items"
DURATION_US = 60_000_000  # each run lasts 60 s
RUN_START = datetime(2026, 1, 1, tzinfo=UTC)
DAY_US = 86_400_000_000
TAIL_SHARE, TAIL_FACTOR = 0.05, 3.0
KAPPA = 1000.0  # Beta concentration of the per-run error rate

# Seed streams: the published tables use "heldout"; experiment on "dev".
SPLIT_ENTROPY = {"dev": 0x6D65_7672_6465_7631, "heldout": 0x6865_6C64_6F75_7431}
VARIANT_ID = {
    "lognormal": 1,
    "quantized": 2,
    "history-5": 3,
    "history-20": 4,
    "intervals": 5,
    "short-candidate": 6,
}
# The intervals variant: a run reported as aggregates of 10 s windows, as Artillery does.
WINDOW_US = 10_000_000
# The history variants: one baseline run (the `compare` gate's case, a pinned baseline) and the
# combination's H earlier runs, whose spread the pipeline measures (`history_noise`).
HISTORIES = {"history-5": 5, "history-20": 20}
# The short-candidate variant: the candidate has a tenth of its baseline runs' requests (a smoke
# run of a branch against nightly runs, a run cut short).
SHORT_CANDIDATE = 10

KS = (1, 3, 5)
NS = (200, 2000, 50000)
DRIFTS = (0.0, 0.03, 0.10)
EFFECTS = (0.0, 0.10, 0.15, 0.20, 0.25, 0.30, 0.50)
DEFAULT_REPS = {200: 500, 2000: 500, 50000: 100}
Q_DRIFTS = (0.03,)
Q_EFFECTS = (0.0, 0.30, 0.50)
Q_REPS = {200: 300, 2000: 200, 50000: 50}
QUICK_REPS = {200: 40, 2000: 40, 50000: 8}  # --quick: the same grid, fewer replications
QUICK_Q_REPS = {200: 20, 2000: 10, 50000: 2}

LATENCY = ("latency_p50", "latency_p95", "latency_p99")
SCORED = (*LATENCY, "error_rate", "throughput")


@dataclass(frozen=True)
class Job:
    """One replication of one (variant, N, k): every drift x effect of it, on the same draws."""

    variant: str
    split: str
    n: int
    k: int
    rep: int
    drifts: tuple[float, ...]
    effects: tuple[float, ...]

    @property
    def history(self) -> int:
        """Earlier runs of the combination drawn before the baseline (history variants)."""
        return HISTORIES.get(self.variant, 0)

    @property
    def candidate_n(self) -> int:
        """Requests of the candidate run (a tenth of ``n`` in the short-candidate variant)."""
        return self.n // SHORT_CANDIDATE if self.variant == "short-candidate" else self.n


# ----------------------------------------------------------------------------- generator


def seed_id(variant: str) -> int:
    """The seed stream of a variant: the short candidate shares the main variant's (its
    scenarios and baseline runs are the main variant's; the candidate is drawn last)."""
    return VARIANT_ID["lognormal" if variant == "short-candidate" else variant]


def scenario(split: str, variant: str, rep: int) -> dict:
    """The replication's scenario parameters (same for replication ``rep`` in every cell)."""
    seq = np.random.SeedSequence(SPLIT_ENTROPY[split], spawn_key=(0, seed_id(variant), rep))
    rng = np.random.default_rng(seq)
    lo, hi = (2.0, 4.0) if variant == "quantized" else (20.0, 200.0)
    return {
        "median": float(np.exp(rng.uniform(np.log(lo), np.log(hi)))),
        "sigma": float(rng.uniform(0.4, 0.6)),
        "tail": "mixture" if rng.random() < 0.5 else "lognormal",
        "error_rate": float(np.exp(rng.uniform(np.log(0.005), np.log(0.02)))),
    }


def draw_runs(job: Job, params: dict) -> list[dict]:
    """The history's runs (history variants), k baseline runs and the candidate (last), before
    drift and effect."""
    seq = np.random.SeedSequence(
        SPLIT_ENTROPY[job.split], spawn_key=(1, seed_id(job.variant), job.n, job.k, job.rep)
    )
    rng = np.random.default_rng(seq)
    p = params["error_rate"]
    runs = []
    for j in range(-job.history, job.k + 1):
        n = job.candidate_n if j == job.k else job.n
        lat = params["median"] * np.exp(params["sigma"] * rng.standard_normal(n))
        if params["tail"] == "mixture":
            lat = np.where(rng.random(n) < TAIL_SHARE, lat * TAIL_FACTOR, lat)
        p_run = rng.beta(KAPPA * p, KAPPA * (1 - p))
        ok = rng.random(n) >= p_run
        # the same request rate in every run: a short candidate lasts a tenth of the time
        slot = (np.arange(n) + rng.random(n)) * (DURATION_US / job.n)
        runs.append(
            {
                "run_id": f"hist-{-j}" if j < 0 else f"base-{j}" if j < job.k else "cand",
                "latency": lat,
                "ok": ok,
                # baseline runs on the days before the candidate
                "ts_us": (j - job.k) * DAY_US + slot.astype(np.int64),
                "run_z": float(rng.standard_normal()),  # the run effect, in units of its sd
            }
        )
    return runs


def requests_frame(run: dict, factor: float, quantized: bool) -> pl.DataFrame:
    from metrics_pipeline.contracts.tables import conform

    lat = run["latency"] * factor
    if quantized:
        lat = np.rint(lat)
    ok = run["ok"]
    start_us = int(RUN_START.timestamp() * 1_000_000)
    frame = pl.DataFrame(
        {
            "ts": run["ts_us"] + start_us,
            "latency_ms": lat,
            "ok": ok,
            "status": np.where(ok, 200, 500).astype(np.int32),
            "line_no": np.arange(1, len(lat) + 1, dtype=np.int64),
        }
    ).with_columns(
        pl.col("ts").cast(pl.Datetime("us", "UTC")),
        pl.lit(run["run_id"]).alias("run_id"),
        pl.lit(ENDPOINT).alias("endpoint"),
        pl.lit("GET").alias("method"),
        pl.when(pl.col("ok")).then(None).otherwise(pl.lit("HTTP 500")).alias("error"),
        pl.lit(2048).alias("bytes_received"),
        pl.lit(256).alias("bytes_sent"),
        pl.lit(f"sim/{run['run_id']}.jsonl").alias("source_file"),
    )
    return conform("requests", frame)


def intervals_frame(run: dict, factor: float) -> pl.DataFrame:
    """The run as a tool without per-request data reports it (Artillery: one summary per 10 s
    window): per window the request and error counts and, of the successful requests'
    latencies, mean, min, max and numpy's (linear) p50, p90, p95, p99."""
    from metrics_pipeline.contracts.tables import conform

    lat, ok = run["latency"] * factor, run["ok"]
    window = (run["ts_us"] - run["ts_us"].min()) // WINDOW_US
    start_us = int(RUN_START.timestamp() * 1_000_000)
    rows = []
    for w in np.unique(window):
        inside = window == w
        good = lat[inside & ok]
        stats = dict.fromkeys(("mean", "min", "p50", "p90", "p95", "p99", "max"))
        if good.size:
            p50, p90, p95, p99 = np.quantile(good, [0.50, 0.90, 0.95, 0.99])
            stats = {
                "mean": good.mean(),
                "min": good.min(),
                "p50": p50,
                "p90": p90,
                "p95": p95,
                "p99": p99,
                "max": good.max(),
            }
        rows.append(
            {
                "run_id": run["run_id"],
                "ts": start_us + int(run["ts_us"].min()) + (int(w) + 1) * WINDOW_US,
                "endpoint": ENDPOINT,
                "source_file": f"sim/{run['run_id']}.json",
                "interval_s": WINDOW_US / 1e6,
                "count": int(inside.sum()),
                "errors": int((inside & ~ok).sum()),
                **{key: None if v is None else float(v) for key, v in stats.items()},
            }
        )
    frame = pl.DataFrame(rows).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))
    return conform("interval_stats", frame)


def summaries_frame(runs: list[dict], scales: list[float]) -> pl.DataFrame:
    """The history runs' ``run_summary`` columns that the product reads for the run noise:
    p50, p95 and p99 of the successful requests' latencies (numpy's default, linear
    interpolation), requests per second, the requests and the error rate."""
    rows = []
    for run, scale in zip(runs, scales, strict=True):
        ok_lat = run["latency"][run["ok"]] * scale
        p50, p95, p99 = np.quantile(ok_lat, [0.50, 0.95, 0.99])
        rows.append(
            {
                "run_id": run["run_id"],
                "endpoint": ENDPOINT,
                "latency_p50": p50,
                "latency_p95": p95,
                "latency_p99": p99,
                "throughput_rps": len(run["latency"]) / (DURATION_US / 1e6),
                "requests": len(run["latency"]),
                "error_rate": 1.0 - float(np.mean(run["ok"])),
            }
        )
    return pl.DataFrame(rows)


# ----------------------------------------------------------------------------- worker


def vm_hwm_mb() -> float:
    """This process's peak resident set (VmHWM), MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_job(job: Job) -> dict:
    """Every drift x effect of one replication: a judge_run call each."""
    from metrics_pipeline.analysis.verdicts import VerdictPolicy, history_noise, judge_run
    from metrics_pipeline.contracts.tables import empty

    policy = VerdictPolicy.uniform(threshold=THRESHOLD, alpha=ALPHA)
    params = scenario(job.split, job.variant, job.rep)
    drawn = draw_runs(job, params)
    earlier, runs = drawn[: job.history], drawn[job.history :]
    quantized = job.variant == "quantized"
    intervals = job.variant == "intervals"
    baseline_ids = [r["run_id"] for r in runs[:-1]]
    cpu0 = time.process_time()
    out = {"job": job, "tail": params["tail"], "results": [], "errors": [], "seconds": []}
    for drift in job.drifts:
        sd = math.log1p(drift)
        scale = [math.exp(sd * r["run_z"]) for r in runs]
        history = (
            history_noise(summaries_frame(earlier, [math.exp(sd * r["run_z"]) for r in earlier]))
            if earlier
            else None
        )
        base_pairs = zip(runs[:-1], scale[:-1], strict=True)
        if intervals:
            baseline = empty("requests")
            base_intervals = pl.concat([intervals_frame(r, s) for r, s in base_pairs])
        else:
            baseline = pl.concat([requests_frame(r, s, quantized) for r, s in base_pairs])
        for effect in job.effects:
            factor = scale[-1] * (1 + effect)
            if intervals:
                candidate, intervals_of = (
                    empty("requests"),
                    {
                        "candidate_intervals": intervals_frame(runs[-1], factor),
                        "baseline_intervals": base_intervals,
                    },
                )
            else:
                candidate, intervals_of = requests_frame(runs[-1], factor, quantized), {}
            t0 = time.perf_counter()
            try:
                verdicts = judge_run(
                    candidate, baseline, baseline_ids, policy, history=history, **intervals_of
                )
            except Exception as exc:  # a failure is a result: count it, keep going
                out["errors"].append((drift, effect, f"{type(exc).__name__}: {exc}"[:300]))
                continue
            out["seconds"].append(time.perf_counter() - t0)
            cols = ["metric", "verdict", "change", "ci_low", "ci_high", "regression", "noise"]
            rows = verdicts.select([c for c in cols if c in verdicts.columns]).to_dicts()
            out["results"].append((drift, effect, rows))
    out["cpu"] = time.process_time() - cpu0  # generation included
    out["hwm_mb"] = vm_hwm_mb()
    return out


# ----------------------------------------------------------------------------- plan


def plan(args) -> list[Job]:
    jobs: list[Job] = []
    reps = QUICK_REPS if args.quick else dict(zip(NS, args.reps, strict=True))
    q_reps = QUICK_Q_REPS if args.quick else Q_REPS
    main = [(n, k, reps[n], DRIFTS) for n in NS for k in KS]
    quant = [(n, k, q_reps[n]) for n in NS for k in KS]
    for n, k, r, drifts in main:
        jobs += [Job("lognormal", args.split, n, k, i, drifts, EFFECTS) for i in range(r)]
    for variant in HISTORIES if not args.no_history else ():
        for n in NS:
            jobs += [Job(variant, args.split, n, 1, i, DRIFTS, EFFECTS) for i in range(reps[n])]
    if not args.no_intervals:
        for n, k, r, drifts in main:
            jobs += [Job("intervals", args.split, n, k, i, drifts, EFFECTS) for i in range(r)]
    if not args.no_short:
        for n, k, r, drifts in main:
            jobs += [Job("short-candidate", args.split, n, k, i, drifts, EFFECTS) for i in range(r)]
    if not args.no_quantized:
        for n, k, r in quant:
            jobs += [Job("quantized", args.split, n, k, i, Q_DRIFTS, Q_EFFECTS) for i in range(r)]
    # longest first, so the two workers finish together
    jobs.sort(key=lambda j: -(j.n * (j.k + 1) * len(j.drifts) * len(j.effects)))
    return jobs


def calls(jobs: list[Job]) -> dict[int, int]:
    out: Counter = Counter()
    for j in jobs:
        out[j.n] += len(j.drifts) * len(j.effects)
    return dict(out)


def full_plan_calls(reps) -> dict[int, int]:
    ns = argparse.Namespace(
        quick=False,
        reps=reps,
        split="heldout",
        no_quantized=False,
        no_history=False,
        no_intervals=False,
        no_short=False,
    )
    return calls(plan(ns))


# ----------------------------------------------------------------------------- scoring


class Tally:
    def __init__(self):
        # (variant, n, k, drift, effect, metric) -> counts
        self.rows: dict[tuple, Counter] = defaultdict(Counter)
        # (variant, n, k, drift, effect) -> counts over the whole run
        self.runs: dict[tuple, Counter] = defaultdict(Counter)
        # (variant, tail, effect, metric) -> counts, pooled over cells
        self.tails: dict[tuple, Counter] = defaultdict(Counter)
        self.seconds: dict[int, list[float]] = defaultdict(list)
        self.seconds_k: dict[tuple, list[float]] = defaultdict(list)
        self.cpu: Counter = Counter()  # worker CPU s by N, generation included
        self.n_calls: Counter = Counter()
        self.errors: list[tuple] = []
        self.metrics_seen: Counter = Counter()
        self.verdicts_seen: Counter = Counter()
        self.inconsistent = 0
        self.noise_seen: Counter = Counter()  # (k, noise) of latency rows, if reported
        self.hwm_mb = 0.0

    def add(self, out: dict) -> None:
        job: Job = out["job"]
        self.hwm_mb = max(self.hwm_mb, out["hwm_mb"])
        self.seconds[job.n] += out["seconds"]
        self.seconds_k[(job.n, job.k)] += out["seconds"]
        self.cpu[job.n] += out["cpu"]
        self.n_calls[job.n] += len(job.drifts) * len(job.effects)
        for drift, effect, msg in out["errors"]:
            self.errors.append((job, drift, effect, msg))
        for drift, effect, rows in out["results"]:
            run = self.runs[(job.variant, job.n, job.k, drift, effect)]
            run["n"] += 1
            flagged = set()
            for row in rows:
                metric, verdict = row["metric"], row["verdict"]
                self.metrics_seen[metric] += 1
                self.verdicts_seen[verdict] += 1
                if "regression" in row and row["regression"] is not None:
                    self.inconsistent += bool(row["regression"]) != (verdict == "regression")
                if verdict == "regression":
                    flagged.add(metric)
                if metric in LATENCY and row.get("noise") is not None:
                    self.noise_seen[(job.k, row["noise"])] += 1
                if metric not in SCORED:
                    continue
                cov = None
                if metric in LATENCY:
                    lo, hi = row.get("ci_low"), row.get("ci_high")
                    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
                        cov = "na"
                    else:
                        cov = lo <= effect <= hi
                for c in (
                    self.rows[(job.variant, job.n, job.k, drift, effect, metric)],
                    self.tails[(job.variant, out["tail"], effect, metric)],
                ):
                    c["n"] += 1
                    c["reg"] += verdict == "regression"
                    c["v:" + str(verdict)] += 1
                    if cov == "na":
                        c["ci_na"] += 1
                    elif cov is not None:
                        c["cov_n"] += 1
                        c["cov"] += cov
            run["any"] += bool(flagged)
            run["latency"] += bool(flagged & set(LATENCY))
            run["error_rate"] += "error_rate" in flagged
            run["throughput"] += "throughput" in flagged
            run["other"] += bool(flagged - set(SCORED))
            for row in rows:
                if row["verdict"] not in ("ok", "regression"):
                    run["v:" + str(row["verdict"])] += 1


# A replication's intervals at the seven effects come from the same draws (common random
# numbers): on the log scale the effect only shifts the candidate, so they cover together or
# not at all. A coverage rate's standard error counts replications, not intervals.
PER_REPLICATION = len(EFFECTS)


def rate(x: int, n: int, per: int = 1) -> tuple[float, float]:
    """The rate ``x / n`` and its binomial standard error over ``n / per`` independent
    trials (``per`` outcomes of one replication move together)."""
    if n == 0:
        return float("nan"), float("nan")
    p = x / n
    return p, math.sqrt(p * (1 - p) / (n / per))


def fmt(x: int, n: int, per: int = 1) -> str:
    """Percentage with its Monte-Carlo SE; at 0 or 100 % the rule-of-three 95 % bound."""
    if n == 0:
        return "-"
    p, se = rate(x, n, per)
    if x == 0:
        return f"0.0 (<{min(100.0, 300 * per / n):.1f})"
    if x == n:
        return f"100 (>{max(0.0, 100 - 300 * per / n):.1f})"
    return f"{100 * p:.1f} ({100 * se:.1f})"


# ----------------------------------------------------------------------------- report


def cells(tally: Tally, variant: str) -> list[tuple[int, int, float]]:
    keys = {(n, k, d) for (v, n, k, d, _e) in tally.runs if v == variant}
    return sorted(keys)


def latency_metrics(tally: Tally) -> list[str]:
    return [m for m in LATENCY if tally.metrics_seen[m]]


def main_tables(tally: Tally, variant: str = "lognormal") -> list[str]:
    lines = []
    head = (
        "| k | N | drift | R | FA % | +10 % flagged | +15 % | +20 % | +25 % | +30 % | +50 % "
        "| CI coverage % |"
    )
    for metric in latency_metrics(tally):
        lines += [f"### `{metric}`", "", head, "|" + "---|" * 12]
        for n, k, d in cells(tally, variant):
            row = [tally.rows[(variant, n, k, d, e, metric)] for e in EFFECTS]
            cov = sum(c["cov"] for c in row), sum(c["cov_n"] for c in row)
            na = sum(c["ci_na"] for c in row)
            cov_s = fmt(*cov, PER_REPLICATION) + (f", {na} no CI" if na else "")
            lines.append(
                f"| {k} | {n} | {100 * d:.0f} % | {row[0]['n']} | "
                + " | ".join(fmt(c["reg"], c["n"]) for c in row)
                + f" | {cov_s} |"
            )
        lines.append("")
    return lines


def run_table(tally: Tally, variant: str = "lognormal") -> list[str]:
    lines = [
        "| k | N | drift | R | any row % | a latency row % | error_rate % | throughput % "
        "| other verdicts at effect 0 |",
        "|" + "---|" * 9,
    ]
    for n, k, d in cells(tally, variant):
        c = tally.runs[(variant, n, k, d, 0.0)]
        other = ", ".join(f"{key[2:]} {v}" for key, v in sorted(c.items()) if key[:2] == "v:")
        lines.append(
            f"| {k} | {n} | {100 * d:.0f} % | {c['n']} | {fmt(c['any'], c['n'])} | "
            f"{fmt(c['latency'], c['n'])} | {fmt(c['error_rate'], c['n'])} | "
            f"{fmt(c['throughput'], c['n'])} | {other or '-'} |"
        )
    return [*lines, ""]


def tail_table(tally: Tally) -> list[str]:
    ms = latency_metrics(tally)
    head = "| tail | metric | R at effect 0 | FA % | +10 % flagged | +30 % | CI coverage % |"
    lines = [head, "|" + "---|" * 7]
    for tail in ("lognormal", "mixture"):
        for m in ms:
            by = {e: tally.tails[("lognormal", tail, e, m)] for e in EFFECTS}
            if not by[0.0]["n"]:
                continue
            cov = sum(c["cov"] for c in by.values()), sum(c["cov_n"] for c in by.values())
            lines.append(
                f"| {tail} | {m} | {by[0.0]['n']} | {fmt(by[0.0]['reg'], by[0.0]['n'])} | "
                f"{fmt(by[0.1]['reg'], by[0.1]['n'])} | {fmt(by[0.3]['reg'], by[0.3]['n'])} | "
                f"{fmt(*cov, PER_REPLICATION)} |"
            )
    return [*lines, ""]


def quantized_table(tally: Tally) -> list[str]:
    ms = [m for m in ("latency_p50", "latency_p95") if tally.metrics_seen[m]]
    cols = [f"{m[8:]} FA %" for m in ms]
    cols += [f"{m[8:]} +{int(100 * e)} %" for e in Q_EFFECTS[1:] for m in ms]
    lines = [
        "| k | N | drift | R | " + " | ".join(cols) + " | run FA (any row) % |",
        "|" + "---|" * (5 + len(cols)),
    ]
    for n, k, d in cells(tally, "quantized"):
        vals = [tally.rows[("quantized", n, k, d, 0.0, m)] for m in ms]
        vals += [tally.rows[("quantized", n, k, d, e, m)] for e in Q_EFFECTS[1:] for m in ms]
        run = tally.runs[("quantized", n, k, d, 0.0)]
        lines.append(
            f"| {k} | {n} | {100 * d:.0f} % | {run['n']} | "
            + " | ".join(fmt(c["reg"], c["n"]) for c in vals)
            + f" | {fmt(run['any'], run['n'])} |"
        )
    return [*lines, ""]


def check(
    label: str,
    pairs: list[tuple[str, int, int]],
    lo: float | None,
    hi: float | None,
    per: int = 1,
) -> tuple[bool, str]:
    """PASS when every cell's point estimate is within [lo, hi] (``per``: see ``rate``)."""
    if not pairs:
        return True, f"SKIP  {label}: no cells in this run"
    fails, beyond, worst, worst_gap = 0, 0, None, -1.0
    for name, x, n in pairs:
        p, se = rate(x, n, per)
        gap = max((lo - p) if lo is not None else -1, (p - hi) if hi is not None else -1)
        if gap > 0:
            fails += 1
            beyond += gap > 2 * se
        if gap > worst_gap:
            worst, worst_gap = (name, x, n), gap
    name, x, n = worst
    status = "PASS" if fails == 0 else "FAIL"
    detail = f"{fails}/{len(pairs)} cells outside"
    if fails:
        detail += f" ({beyond} by more than 2 MC SE)"
    return fails == 0, f"{status}  {label}: {detail}; worst {name}: {fmt(x, n, per)} %"


def targets(tally: Tally, variant: str = "lognormal") -> list[str]:
    lines = []
    cs = cells(tally, variant)
    within = f" ({variant})" if variant != "lognormal" else ""

    def cell_name(n, k, d):
        return f"k={k} N={n} drift={100 * d:.0f}%"

    for k in sorted({k for _n, k, _d in cs}):
        pairs = [
            (cell_name(n, kk, d), c["any"], c["n"])
            for n, kk, d in cs
            if kk == k and d == 0.10
            for c in [tally.runs[(variant, n, kk, d, 0.0)]]
        ]
        lines.append(
            check(
                f"false alarms on unchanged runs (any row) <= 5 %, k={k}, drift 10 %{within}",
                pairs,
                None,
                0.05,
            )[1]
        )
    for m in latency_metrics(tally):

        def pairs_at(effect, keep=lambda n, k, d: True, m=m):
            return [
                (cell_name(n, k, d), c["reg"], c["n"])
                for n, k, d in cs
                if keep(n, k, d)
                for c in [tally.rows[(variant, n, k, d, effect, m)]]
                if c["n"]
            ]

        lines.append(
            check(f"{m} recall >= 95 % at +30 %, every cell{within}", pairs_at(0.30), 0.95, None)[1]
        )
        if variant == "lognormal":
            lines.append(
                check(
                    f"{m} recall >= 90 % at +25 %, k >= 3 and drift <= 3 %",
                    pairs_at(0.25, lambda n, k, d: k >= 3 and d <= 0.03),
                    0.90,
                    None,
                )[1]
            )
        lines.append(
            check(f"{m} +10 % flagged <= 5 %, every cell{within}", pairs_at(0.10), None, 0.05)[1]
        )
        cov = []
        for n, k, d in cs:
            row = [tally.rows[(variant, n, k, d, e, m)] for e in EFFECTS]
            cov.append(
                (cell_name(n, k, d), sum(c["cov"] for c in row), sum(c["cov_n"] for c in row))
            )
        lines.append(
            check(
                f"{m} CI coverage within 93-97 %, every cell{within}",
                cov,
                0.93,
                0.97,
                PER_REPLICATION,
            )[1]
        )
    return lines


def estimate_lines(per_call: dict[int, float], jobs: int, reps) -> list[str]:
    """The full run's cost from CPU seconds per judge_run call (data generation included)."""
    full = full_plan_calls(reps)
    cpu = sum(full[n] * per_call.get(n, float("nan")) for n in full)
    parts = ", ".join(
        f"N={n}: {full[n]} calls x {per_call.get(n, float('nan')):.4f} s" for n in sorted(full)
    )
    return [
        f"Full run (--reps {','.join(map(str, reps))}) estimated from these CPU seconds per "
        f"call (generation included): {cpu / 60:.1f} CPU-min, ~{cpu / 60 / jobs:.1f} min wall "
        f"at {jobs} processes on an idle machine ({parts})."
    ]


def pilot(args) -> dict[int, float]:
    """CPU seconds per call at each N (k=3, 2 drifts x 2 effects, after a warm-up call)."""
    times = {}
    run_job(Job("lognormal", args.split, 200, 1, 0, (0.0,), (0.0,)))  # imports, warm-up
    for n in NS:
        out = run_job(Job("lognormal", args.split, n, 3, 0, (0.0, 0.1), (0.0, 0.3)))
        times[n] = out["cpu"] / 4
        print(
            f"pilot: N={n}, k=3: {times[n]:.4f} CPU s per call, judge_run alone "
            f"{np.mean(out['seconds']):.4f} s",
            flush=True,
        )
    return times


# ----------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run, about a minute")
    ap.add_argument("--split", choices=("dev", "heldout"), default="heldout")
    ap.add_argument(
        "--reps",
        default=",".join(str(DEFAULT_REPS[n]) for n in NS),
        help="replications per cell for N = 200,2000,50000 (main variant)",
    )
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (at most 2)")
    ap.add_argument("--no-quantized", action="store_true", help="skip the quantized variant")
    ap.add_argument("--no-history", action="store_true", help="skip the history variants")
    ap.add_argument("--no-intervals", action="store_true", help="skip the intervals variant")
    ap.add_argument("--no-short", action="store_true", help="skip the short-candidate variant")
    ap.add_argument(
        "--estimate",
        action="store_true",
        help="time one judge_run per N and print the full run's estimate; no run",
    )
    ap.add_argument("--out", type=Path, help="markdown output (default bench/results/...)")
    args = ap.parse_args()
    args.reps = tuple(int(x) for x in args.reps.split(","))
    if len(args.reps) != len(NS):
        ap.error("--reps takes three numbers: N=200,2000,50000")
    args.jobs = max(1, min(2, args.jobs))

    started, t0 = datetime.now(UTC), time.perf_counter()
    code = git_state()  # at the start: the tree may change while the workers run
    load_start = os.getloadavg()
    if args.estimate:
        per_call = pilot(args)
        print("\n".join(estimate_lines(per_call, args.jobs, args.reps)))
        return

    jobs = plan(args)
    n_calls = sum(calls(jobs).values())
    print(
        f"{len(jobs)} replications, {n_calls} judge_run calls, {args.jobs} processes, "
        f"split {args.split}",
        flush=True,
    )
    tally = Tally()
    done, next_report = 0, 0.05
    ctx = mp.get_context("spawn")  # no fork of a process with polars' thread pool
    with ctx.Pool(args.jobs) as pool:
        for out in pool.imap_unordered(run_job, jobs, chunksize=1):
            tally.add(out)
            done += 1
            if done / len(jobs) >= next_report or done == len(jobs):
                el = time.perf_counter() - t0
                print(
                    f"  {done}/{len(jobs)} replications, {el:.0f} s, "
                    f"eta {el / done * (len(jobs) - done):.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
                next_report += 0.05
    wall = time.perf_counter() - t0

    per_call = {n: tally.cpu[n] / tally.n_calls[n] for n in tally.n_calls if tally.n_calls[n]}
    slow = {n: float(np.max(s)) for n, s in tally.seconds.items() if s}
    self_ru = resource.getrusage(resource.RUSAGE_SELF)
    child_ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_end = os.getloadavg()
    cmd = "python bench/verdict_calibration.py " + " ".join(sys.argv[1:])

    out: list[str] = [
        "# Verdict calibration"
        + (" (--quick: smoke run, not for publication)" if args.quick else ""),
        "",
        f"`{cmd.strip()}`, split **{args.split}**, started {started:%Y-%m-%d %H:%M} UTC, "
        f"code {code}; Python {platform.python_version()}, polars {pl.__version__}, "
        f"numpy {np.__version__}, {os.cpu_count()} CPUs, {args.jobs} processes.",
        "",
        f"Policy `VerdictPolicy.uniform(threshold={THRESHOLD}, alpha={ALPHA})`, defaults "
        "otherwise. R = replications per cell. Each entry is a percentage with its "
        'Monte-Carlo standard error in parentheses ("<x": 0 of R, one-sided 95 % bound '
        "3/R). Coverage pools all seven effects (7R intervals; its standard error counts the R "
        "replications, whose seven intervals share their draws). Drift d: every run's latencies "
        "x exp(e), e ~ Normal(0, sd = ln(1 + d)). Model and definitions: the module docstring "
        "of `bench/verdict_calibration.py`.",
        "",
        "## Targets",
        "",
        *(
            ["**Smoke run: too few replications to judge the product by.**", ""]
            if args.quick
            else []
        ),
        'Point estimate per cell against the target; a failure "by more than 2 MC SE" is '
        "not explained by simulation noise.",
        "",
        "```",
        *targets(tally),
        *(line for v in HISTORIES if not args.no_history for line in targets(tally, v)),
        *(targets(tally, "intervals") if not args.no_intervals else []),
        *(targets(tally, "short-candidate") if not args.no_short else []),
        "```",
        "",
        "## Latency rows, by baseline runs k x requests per run N x drift",
        "",
        *main_tables(tally),
        "## Per run: false alarms at effect 0 (any row flagged `regression`)",
        "",
        "`error_rate` under overdispersion (per-run error rate ~ Beta, kappa = 1000); "
        "`throughput` never truly changes.",
        "",
        *run_table(tally),
        "## By tail shape (all cells pooled)",
        "",
        *tail_table(tally),
    ]
    for variant, h in HISTORIES.items() if not args.no_history else ():
        out += [
            f"## One baseline run and the combination's {h} earlier runs ({variant})",
            "",
            f"k = 1 as above, plus the summaries (p50, p95, p99, throughput, error rate) of {h} "
            "earlier runs drawn like the baseline run, passed as `history=history_noise(...)`, "
            "as the pipeline does for a combination with earlier accepted runs.",
            "",
            *main_tables(tally, variant),
            "Per run, effect 0:",
            "",
            *run_table(tally, variant),
        ]
    if not args.no_intervals:
        out += [
            "## Runs known only by 10 s aggregates (intervals)",
            "",
            "The main variant's runs, each handed to `judge_run` as `interval_stats` rows only "
            "(per 10 s window: request and error counts, mean, min, max and numpy's p50, p90, "
            "p95, p99 of the successful requests), as Artillery reports a run.",
            "",
            *main_tables(tally, "intervals"),
            "Per run, effect 0:",
            "",
            *run_table(tally, "intervals"),
        ]
    if not args.no_short:
        out += [
            "## A candidate with a tenth of the requests (short-candidate)",
            "",
            f"The main variant's draws, but the candidate run has N / {SHORT_CANDIDATE} requests "
            "(20, 200, 5,000; N in the tables is the baseline runs') at the same rate, in 6 s: a "
            "short run of a branch against full nightly runs.",
            "",
            *main_tables(tally, "short-candidate"),
            "Per run, effect 0:",
            "",
            *run_table(tally, "short-candidate"),
        ]
    if not args.no_quantized:
        out += [
            "## Quantized latencies (whole ms, median 2-4 ms)",
            "",
            *quantized_table(tally),
        ]
    timing = [
        f"| {n} | {len(s)} | {np.mean(s):.3f} | {np.median(s):.3f} | {np.max(s):.3f} |"
        for n, s in sorted(tally.seconds.items())
    ]
    out += [
        "## Run",
        "",
        "judge_run wall seconds per call, by N (both variants):",
        "",
        "| N | judge_run calls | mean s | median s | max s |",
        "|---|---|---|---|---|",
        *timing,
        "",
        *estimate_lines(per_call, args.jobs, args.reps if not args.quick else DEFAULT_REPS_T),
        "",
        f"Wall time {wall:.0f} s ({wall / 60:.1f} min); load average at start "
        f"{load_start[0]:.2f} / {load_start[1]:.2f} / {load_start[2]:.2f}, at end "
        f"{load_end[0]:.2f} / {load_end[1]:.2f} / {load_end[2]:.2f} (1/5/15 min); "
        f"CPU s: main {self_ru.ru_utime + self_ru.ru_stime:.0f}, workers "
        f"{child_ru.ru_utime + child_ru.ru_stime:.0f}.",
        f"Peak RSS: main {self_ru.ru_maxrss / 1024:.0f} MiB (getrusage), largest worker "
        f"{child_ru.ru_maxrss / 1024:.0f} MiB (getrusage RUSAGE_CHILDREN), "
        f"{tally.hwm_mb:.0f} MiB (worker VmHWM).",
        f"Verdicts seen: {dict(tally.verdicts_seen)}; metrics: {sorted(tally.metrics_seen)}; "
        f"rows whose `regression` flag disagrees with `verdict == 'regression'`: "
        f"{tally.inconsistent}.",
    ]
    if tally.noise_seen:
        out.append(
            "Latency rows' `noise` (source of the run-noise term) by k: "
            + ", ".join(f"k={k} {src} {c}" for (k, src), c in sorted(tally.noise_seen.items()))
            + "."
        )
    if any(t > 2.0 for t in slow.values()):
        out.append(
            "Slow: a single judge_run call took more than 2 s at "
            + ", ".join(f"N={n} (max {t:.1f} s)" for n, t in slow.items() if t > 2.0)
        )
    if tally.errors:
        out.append(
            f"judge_run raised {len(tally.errors)} times; first: "
            f"{tally.errors[0][0]} drift={tally.errors[0][1]} "
            f"effect={tally.errors[0][2]}: {tally.errors[0][3]}"
        )
    text = "\n".join(out) + "\n"
    print(text)
    path = args.out
    if path is None:
        suffix = (".quick" if args.quick else "") + (".dev" if args.split == "dev" else "")
        path = RESULTS / f"verdict_calibration{suffix}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"written to {path}")


DEFAULT_REPS_T = tuple(DEFAULT_REPS[n] for n in NS)

if __name__ == "__main__":
    main()
