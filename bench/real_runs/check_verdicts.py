"""Run the product's CI gate on every real run and check it against cases.json.

For each tool and candidate: ``metrics-pipeline compare <base_1> <base_2> <base_3> <candidate>
--json``; required rows must get their verdict, optional rows (``"required": false``) that
verdict or ok, and no other row may be a regression, trade-off or missing.

    .venv/bin/python bench/real_runs/check_verdicts.py                 # three baseline runs
    .venv/bin/python bench/real_runs/check_verdicts.py --bases base_1  # one (the prior noise)
    .venv/bin/python bench/real_runs/check_verdicts.py --runs /tmp/rr  # runs made with --out
    .venv/bin/python bench/real_runs/check_verdicts.py --every-pair    # every choice of bases

``--every-pair`` takes each of the five unchanged runs (``base_1..3``, ``same_1..2``) as the
one baseline run against every other unchanged run and every changed candidate, and every
three of them against the two left; it prints only the cases not as expected and a count per
tool and number of baseline runs (about 260 comparisons per set of runs, 5-10 min).
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOT = REPO / "tests" / "fixtures" / "real_runs"
CLI = Path(sys.executable).with_name("metrics-pipeline")
ALARMS = ("regression", "trade-off", "missing")


def check(doc: dict, runs: Path, tool: str, bases: list[str], case: str) -> tuple[list, str]:
    """The problems of one comparison against cases.json (an unchanged run as the candidate
    is held to ``same_1``'s expectations) and the line that reports it."""
    paths = [str(runs / tool / run) for run in (*bases, case)]
    out = subprocess.run(
        [str(CLI), "compare", *paths, "--json"], capture_output=True, text=True, cwd=REPO
    )
    try:
        rows = json.loads(out.stdout)
    except ValueError:
        return [f"exit={out.returncode}: {out.stderr[-400:]}"], f"BAD {tool:9} {case:9}"
    got = {(r["endpoint"], r["metric"]): r for r in rows}
    listed = doc["cases"].get(case, doc["cases"]["same_1"])
    expected = {(e["endpoint"], e["metric"]): e for e in listed}
    for e in doc.get("tool_exceptions", {}).get(tool, {}).get(case, []):
        expected[(e["endpoint"], e["metric"])] = e
    problems = []
    for key, e in expected.items():
        verdict = got.get(key, {}).get("verdict")
        if verdict != e["verdict"] and not (e.get("required") is False and verdict == "ok"):
            change = got.get(key, {}).get("change")
            problems.append(f"{key}: want {e['verdict']}, got {verdict} (change {change})")
    for key, r in got.items():
        wanted = expected.get(key, {}).get("verdict")
        if r["verdict"] in ALARMS and wanted != r["verdict"]:
            problems.append(
                f"unexpected {key}: {r['verdict']} (change {r.get('change')}, "
                f"baseline {r.get('baseline')}, candidate {r.get('candidate')})"
            )
    flagged = sorted(
        f"{k[0]} {k[1]}={r['verdict']}"
        for k, r in got.items()
        if r["verdict"] not in ("ok", "no baseline")
    )
    line = (
        f"{'BAD' if problems else 'OK '} {tool:9} {case:9} exit={out.returncode} "
        f"flagged: {', '.join(flagged) or '-'}"
    )
    return problems, line


def every_pair(doc: dict, runs: Path, tools: list[str]) -> int:
    """See the module's docstring; returns the number of comparisons not as expected."""
    unchanged = [*doc["baseline_runs"], *(c for c in doc["cases"] if c.startswith("same"))]
    changed = [c for c in doc["cases"] if not c.startswith("same")]
    bad = 0
    for tool in tools:
        tally: dict[int, list[int]] = {1: [0, 0], 3: [0, 0]}
        choices = [[run] for run in unchanged] + [
            list(three) for three in itertools.combinations(unchanged, 3)
        ]
        for bases in choices:
            others = [run for run in unchanged if run not in bases]
            for case in others + (changed if len(bases) == 1 else []):
                problems, line = check(doc, runs, tool, bases, case)
                tally[len(bases)][0] += bool(problems)
                tally[len(bases)][1] += 1
                if problems:
                    print(f"{line} (bases {'+'.join(bases)})")
                    for problem in problems:
                        print("     ", problem)
        for k, (wrong, total) in tally.items():
            print(f"{tool:9} {k} baseline run(s): {wrong} of {total} not as expected")
        bad += tally[1][0] + tally[3][0]
    return bad


def main() -> int:
    doc = json.loads((ROOT / "cases.json").read_text())
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bases", nargs="+", default=doc["baseline_runs"])
    parser.add_argument("--tools", nargs="+", default=sorted(doc["tools"]))
    parser.add_argument(
        "--runs",
        type=Path,
        default=ROOT,
        help="the folder of <tool>/<run> folders (make_runs.py --out); default: %(default)s",
    )
    parser.add_argument("--every-pair", action="store_true", help="every choice of bases")
    args = parser.parse_args()
    if args.every_pair:
        bad = every_pair(doc, args.runs, args.tools)
        print(f"{bad} comparison(s) not as expected")
        return 1 if bad else 0
    bad = 0
    for tool in args.tools:
        for case in doc["cases"]:
            problems, line = check(doc, args.runs, tool, args.bases, case)
            print(line)
            for problem in problems:
                print("     ", problem)
            bad += bool(problems)
    print(f"{bad} case(s) not as expected")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
