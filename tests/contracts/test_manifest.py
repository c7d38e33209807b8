"""Tests of the run manifest contract and the canonical schemas (design section 4)."""

import json
from datetime import UTC, datetime, timedelta, timezone

import polars as pl
import pytest

from metrics_pipeline.contracts.manifest import (
    ManifestError,
    RunManifest,
    check_name,
    default_run_id,
)
from metrics_pipeline.contracts.tables import SCHEMAS, conform

NAME_RULE_TEXT = "1-128 characters from A-Z a-z 0-9 . _ -"


def full_manifest(**overrides):
    manifest = {
        "run_id": "checkout-2026.11.23_01",
        "suite": "checkout",
        "scenario": "steady 20 users",
        "environment": "staging",
        "started_at": "2026-11-23T04:01:52+02:00",
        "finished_at": "2026-11-23T02:31:52Z",
        "tool": "locust",
        "service_version": "1.4.2",
        "git_sha": "0123456789abcdef0123456789abcdef01234567",
        "tags": {"branch": "main", "region": "eu-west-1"},
        "load_profile": {"vus": 20, "target_rps": 150.5, "duration_s": 1800},
        "baseline": "auto",
    }
    manifest.update(overrides)
    return manifest


def parse_error(raw) -> str:
    with pytest.raises(ManifestError) as info:
        RunManifest.parse(raw)
    return str(info.value)


def test_full_manifest_from_bytes_keeps_every_field():
    raw = json.dumps(full_manifest()).encode()
    manifest = RunManifest.parse(raw)
    assert manifest.run_id == "checkout-2026.11.23_01"
    assert manifest.suite == "checkout"
    assert manifest.scenario == "steady 20 users"
    assert manifest.environment == "staging"
    assert manifest.started_at == datetime(2026, 11, 23, 2, 1, 52, tzinfo=UTC)
    assert manifest.finished_at == datetime(2026, 11, 23, 2, 31, 52, tzinfo=UTC)
    assert manifest.tool == "locust"
    assert manifest.service_version == "1.4.2"
    assert manifest.git_sha == "0123456789abcdef0123456789abcdef01234567"
    assert manifest.tags == {"branch": "main", "region": "eu-west-1"}
    assert manifest.load_profile.vus == 20
    assert manifest.load_profile.target_rps == 150.5
    assert manifest.load_profile.duration_s == 1800
    assert manifest.baseline == "auto"
    assert manifest.combination == ("checkout", "steady 20 users", "staging")


def test_minimal_manifest_from_str_and_dict_agree():
    minimal = {
        "run_id": "r1",
        "suite": "s",
        "scenario": "x",
        "environment": "e",
        "started_at": "2026-11-23T02:00:00Z",
    }
    from_str = RunManifest.parse(json.dumps(minimal))
    assert from_str == RunManifest.parse(minimal)
    assert from_str.finished_at is None
    assert from_str.tags == {}
    assert from_str.load_profile.vus is None


@pytest.mark.parametrize(
    "started_at",
    ["2026-11-23T04:01:52+02:00", "2026-11-23T02:01:52Z", "2026-11-23T02:01:52"],
    ids=["plus-two-hours", "zulu", "naive-is-utc"],
)
def test_started_at_is_normalised_to_utc(started_at):
    manifest = RunManifest.parse(full_manifest(started_at=started_at))
    assert manifest.started_at == datetime(2026, 11, 23, 2, 1, 52, tzinfo=UTC)
    assert manifest.started_at.utcoffset().total_seconds() == 0
    assert manifest.started_at.hour == 2


def test_missing_suite_names_the_field():
    manifest = full_manifest()
    del manifest["suite"]
    message = parse_error(manifest)
    assert "suite" in message
    assert "Field required" in message


def test_unknown_field_names_the_field():
    message = parse_error(full_manifest(owner="team-a"))
    assert "owner" in message
    assert "Extra inputs are not permitted" in message


def test_unknown_field_inside_load_profile_names_the_path():
    message = parse_error(full_manifest(load_profile={"vus": 1, "ramp": 5}))
    assert "load_profile.ramp" in message


@pytest.mark.parametrize(
    "run_id",
    ["..", ".", "a/b", "a b", "a;rm -rf", "x\x00y", "a" * 129, ""],
    ids=["dotdot", "dot", "slash", "space", "semicolon", "nul", "129-chars", "empty"],
)
def test_bad_run_ids_are_rejected_with_the_rule(run_id):
    message = parse_error(full_manifest(run_id=run_id))
    assert message.startswith("invalid manifest run.json: run_id:")
    assert NAME_RULE_TEXT in message


