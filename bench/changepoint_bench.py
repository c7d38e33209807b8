"""Change points scored the standard way, ours next to BinSeg and PELT as TCPDBench runs them
by default (R changepoint's configuration, rebuilt on ruptures) and Apache Otava.

Two kinds of labelled series:

* **TCPD** (the Turing change-point benchmark, van den Burg & Williams 2020): the 31 univariate
  series with their annotators' change points. Not stored here: clone
  https://github.com/alan-turing-institute/TCPD and pass its folder with ``--tcpd``. The series
  are split by a hash of their name into a development part (looked at while designing) and a
  held-out part (scored, not tuned on); both are reported.
* **Performance histories** generated here, independently of the detector: nightly p95-like
  series of 40-160 runs with single and double steps, linear drift, AR(1) noise, outliers,
  missing runs and weekly seasonality, with the true change points as labels; and long
  histories (150-800 runs) like a browser benchmark's: two modes, outliers, steps of 3-10 %.

Scores, as TCPDBench defines them: F1 with a margin of 5 (0 counts as a change point in every
set; precision against the union of the annotators, recall averaged over annotators) and
Cover (the overlap of the predicted segmentation with each annotator's, averaged). For the
histories also: false change points per unchanged series, and the share of steps found within
3 runs. The peers' TCPD scores reproduce those TCPDBench publishes
(``analysis/output/scores/default_*_scores.json`` of alan-turing-institute/TCPDBench) series by
series; see :func:`tcpdbench_default`.

    uv sync --group bench   # ruptures
    python -m venv /tmp/otava && /tmp/otava/bin/pip install apache-otava   # optional peer
    OPENBLAS_NUM_THREADS=1 uv run python bench/changepoint_bench.py --tcpd ../TCPD \
        [--otava /tmp/otava/bin/python] [--histories 200] [--long-histories 60]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metrics_pipeline.stats.history import change_points

MARGIN = 5
# Share of TCPD series (by a hash of the name) kept aside as the held-out part.
HELD_OUT_SHARE = 1 / 3


@dataclass
class Series:
    name: str
    values: np.ndarray
    annotations: dict[str, list[int]]  # annotator -> change points (start of a new segment)
    kind: str = "tcpd"
    steps: list[int] = field(default_factory=list)  # histories: the true steps


# --- scores (TCPDBench's definitions) ------------------------------------------------------


def true_positives(truth: set[int], predicted: set[int], margin: int = MARGIN) -> set[int]:
    """Truth points matched by a distinct prediction within ``margin`` (closest first)."""
    left = set(predicted)
    matched = set()
    for tau in sorted(truth):
        close = sorted((abs(tau - x), x) for x in left if abs(tau - x) <= margin)
        if close:
            matched.add(tau)
            left.remove(close[0][1])
    return matched


def f_measure(annotations: dict[str, list[int]], predicted: list[int]) -> float:
    r"""F1 of TCPDBench: :math:`P = |TP(\cup_k T_k, X)| / |X|`,
    :math:`R = \frac1K \sum_k |TP(T_k, X)| / |T_k|`, :math:`F = 2PR/(P+R)`, 0 in every set."""
    sets = [set(points) | {0} for points in annotations.values()]
    predictions = set(predicted) | {0}
    union = set().union(*sets)
    precision = len(true_positives(union, predictions)) / len(predictions)
    recall = np.mean([len(true_positives(t, predictions)) / len(t) for t in sets])
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _partition(points: list[int], n: int) -> list[set[int]]:
    bounds = [0, *sorted(p for p in set(points) if 0 < p < n), n]
    return [set(range(a, b)) for a, b in itertools.pairwise(bounds) if b > a]


def covering(annotations: dict[str, list[int]], predicted: list[int], n: int) -> float:
    r"""Cover of TCPDBench: :math:`C(S', S) = \frac1n \sum_{R \in S'} |R| \max_{R' \in S}
    J(R, R')` of each annotator's segmentation :math:`S'` by the predicted :math:`S`
    (:math:`J` the Jaccard index), averaged over annotators."""
    found = _partition(predicted, n)
    covers = []
    for points in annotations.values():
        truth = _partition(points, n)
        covers.append(sum(len(r) * max(len(r & q) / len(r | q) for q in found) for r in truth) / n)
    return float(np.mean(covers))


# --- data ----------------------------------------------------------------------------------


def tcpd_series(folder: Path) -> list[Series]:
    annotations = json.loads((folder / "annotations.json").read_text())
    out = []
    for path in sorted(folder.glob("datasets/*/*.json")):
        data = json.loads(path.read_text())
        if data["n_dim"] != 1:
            continue
        raw = data["series"][0]["raw"]
        values = np.array([np.nan if v is None else float(v) for v in raw])
        out.append(Series(data["name"], values, annotations[data["name"]]))
    return out


def held_out(name: str) -> bool:
    digest = int(hashlib.sha256(name.encode()).hexdigest(), 16)
    return (digest % 1000) / 1000 < HELD_OUT_SHARE


def histories(count: int, seed: int) -> list[Series]:
    """Nightly p95-like series with known steps; kinds in equal shares."""
    rng = np.random.default_rng(seed)
    kinds = ["flat", "ar1", "drift", "outliers", "seasonal", "missing", "step", "two_steps"]
    out = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        n = int(rng.integers(40, 161))
        level = float(rng.uniform(50, 500))
        noise = float(rng.uniform(0.02, 0.08))  # relative run-to-run noise
        eps = rng.standard_normal(n)
        if kind == "ar1":
            phi = float(rng.uniform(0.3, 0.7))
            e = np.empty(n)
            e[0] = eps[0]
            for t in range(1, n):
                e[t] = phi * e[t - 1] + np.sqrt(1 - phi**2) * eps[t]
            eps = e
        log_y = np.log(level) + noise * eps
        steps: list[int] = []
        if kind == "drift":
            log_y += np.linspace(0, float(rng.choice([-1, 1]) * rng.uniform(0.1, 0.4)), n)
        if kind == "outliers":
            hit = rng.choice(n, size=max(1, n // 25), replace=False)
            log_y[hit] += rng.uniform(0.3, 1.0, hit.size)
        if kind == "seasonal":
            log_y += 3 * noise * np.isin(np.arange(n) % 7, [5, 6])
        if kind in ("step", "two_steps", "missing"):
            at = int(rng.integers(10, n - 10))
            steps = [at]
            log_y[at:] += float(rng.choice([-1, 1]) * rng.uniform(0.15, 0.4))
        if kind == "two_steps":
            later = int(rng.integers(steps[0] + 10, n)) if steps[0] + 10 < n - 5 else None
            if later is not None and later < n - 5:
                steps.append(later)
                log_y[later:] += float(rng.choice([-1, 1]) * rng.uniform(0.15, 0.4))
        y = np.exp(log_y)
        if kind == "missing":
            y[rng.choice(n, size=n // 10, replace=False)] = np.nan
        out.append(Series(f"{kind}-{i}", y, {"truth": steps}, kind=kind, steps=steps))
    return out


def long_histories(count: int, seed: int) -> list[Series]:
    """Long, noisy histories like a browser benchmark's: 150-800 runs, two modes (10-40 % of
    the runs 5-12 % slower, at random), 2 % outliers (+22-80 %), independent noise of 1-3 %,
    and 0-3 steps of 3-10 % at least 20 runs apart and 20 runs from either end."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        n = int(rng.integers(150, 801))
        wanted = int(rng.integers(0, 4))
        drawn = sorted(rng.choice(np.arange(20, n - 20), size=wanted, replace=False).tolist())
        steps: list[int] = []
        for at in drawn:
            if not steps or at - steps[-1] >= 20:
                steps.append(int(at))
        log_y = np.zeros(n)
        for at in steps:
            log_y[at:] += rng.choice([-1, 1]) * rng.uniform(0.03, 0.10)
        slow = rng.random(n) < rng.uniform(0.1, 0.4)
        log_y += rng.normal(0, rng.uniform(0.01, 0.03), n) + slow * rng.uniform(0.05, 0.12)
        outlier = rng.random(n) < 0.02
        log_y[outlier] += rng.uniform(0.2, 0.6, int(outlier.sum()))
        y = 100 * np.exp(log_y)
        out.append(Series(f"long-{i}", y, {"truth": steps}, kind="long", steps=steps))
    return out


# --- methods -------------------------------------------------------------------------------


def ours(values: np.ndarray) -> list[int]:
    return [c.index for c in change_points(values)]


def zero(values: np.ndarray) -> list[int]:
    return []


def _filled(values: np.ndarray) -> np.ndarray:
    """Missing values interpolated (the peers do not skip NaN), then standardised as R's
    ``scale()`` does (sample standard deviation), as TCPDBench hands every series to them."""
    x = values.astype(float)
    bad = ~np.isfinite(x)
    if bad.any():
        x[bad] = np.interp(np.flatnonzero(bad), np.flatnonzero(~bad), x[~bad])
    sd = x.std(ddof=1) if x.size > 1 else 0.0
    return (x - x.mean()) / (sd if sd > 0 else 1.0)


class _MeanCostMBIC:
    r"""The cost of R changepoint's ``cpt.mean(test.stat="Normal", penalty="MBIC")`` for
    ruptures: a segment's squared deviations from its mean (a normal likelihood of unit
    variance, on the standardised series) plus the logarithm of its length, the segment term
    of the MBIC (Zhang & Siegmund 2007); the penalty per change point is :math:`3 \ln n`."""

    model = "mbic_mean"
    min_size = 1  # cpt.mean's default minseglen

    def fit(self, signal: np.ndarray) -> _MeanCostMBIC:
        x = np.asarray(signal, dtype=float).ravel()
        self.signal = x.reshape(-1, 1)  # ruptures reads the length from it
        self.sums = np.concatenate([[0.0], np.cumsum(x)])
        self.squares = np.concatenate([[0.0], np.cumsum(x * x)])
        return self

    def error(self, start: int, end: int) -> float:
        n = end - start
        total = self.sums[end] - self.sums[start]
        return self.squares[end] - self.squares[start] - total * total / n + np.log(n)


def tcpdbench_default(algorithm: str) -> Callable[[np.ndarray], list[int]]:
    """BinSeg or PELT as TCPDBench ran them by default (``default_binseg``, ``default_pelt``:
    R changepoint's ``cpt.mean`` with the Normal statistic, the MBIC penalty and its default
    minimum segment of 1), on the standardised series. BinSeg takes at most Q = 5 splits and,
    as R's C code does, keeps the leading ones whose gain in cost, each capped at the one
    before, is at least the penalty. Locations as TCPDBench reports R's: the last index of a
    segment, 0-based. On the 31 series this reproduces TCPDBench's published per-series F1 and
    Cover of both methods exactly, but on ``uk_coal_employ``, whose missing values R's
    changepoint refuses (the paper scores that failure 0; here the gaps are interpolated)."""
    import ruptures as rpt
    from ruptures.base import BaseCost

    cost_class = type("MeanCostMBIC", (_MeanCostMBIC, BaseCost), {})

    def detect(values: np.ndarray) -> list[int]:
        x = _filled(values)
        n = x.size
        if n < 4:
            return []
        penalty = 3 * np.log(n)
        if algorithm == "pelt":
            found = rpt.Pelt(custom_cost=cost_class(), min_size=1, jump=1).fit(x).predict(penalty)
        else:
            search = rpt.Binseg(custom_cost=cost_class(), min_size=1, jump=1).fit(x)
            cost = cost_class().fit(x)
            found, before, gain = [n], cost.error(0, n), np.inf
            for k in range(1, 6):  # Q = 5
                try:
                    splits = search.predict(n_bkps=k)
                except rpt.exceptions.BadSegmentationParameters:
                    break
                total = sum(cost.error(a, b) for a, b in itertools.pairwise([0, *splits]))
                gain, before = min(gain, before - total), total
                if gain < penalty:
                    break
                found = splits
        return [b - 1 for b in found if b < n]

    return detect


def otava_runner(python: str) -> Callable[[list[np.ndarray]], list[list[int]]]:
    """Apache Otava's E-Divisive (Hunter) with its defaults, run in its own interpreter."""
    script = (
        "import json, sys\n"
        "from otava.analysis import compute_change_points\n"
        "out = []\n"
        "for s in json.load(sys.stdin):\n"
        "    cps, _ = compute_change_points(s)\n"
        "    out.append([int(c.index) for c in cps])\n"
        "json.dump(out, sys.stdout)\n"
    )

    def run(many: list[np.ndarray]) -> list[list[int]]:
        payload = json.dumps([[float(v) for v in _filled(x)] for x in many])
        done = subprocess.run(
            [python, "-c", script], input=payload, capture_output=True, text=True, check=True
        )
        return json.loads(done.stdout)

    return run


# --- scoring -------------------------------------------------------------------------------


def score(series: list[Series], predictions: list[list[int]]) -> dict[str, float]:
    f1 = [f_measure(s.annotations, p) for s, p in zip(series, predictions, strict=True)]
    cover = [
        covering(s.annotations, p, s.values.size) for s, p in zip(series, predictions, strict=True)
    ]
    return {"f1": float(np.mean(f1)), "cover": float(np.mean(cover)), "n": len(series)}


def history_scores(series: list[Series], predictions: list[list[int]]) -> dict[str, float]:
    unchanged = [p for s, p in zip(series, predictions, strict=True) if not s.steps]
    steps = [(t, p) for s, p in zip(series, predictions, strict=True) for t in s.steps]

    def share(values: list) -> float:  # NaN, without numpy's warning, for a kind without any
        return float(np.mean(values)) if values else float("nan")

    return {
        **score(series, predictions),
        "false_per_unchanged": share([len(p) for p in unchanged]),
        "unchanged_with_any": share([bool(p) for p in unchanged]),
        "steps_found_3": share([any(abs(t - x) <= 3 for x in p) for t, p in steps]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tcpd", type=Path, help="a clone of alan-turing-institute/TCPD")
    parser.add_argument("--otava", help="a Python with apache-otava installed")
    parser.add_argument("--histories", type=int, default=200)
    parser.add_argument("--long-histories", type=int, default=60)
    parser.add_argument("--seed", type=int, default=20261206)
    args = parser.parse_args()

    methods: dict[str, Callable] = {
        "ours": ours,
        "zero": zero,
        "binseg (TCPDBench default)": tcpdbench_default("binseg"),
        "pelt (TCPDBench default)": tcpdbench_default("pelt"),
    }
    started = time.perf_counter()
    parts: dict[str, list[Series]] = {}
    if args.tcpd:
        tcpd = tcpd_series(args.tcpd)
        parts["TCPD development"] = [s for s in tcpd if not held_out(s.name)]
        parts["TCPD held-out"] = [s for s in tcpd if held_out(s.name)]
        parts["TCPD all"] = tcpd
    parts["histories"] = histories(args.histories, args.seed)
    parts["long histories"] = long_histories(args.long_histories, args.seed)

    results: dict[str, dict[str, dict]] = {}
    for part, series in parts.items():
        results[part] = {}
        for name, method in methods.items():
            t0 = time.perf_counter()
            predictions = [method(s.values) for s in series]
            scorer = history_scores if "histories" in part else score
            results[part][name] = scorer(series, predictions) | {
                "seconds": time.perf_counter() - t0
            }
        if args.otava:
            t0 = time.perf_counter()
            predictions = otava_runner(args.otava)([s.values for s in series])
            scorer = history_scores if "histories" in part else score
            results[part]["otava (e-divisive)"] = scorer(series, predictions) | {
                "seconds": time.perf_counter() - t0
            }
        if part == "histories":
            per_kind = {}
            for kind in sorted({s.kind for s in series}):
                subset = [i for i, s in enumerate(series) if s.kind == kind]
                preds = [ours(series[i].values) for i in subset]
                per_kind[kind] = history_scores([series[i] for i in subset], preds)
            results["histories by kind (ours)"] = per_kind

    print(f"load average {os.getloadavg()}, {time.perf_counter() - started:.0f} s")
    for part, rows in results.items():
        print(f"\n{part}")
        for name, row in rows.items():
            cells = ", ".join(
                f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
            )
            print(f"  {name:22s} {cells}")
    json.dump(results, sys.stderr, indent=1)


if __name__ == "__main__":
    main()
