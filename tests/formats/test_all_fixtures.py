"""Every real fixture is recognised by exactly one adapter and fully accounted for."""

from __future__ import annotations

from metrics_pipeline.formats import ADAPTERS, read_results
from metrics_pipeline.formats.base import open_maybe_gzip, sniff

EXPECTED = {
    "artillery/report.json": "artillery_json",
    "jmeter/results.jtl": "jmeter_jtl",
    "k6/k6_out.json.gz": "k6_ndjson",
    "k6/k6_summary_export.json": "k6_summary",
    "k6/k6_handle_summary.json": "k6_summary",
    "locust/requests.ndjson": "canonical_jsonl",
    "locust/sysmon.ndjson": "sysmon_ndjson",
    "locust/locust_stats.csv": "locust_csv",
    "locust/locust_stats_history.csv": "locust_csv",
    "locust/locust_failures.csv": "locust_csv",
    "locust/locust_exceptions.csv": "locust_csv",
    "locust/locust_stdout.json": "locust_json",
}


def test_each_fixture_is_claimed_by_exactly_one_adapter(fixtures_dir):
    found = {p.relative_to(fixtures_dir).as_posix() for p in fixtures_dir.rglob("*") if p.is_file()}
    assert found == set(EXPECTED), "a fixture was added or removed: extend EXPECTED"
    for name, expected in EXPECTED.items():
        with (fixtures_dir / name).open("rb") as raw:
            sample = sniff(open_maybe_gzip(raw), name)
        claimed = [adapter.NAME for adapter in ADAPTERS if adapter.looks_like(sample)]
        assert claimed == [expected], name


def test_the_whole_fixture_tree_reads_without_loss(fixtures_dir):
    parsed = read_results(fixtures_dir)
    assert {a["file"]: a["format"] for a in parsed.accounting} == EXPECTED
    for acc in parsed.accounting:
        assert acc["rows_read"] == acc["rows_accepted"] + acc["rows_quarantined"], acc
        assert acc["rows_quarantined"] == 0 and acc["error"] is None, acc
    assert parsed.quarantine.height == 0
    assert parsed.requests.height == 3984 + 3577 + 3534  # k6, JMeter, Locust hook