def test_run_id_of_128_characters_is_accepted():
    assert RunManifest.parse(full_manifest(run_id="a" * 128)).run_id == "a" * 128


@pytest.mark.parametrize("suite", ["..", "a/b", "a b", ""], ids=["dotdot", "slash", "space", "e"])
def test_bad_suite_is_rejected_with_the_rule(suite):
    message = parse_error(full_manifest(suite=suite))
    assert "suite:" in message
    assert NAME_RULE_TEXT in message


@pytest.mark.parametrize("started_at", ["yesterday", "2026-13-45T99:00:00Z", ""])
def test_unparseable_started_at_names_the_field(started_at):
    message = parse_error(full_manifest(started_at=started_at))
    assert "started_at:" in message
    assert "datetime" in message


def test_negative_vus_names_the_nested_field_and_the_bound():
    message = parse_error(full_manifest(load_profile={"vus": -1}))
    assert "load_profile.vus" in message
    assert "greater than or equal to 0" in message


def test_non_string_tag_value_names_the_tag():
    message = parse_error(full_manifest(tags={"build": 42}))
    assert "tags.build" in message


@pytest.mark.parametrize("raw", [b"{not json", b'{"run_id": "r1",', b"\xff\xfe\x00", b""])
def test_invalid_json_bytes_raise_manifest_error(raw):
    message = parse_error(raw)
    assert "run.json" in message
    assert "Invalid JSON" in message


def test_source_name_appears_in_the_message():
    with pytest.raises(ManifestError, match=r"raw/checkout/r1/run\.json"):
        RunManifest.parse(b"[]", source="raw/checkout/r1/run.json")


@pytest.mark.parametrize("baseline", ["../x", "a/b"])
def test_baseline_must_be_a_run_id_or_auto(baseline):
    message = parse_error(full_manifest(baseline=baseline))
    assert "baseline" in message


def test_conform_adds_missing_columns_as_nulls_in_schema_order():
    frame = pl.DataFrame({"latency_ms": [12, 30], "endpoint": ["/a", "/b"], "extra": [1, 2]})
    conformed = conform("requests", frame)
    assert conformed.schema == SCHEMAS["requests"]
    assert conformed.columns == list(SCHEMAS["requests"].names())
    assert conformed["latency_ms"].to_list() == [12.0, 30.0]
    assert conformed["endpoint"].to_list() == ["/a", "/b"]
    missing = [c for c in conformed.columns if c not in ("latency_ms", "endpoint")]
    for column in missing:
        assert conformed[column].null_count() == 2, column


def test_conform_keeps_the_row_count_when_some_columns_are_present():
    frame = pl.DataFrame({"endpoint": ["/a", "/b", "/c"]})
    assert conform("requests", frame).height == 3
    assert conform("requests", frame.clear()).height == 0


def test_conform_of_an_empty_frame_gives_the_empty_table():
    conformed = conform("run_summary", pl.DataFrame())
    assert conformed.schema == SCHEMAS["run_summary"]
    assert conformed.height == 0


def test_conform_keeps_the_row_count_when_no_schema_column_is_present():
    assert conform("requests", pl.DataFrame({"unrelated": [1, 2, 3]})).height == 3


def test_default_run_id_is_a_valid_id_for_the_longest_suite():
    started = datetime(2031, 3, 15, 4, 0, 0, 500_000, tzinfo=timezone(timedelta(hours=2)))
    run_id = default_run_id("checkout", started, "x")
    assert run_id == default_run_id("checkout", started, "x")  # same input, same id
    assert run_id != default_run_id("checkout", started, "y")
    assert run_id.startswith("checkout-20310315T020000-")  # the start in UTC
    longest = default_run_id("s" * 128, started, "x")
    assert len(longest) == 128 and check_name(longest) == longest


def test_a_run_that_ends_before_it_starts_is_refused():
    # Its window was empty: every request quarantined as "outside the run window".
    manifest = {
        "run_id": "r-1",
        "suite": "shop",
        "scenario": "browse",
        "environment": "ci",
        "started_at": "2026-12-06T02:00:00Z",
    }
    with pytest.raises(ManifestError, match=r"finished_at \(2026-12-05T02:00:00\+00:00\) is bef"):
        RunManifest.parse(manifest | {"finished_at": "2026-12-05T02:00:00Z"})
    assert RunManifest.parse(manifest | {"finished_at": "2026-12-06T02:00:00Z"}).finished_at
