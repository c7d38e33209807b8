"""The CI gates: ``compare`` two result sets, ``versions`` of the service. Exit 1 on a
regression."""

from __future__ import annotations

import math
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, NoReturn

import polars as pl
import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from metrics_pipeline.cli.output import (
    bad_input,
    console,
    err,
    fail,
    fail_on_unreadable,
    print_json,
)
from metrics_pipeline.common.noise import DEFAULT_ERROR_RATE_NOISE, DEFAULT_RUN_NOISE
from metrics_pipeline.common.text import display_name
from metrics_pipeline.formats import (
    MANIFEST_NAME,
    MAX_QUARANTINED_SHARE,
    NOT_RESULT_FILE,
    add_fingerprints,
    commonest,
    fingerprint,
    measuring_tools,
    quarantined_rows,
    read_results,
    result_files,
    run_manifests,
    too_much_quarantined,
    unreadable_files,
)
from metrics_pipeline.formats.limits import GIB, ReadLimits
from metrics_pipeline.settings import Settings

# compare holds every row of every run in memory (ingest streams): 2 GiB of decompressed text
# per file (about 14 M canonical requests, 800 k of k6's JSON output) keeps a bomb from taking
# the machine; larger runs go through ingest.
COMPARE_LIMITS = ReadLimits(max_file_bytes=2 * GIB)
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Threshold = Annotated[
    float | None,
    typer.Option(
        help="Relative worsening that counts (default: the verdict rules', else 0.2).",
        show_default=False,
    ),
]
RULES_FOR = (
    "Apply the verdict rules of this {} (config/verdicts.yaml, METRICS_VERDICT_RULES); "
    "without it, only the rules that name none."
)


def verdict_table(
    verdicts: pl.DataFrame,
    title: str,
    alphas: float | Mapping[str, float],
    width: int,
) -> Table:
    """The verdicts as a terminal table for a console ``width`` columns wide; ``alphas``: the
    significance level of each metric (the CI's level), or one for all."""
    from metrics_pipeline.analysis.verdicts import (
        ci_label,
        ci_levels,
        formatted,
        noise_sources,
        ordered,
    )

    sources = noise_sources(verdicts)
    caption = [f"run-to-run noise from: {sources}"] if sources else []
    if levels := ci_levels(alphas):
        caption.append(levels)
    rows = [(row, formatted(row)) for row in ordered(verdicts).iter_rows(named=True)]
    # Below 120 columns (a terminal; piped output is 150 wide) the grid's lines, the padding
    # and the verdicts' notes would leave too little for the values: a metric cut to
    # "latency..." could be the p50, p95 or p99. There the notes become numbered footnotes.
    narrow = width < 120
    if narrow:
        notes: dict[str, int] = {}
        for row, cells in rows:
            note = row["note"]
            if note and cells[-1].endswith(f"({note})"):
                number = notes.setdefault(note, len(notes) + 1)
                cells[-1] = f"{cells[-1][: -len(note) - 2]}({number})"
        caption += [f"({number}) {note}" for note, number in notes.items()]
    table = Table(
        title=title,
        caption=("\n" if narrow else "; ").join(caption) or None,
        box=box.SIMPLE_HEAD if narrow else box.HEAVY_HEAD,
        collapse_padding=narrow,
        pad_edge=not narrow,
    )
    columns = ("endpoint", "metric", "baseline", "candidate", "change", ci_label(alphas))
    for column in (*columns, "p adj.", "verdict"):
        table.add_column(
            column,
            justify="right" if column not in {"endpoint", "metric", "verdict"} else "left",
            # The verdict's note wraps where it is in the cell (a wide table).
            no_wrap=column == "metric" or (narrow and column == "verdict"),
            overflow="fold",  # wrapped, never cut to "..."
        )
    for row, cells in rows:
        if row["regression"]:
            cells[-1] = f"[bold red]{cells[-1]}[/]"
        elif row["verdict"] == "suspect":
            cells[-1] = f"[yellow]{cells[-1]}[/]"
        table.add_row(
            escape(display_name(row["endpoint"])),  # the JSON output has the whole name
            row["metric"],
            *[escape(cell) if i < len(cells) - 1 else cell for i, cell in enumerate(cells)],
            style="bold" if row["regression"] else None,
        )
    return table


def folder_of(path: Path) -> str:
    """What goes before a file name of ``read_results(path)`` to name the file as given."""
    folder = path if path.is_dir() else path.parent
    return "" if folder == Path() else f"{folder}/"


