"""The bulk path's ISO 8601 timestamps: the numpy fast path gives what the regex path gives."""

from __future__ import annotations

import random

import polars as pl
import pytest

from metrics_pipeline.formats.ndjson_blocks import _iso_timestamp, _iso_utc_fast, iso_timestamp


def timestamp_like(rng: random.Random) -> str:
    """A string near the shapes ISO_TIMESTAMP takes: out-of-range fields, impossible dates,
    other separators, fractions of 0-12 digits, offsets, stray characters."""
    year = rng.choice([rng.randint(0, 3100), 999, 1000, 1600, 1900, 2000, 2024, 2999, 3000])
    month = rng.choice([rng.randint(0, 13), 1, 2, 12])
    day = rng.choice([rng.randint(0, 32), 1, 28, 29, 30, 31])
    hour, minute, second = rng.randint(0, 25), rng.randint(0, 61), rng.randint(0, 61)
    text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    if rng.random() < 0.05:
        at = rng.randrange(len(text))
        text = text[:at] + rng.choice("x9-:.Z T") + text[at + 1 :]
    digits = rng.choice([0, 0, 1, 2, 3, 6, 6, 8, 9, 9, 10, 12])
    if digits:
        text += "." + "".join(rng.choice("0123456789") for _ in range(digits))
    elif rng.random() < 0.1:
        text += "."
    text += rng.choice(["Z", "Z", "Z", "", "+02:00", "-05:30", "z", "ZZ", " Z", "Z\n"])
    return ("é" + text) if rng.random() < 0.02 else text


def test_fast_path_agrees_with_the_regex_on_near_timestamps():
    rng = random.Random(20261123)
    texts = [timestamp_like(rng) for _ in range(50_000)]
    texts += [None, "", "Z", "2024-02-29T23:59:59.999999Z", "2023-02-29T00:00:00Z"]
    texts += ["1000-01-01T00:00:00Z", "2999-12-31T23:59:59.123456789Z", "2026-11-23T02:00:00.5Z"]
    series = pl.Series("ts", texts)
    fast = _iso_utc_fast(series)
    regex = _iso_timestamp(series)
    # Where the fast path answers, it answers what the regex does; it answers for most.
    assert fast.drop_nulls().len() > 2_000
    assert fast.filter(fast.is_not_null()).equals(regex.filter(fast.is_not_null()))
    assert iso_timestamp(series).equals(regex)


@pytest.mark.parametrize("start, length", [(0, 3), (2, 5), (7, 1)])
def test_sliced_and_chunked_series(start, length):
    texts = ["2026-11-23T02:00:00Z", "bad", None, "2026-11-23T02:00:00.123Z"] * 3
    series = pl.Series("ts", texts).slice(start, length)
    assert iso_timestamp(series).equals(_iso_timestamp(series))
    chunked = pl.concat([series, pl.Series("ts", texts)], rechunk=False)
    assert iso_timestamp(chunked).equals(_iso_timestamp(chunked))
