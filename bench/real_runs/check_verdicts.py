"""Run the product's CI gate on every real run and check it against cases.json.

For each tool and candidate: ``metrics-pipeline compare <base_1> <base_2> <base_3> <candidate>
--json``; required rows must get their verdict, optional rows (``"required": false``) that
verdict or ok, and no other row may be a regression, trade-off or missing.

    .venv/bin/python bench/real_runs/check_verdicts.py                 # three baseline runs
    .venv/bin/python bench/real_runs/check_verdicts.py --bases base_1  # one (the prior noise)
    .venv/bin/python bench/real_runs/check_verdicts.py --runs /tmp/rr  # runs made with --out
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOT = REPO / "tests" / "fixtures" / "real_runs"
CLI = Path(sys.executable).with_name("metrics-pipeline")


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
    args = parser.parse_args()
    bad = 0
    for tool in args.tools:
        for case, listed in doc["cases"].items():
            paths = [str(args.runs / tool / run) for run in (*args.bases, case)]
            out = subprocess.run(
                [str(CLI), "compare", *paths, "--json"], capture_output=True, text=True, cwd=REPO
            )
            try:
                rows = json.loads(out.stdout)
            except ValueError:
                print(f"BAD {tool:9} {case:9} exit={out.returncode}: {out.stderr[-400:]}")
                bad += 1
                continue
            got = {(r["endpoint"], r["metric"]): r for r in rows}
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
                if (
                    r["verdict"] in ("regression", "trade-off", "missing")
                    and wanted != r["verdict"]
                ):
                    problems.append(
                        f"unexpected {key}: {r['verdict']} (change {r.get('change')}, "
                        f"baseline {r.get('baseline')}, candidate {r.get('candidate')})"
                    )
            flagged = sorted(
                f"{k[0]} {k[1]}={r['verdict']}"
                for k, r in got.items()
                if r["verdict"] not in ("ok", "no baseline")
            )
            print(
                f"{'BAD' if problems else 'OK '} {tool:9} {case:9} exit={out.returncode} "
                f"flagged: {', '.join(flagged) or '-'}"
            )
            for problem in problems:
                print("     ", problem)
            bad += bool(problems)
    print(f"{bad} case(s) not as expected")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