JSON_KEYS = [
    "endpoint",
    "metric",
    "baseline",
    "candidate",
    "change",
    "ci_low",
    "ci_high",
    "p_value",
    "p_adjusted",
    "regression",
    "verdict",
    "n_baseline",
    "n_candidate",
    "baseline_runs",
    "noise",
    "note",
]


def _warehouse_history(combination: tuple[str, str, str], runs: list, explicit: bool):
    """The combination's run-to-run noise in the configured warehouse: its accepted runs that
    started before the earliest of ``runs`` (the files compared, which may be stored too and
    must not count as their own noise). ``None`` when there is no such run (a missing
    warehouse is empty). Read from the Parquet files only: a gate neither needs nor changes
    the Postgres mirror. A warehouse that cannot be read fails the gate (exit 2) when
    ``explicit`` (``--history``), else the prior applies, with a warning."""
    from metrics_pipeline.stages.ci import noise_history
    from metrics_pipeline.storage import open_warehouse

    settings = Settings.from_env()
    suite, scenario, environment = combination
    starts = [
        start
        for run in runs
        for frame in (run.requests, run.interval_stats)
        if frame.height and (start := frame["ts"].min()) is not None
    ]
    candidate = {
        "run_id": "",
        "suite": suite,
        "scenario": scenario,
        "environment": environment,
        "started_at": min(starts, default=settings.clock()),
    }
    try:
        history = noise_history(open_warehouse(settings, mirrored=False), candidate, [])
    except Exception as exc:  # any failure to read the warehouse is the same to the gate
        problem = f"cannot read the history of {'/'.join(combination)} in the warehouse: {exc}"
        if explicit:
            fail(problem)
        err.print(f"[yellow]warning:[/] {escape(problem)}; the run noise is the prior")
        return None
    if history is None:
        err.print(
            f"note: no earlier accepted runs of {escape('/'.join(combination))} in the "
            "warehouse: the run noise is the baseline runs' or the prior"
        )
    return history


def compare(
    results: Annotated[
        list[Path],
        typer.Argument(
            help="BASE... CAND: the baseline runs, then the candidate run; each a result "
            "file or a folder of one run's files.",
            metavar="RUN",
            show_default=False,
        ),
    ],
    as_json: AsJson = False,
    threshold: Threshold = None,
    alpha: Annotated[
        float | None,
        typer.Option(
            help="Significance level, BH-adjusted (default: the verdict rules', else 0.05).",
            show_default=False,
        ),
    ] = None,
    run_noise: Annotated[
        float | None,
        typer.Option(
            help="Spread between identical runs (0.10 = 10 %): assumed with one baseline "
            "run, and the floor under the spread of baseline runs taken back to back (less "
            "than 12 h apart); runs on separate days measure it themselves (default: the "
            f"verdict rules', else {DEFAULT_RUN_NOISE:g}; error rates keep their own, "
            f"{DEFAULT_ERROR_RATE_NOISE:g}, unless the rules name error_rate).",
            show_default=False,
        ),
    ] = None,
    suite: Annotated[str | None, typer.Option(help=RULES_FOR.format("suite"))] = None,
    scenario: Annotated[str | None, typer.Option(help=RULES_FOR.format("scenario"))] = None,
    env: Annotated[str | None, typer.Option(help=RULES_FOR.format("environment"))] = None,
    history: Annotated[
        bool | None,
        typer.Option(
            "--history/--no-history",
            help="Measure the run-to-run noise on the warehouse's earlier accepted runs of "
            "--suite, --scenario and --env too (METRICS_HOME, METRICS_WAREHOUSE) instead of "
            "assuming --run-noise (default: when all three are given).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Compare a candidate run with one or more baseline runs; exit 1 if anything regressed,
    2 if nothing could be compared (a CI gate). Thresholds come from the verdict rules
    (config/verdicts.yaml, METRICS_VERDICT_RULES) of --suite, --scenario and --env, and the
    options given; the run-to-run noise from the baseline runs, the combination's earlier
    runs in the warehouse, or --run-noise (the table's caption says which)."""
    if len(results) < 2:
        fail("give at least one baseline and the candidate: compare BASE... CAND")
    combination = (suite, scenario, env)
    if history and None in combination:
        fail("--history needs the combination: --suite, --scenario and --env")
    if not (
        (alpha is None or 0 < alpha < 1)
        and (threshold is None or 0 < threshold < math.inf)
        and (run_noise is None or 0 <= run_noise < math.inf)
    ):
        # An infinite threshold would pass every run: a gate that cannot fail.
        fail("need 0 < --alpha < 1, a finite --threshold > 0 and a finite --run-noise >= 0")
    *baselines, candidate = results
    with bad_input():
        for path in results:  # a missing path fails before any file is read
            result_files(path)
        # Two runs are read at a time (their parsers release the GIL), and the statistics
        # (scipy) are imported meanwhile: on a 2-core CI runner that keeps both cores busy.
        with ThreadPoolExecutor(2, thread_name_prefix="compare-read") as pool:
            reads = [pool.submit(read_results, path, COMPARE_LIMITS) for path in results]
            from metrics_pipeline.analysis.verdict_rules import load_verdict_rules
            from metrics_pipeline.analysis.verdicts import ci_alphas, judge_run

            policy = (
                load_verdict_rules(Settings.from_env().verdict_rules)
                .policy(suite or "", scenario or "", env or "")
                .overridden(threshold=threshold, alpha=alpha, run_noise=run_noise)
            )
            parsed = [read.result() for read in reads]
    # A run with a damaged file (truncated, over a read limit, a summary that is not JSON)
    # would be judged on part of its data: bad input, never a verdict.
    fail_on_unreadable(
        [
            f"{folder_of(path)}{problem}"
            for path, run in zip(results, parsed, strict=True)
            for problem in unreadable_files(run.accounting)
        ]
    )
    # Each run's request files by their fingerprint, computed once: runs and files alike are
    # told apart by them.
    request_files = [_request_files(run) for run in parsed]
    _refuse_runs_that_are_not_one(results, request_files)
    _say_what_was_left_out(results, parsed)
    for path, run in zip(results, parsed, strict=True):
        if run.requests.height == 0 and run.interval_stats.height == 0:
            what = f"no request or interval data in {path}"
            if not run.accounting:
                fail(f"{what}: no result files there")
            err.print(f"[red]error:[/] {escape(what)}:")
            for acc in run.accounting:
                err.print(f"  {acc['file']}: {acc['format']}, {acc['error'] or 'no latency data'}")
            raise typer.Exit(2)
    same_as_candidate = _refuse_duplicates(baselines, parsed, request_files)
    _warn_about_other_tools(results, parsed)
    looked_up = history is not False and None not in combination
    noise_history = (
        _warehouse_history(combination, parsed, explicit=history is True) if looked_up else None
    )
    # Each argument is one run: its run id is its position ("baseline 1" ...) or "candidate".
    *base, cand = parsed
    if all(other_kind := [_other_kind(run, cand) for run in base]):
        # Said before any table: a table of "no baseline data" rows would read as a result.
        err.print(
            f"[red]error:[/] nothing to compare: the baseline runs hold {other_kind[0]}; "
            "compare runs of the same kind"
        )
        raise typer.Exit(2)
    *labels, _ = _labels(len(parsed))

    def baseline_rows(table: str) -> pl.DataFrame:
        frames = [
            getattr(run, table).with_columns(run_id=pl.lit(label))
            for run, label in zip(base, labels, strict=True)
        ]
        return pl.concat(frames)

    def candidate_rows(table: str) -> pl.DataFrame:
        return getattr(cand, table).with_columns(run_id=pl.lit("candidate"))

    verdicts = judge_run(
        candidate_rows("requests"),
        baseline_rows("requests"),
        labels,
        policy,
        candidate_intervals=candidate_rows("interval_stats"),
        baseline_intervals=baseline_rows("interval_stats"),
        candidate_resources=candidate_rows("resources"),
        baseline_resources=baseline_rows("resources"),
        history=noise_history,
    )
    if as_json:
        print_json(verdicts.select(JSON_KEYS).to_dicts())
    else:
        title = f"{', '.join(map(str, baselines))} -> {candidate}"
        console.print(verdict_table(verdicts, title, ci_alphas(verdicts, policy), console.width))
    _exit_with_verdict(
        verdicts,
        baselines,
        other_kind,
        same_as_candidate=same_as_candidate,
        looked_up=looked_up,
    )


def _labels(count: int) -> list[str]:
    """How the runs of ``count`` arguments are named: "baseline 1" ... and "candidate"."""
    return [*(f"baseline {i}" for i in range(1, count)), "candidate"]


def _request_files(run) -> dict[str, tuple[int, int]]:
    """The fingerprint (``formats.fingerprint``) of each file's request rows, by file."""
    return {
        str(file): fingerprint("requests", rows)
        for (file,), rows in run.requests.group_by("source_file", maintain_order=True)
    }


def _refuse_runs_that_are_not_one(
    results: list[Path], request_files: list[dict[str, tuple[int, int]]]
) -> None:
    """Fail (exit 2) when an argument does not hold one run's data once: a folder of several
    runs (a ``run.json`` in more than one folder), or two files of a run with the same
    request rows (a copy, a file left beside its ``.gz``): the runs would be merged, or the
    requests counted twice (half the throughput of the baseline, a false "regression")."""
    problems = []
    for path, files in zip(results, request_files, strict=True):
        if path.is_dir() and len(manifests := run_manifests(path)) > 1:
            where = ", ".join(str(manifest.parent.relative_to(path)) for manifest in manifests)
            problems.append(
                f"{path} holds {len(manifests)} runs (a run.json in each of: {where}): give "
                "each run's folder as an argument of its own"
            )
        first_with: dict[tuple[int, int], str] = {}
        for file, prints in files.items():
            twin = first_with.setdefault(prints, file)
            if twin != file:
                problems.append(
                    f"{folder_of(path)}{twin} and {folder_of(path)}{file} hold the same "
                    "request rows: keep one of them"
                )
    if problems:
        fail(*problems)


def _say_what_was_left_out(results: list[Path], parsed: list) -> None:
    """Name on stderr the files of each run that are no result file (skipped) and the rows
    quarantined (with their commonest reasons); exit 2 when a run lost more than
    ``MAX_QUARANTINED_SHARE`` of its rows. A verdict is never silent about data it left out."""
    too_many = []
    for label, path, run in zip(_labels(len(results)), results, parsed, strict=True):
        where = f"{label} ({escape(str(path))})"
        for acc in run.accounting:
            if acc["error"] in NOT_RESULT_FILE:
                err.print(f"note: {where}: {escape(acc['file'])} skipped: {acc['error']}")
        rows, quarantined, reasons = quarantined_rows(run.accounting)
        if not quarantined:
            continue
        err.print(
            f"[yellow]warning:[/] {where}: {quarantined} of {rows} rows quarantined, not "
            f"compared ({escape(commonest(reasons))})",
            soft_wrap=True,
        )
        if too_much_quarantined(rows, quarantined):
            too_many.append(f"{label}: {quarantined / rows:.1%} of its rows")
    if too_many:
        fail(
            f"too much of a run could not be read to judge it ({'; '.join(too_many)} "
            f"quarantined, more than {MAX_QUARANTINED_SHARE:.0%}): mend the files, or ingest "
            "the run and see its quarantine"
        )


def _exit_with_verdict(
    verdicts: pl.DataFrame,
    baselines: list[Path],
    other_kind: list[str],
    *,
    same_as_candidate: bool,
    looked_up: bool,
) -> NoReturn:
    """Say on stderr what the table cannot (unused or duplicate runs, untested rows, the
    prior deciding), then exit: 1 a regression, 2 no latency could be tested, else 0.
    ``looked_up``: the warehouse's history of the combination was asked for."""
    from metrics_pipeline.analysis.verdicts import (
        LATENCY_METRICS,
        NO_SUCCESS,
        TOO_FEW,
        change_words,
    )

    if same_as_candidate:  # a path given twice by mistake passes every gate
        err.print("[yellow]warning:[/] the candidate holds the same data as a baseline run")
    judged = _tested(verdicts)
    used = {run for runs in judged["baseline_runs"] for run in runs.split(",") if run}
    for i, (path, kind) in enumerate(zip(baselines, other_kind, strict=True), 1):
        if judged.height and f"baseline {i}" not in used:
            why = f"it holds {kind}" if kind else "none of its rows could be compared"
            err.print(f"[yellow]warning:[/] baseline {i} ({escape(str(path))}) was not used: {why}")
    for row in verdicts.filter(pl.col("verdict") == "missing").iter_rows(named=True):
        # Not a regression (a renamed or retired endpoint), but a CI log should say it.
        err.print(
            f"missing: {escape(display_name(row['endpoint']))} is in the baseline, not in the "
            "candidate"
        )
    suspects = verdicts.filter(pl.col("verdict") == "suspect")
    for row in suspects.iter_rows(named=True):
        err.print(
            f"suspect: {escape(display_name(row['endpoint']))} {row['metric']} "
            f"{change_words(row['change'], row['metric'])} as the values stand, not tested "
            "(too few values in the candidate)"
        )
    latency = judged.filter(pl.col("metric").is_in(list(LATENCY_METRICS)))
    if latency.height == 0 and not judged["regression"].any():
        # Error rates alone (15 requests without an error) are no performance comparison.
        notes = verdicts["note"].fill_null("")
        if suspects.height:
            reason = "no latency could be tested: the candidate has too few values (suspect)"
        elif notes.str.contains(NO_SUCCESS, literal=True).any():
            reason = f"no latency could be tested: {NO_SUCCESS}"
        elif notes.str.contains(TOO_FEW, literal=True).any():
            reason = "no latency could be tested: too few values in the runs"
        else:
            reason = "no endpoint and metric has data in both the baseline and the candidate"
        err.print(f"[red]error:[/] nothing to compare: {reason}")
        raise typer.Exit(2)
    if len(used) == 1 and judged["noise"].drop_nulls().str.starts_with("prior").any():
        # Why a +40 % change can pass: say it where the gate's log is read.
        more = (
            ""
            if looked_up
            else (
                ", or --suite, --scenario and --env to measure it on the warehouse's earlier runs"
            )
        )
        err.print(
            "note: one baseline run, so the spread between identical runs is assumed (the "
            "prior of --run-noise or config/verdicts.yaml; error rates their own), not "
            f"measured: only changes well beyond it stand out. Give several baseline runs{more}."
        )
    raise typer.Exit(1 if judged["regression"].any() else 0)


def _tested(verdicts: pl.DataFrame) -> pl.DataFrame:
    """The rows compared: those whose test can decide a verdict, the Benjamini-Hochberg
    family (an adjusted p). Not the rows without a test (too few values), nor those only
    reported (whole-machine metrics) or whose p is 1 whatever happens (an error rate with no
    error in any run)."""
    return verdicts.filter(pl.col("p_adjusted").is_not_null() & pl.col("p_adjusted").is_not_nan())


def _refuse_duplicates(
    baselines: list[Path], parsed: list, request_files: list[dict[str, tuple[int, int]]]
) -> bool:
    """Fail (exit 2) when two baseline arguments hold the same run: they would count as two
    runs that agree perfectly, the run noise measured on them too small and its df too many.
    Returns whether the candidate (the last of ``parsed``) holds the same data as a baseline.

    A run is compared by its request rows, else (a tool's aggregates alone) its interval
    rows; not the other tables: a run's folder and its request file alone, given as two
    runs, are one run, though only the folder holds the system samples.
    """
    prints = [
        add_fingerprints(*files.values())
        if files
        else fingerprint("interval_stats", run.interval_stats)
        for run, files in zip(parsed, request_files, strict=True)
    ]
    first: dict[tuple[int, int], int] = {}
    for i, (path, prints_of_run) in enumerate(zip(baselines, prints, strict=False)):
        if prints_of_run in first:
            j = first[prints_of_run]
            fail(
                f"baseline runs {j + 1} and {i + 1} hold the same data ({baselines[j]}, {path}): "
                "give each baseline run once"
            )
        first[prints_of_run] = i
    return prints[-1] in first


def _warn_about_other_tools(results: list[Path], parsed: list) -> None:
    """Say when a baseline run was measured with another load-testing tool than the
    candidate (its formats, else its ``run.json``): the change may be the tools' timing."""
    *_, candidate = tools = [_tools(path, run) for path, run in zip(results, parsed, strict=True)]
    labels = _labels(len(results))
    for label, path, these in zip(labels, results, tools, strict=True):
        if len(these) > 1:  # two tools' requests in one run: two measurements, merged
            err.print(
                f"[yellow]warning:[/] {label} ({escape(str(path))}) holds requests measured "
                f"with {' and '.join(sorted(these))}: taken as one run, its endpoints' "
                "requests and throughput are the sum of both"
            )
    for i, (path, these) in enumerate(zip(results[:-1], tools[:-1], strict=True), 1):
        if these and candidate and not these & candidate:
            err.print(
                f"[yellow]warning:[/] baseline {i} ({escape(str(path))}) was measured with "
                f"{' and '.join(sorted(these))}, the candidate with "
                f"{' and '.join(sorted(candidate))}: tools time requests differently (client "
                "overhead, whole milliseconds), so a change may be the tools'"
            )


def _tools(path: Path, run) -> set[str]:
    """The load-testing tools of a run: its formats', else the tool its ``run.json`` names."""
    from metrics_pipeline.contracts.manifest import RunManifest

    if tools := measuring_tools(run.accounting):
        return tools
    try:
        tool = RunManifest.parse((path / MANIFEST_NAME).read_bytes()).tool.lower()
    except Exception:  # no manifest (a file, a bare folder) or not one: nothing to say
        return set()
    return set() if tool in {"", "custom"} else {tool}


def _other_kind(run, cand) -> str:
    """What a run holds when it is another kind of data than the candidate's (else ""): only
    interval aggregates against per-request rows, or the reverse."""
    # A candidate with both kinds is of the baseline's kind only where their interval rows
    # share an endpoint (Locust's default history holds the run's total, "(all)", alone).
    shared = set(cand.interval_stats["endpoint"]) & set(run.interval_stats["endpoint"])
    if cand.requests.height and not shared and not run.requests.height:
        return (
            "only interval aggregates (Artillery, k6 summary, Locust history), the candidate "
            "per-request rows"
        )
    if not cand.requests.height and run.requests.height and not run.interval_stats.height:
        return "per-request rows, the candidate only interval aggregates"
    return ""


def versions(
    baseline_version: Annotated[str, typer.Argument(help="The old service_version.")],
    candidate_version: Annotated[str, typer.Argument(help="The new service_version.")],
    as_json: AsJson = False,
    threshold: Threshold = None,
) -> None:
    """Compare two service versions on every scenario and endpoint both ran: pooled over them
    (paired test), and each endpoint on its own (its runs under either version, with the
    run-to-run noise of compare); exit 1 if a metric regressed, 2 if no scenario ran under
    both."""
    from metrics_pipeline.analysis.verdict_rules import load_verdict_rules
    from metrics_pipeline.analysis.versions import compare_versions
    from metrics_pipeline.storage import open_warehouse

    if threshold is not None and not 0 < threshold < math.inf:
        fail("need a finite --threshold > 0")
    settings = Settings.from_env()
    warehouse = open_warehouse(settings)
    with bad_input():
        rules = load_verdict_rules(settings.verdict_rules)
    table = compare_versions(
        warehouse.read("runs"),
        warehouse.read("run_summary"),
        baseline_version,
        candidate_version,
        rules=rules,
        threshold=threshold,
    )
    if table.filter(pl.col("endpoint").is_null())["pairs"].max() == 0:
        fail(f"no scenario ran under both {baseline_version} and {candidate_version}")
    if as_json:
        print_json(table.to_dicts())
    else:
        from metrics_pipeline.analysis.verdicts import ci_label

        out = Table(title=f"{candidate_version} vs {baseline_version}")
        levels = set(table["alpha"])
        ci = ci_label(levels.pop()) if len(levels) == 1 else "CI (+ = worse; each rule's level)"
        for column in ("scope", "metric", "runs", "old", "new", "change", ci, "p adj."):
            out.add_column(column, justify="left" if column in {"scope", "metric"} else "right")
        out.add_column("verdict")
        # Regressions first, then the pooled rows, then each unit.
        ordered_rows = table.sort(
            [pl.col("regression"), pl.col("endpoint").is_not_null()], descending=[True, False]
        )
        for row in ordered_rows.iter_rows(named=True):
            pooled = row["endpoint"] is None
            scope = (
                f"all {row['pairs']} units (paired)"
                if pooled
                else f"{row['suite']}/{row['scenario']}/{row['environment']} "
                f"{display_name(row['endpoint'])}"
            )
            out.add_row(
                escape(scope),
                row["metric"],
                "" if pooled else str(row["pairs"]),
                _shown(row["baseline"], "{:.4g}"),
                _shown(row["candidate"], "{:.4g}"),
                _shown(row["change"], "{:+.1%}"),
                f"[{_shown(row['ci_low'], '{:+.1%}')}, {_shown(row['ci_high'], '{:+.1%}')}]",
                _shown(row["p_adjusted"], "{:.2g}"),
                "[bold red]REGRESSION[/]" if row["regression"] else "ok",
            )
        console.print(out)
    raise typer.Exit(1 if table["regression"].any() else 0)


def _shown(value: float | None, form: str) -> str:
    """``value`` in ``form``; "-" for a value that could not be computed."""
    return "-" if value is None or not math.isfinite(value) else form.format(value)
