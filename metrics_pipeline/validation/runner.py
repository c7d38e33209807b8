"""Run a suite of ``validation.suites`` on a polars frame with Great Expectations."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

import polars as pl

from metrics_pipeline.validation.suites import SUITES


@dataclass(frozen=True)
class ExpectationOutcome:
    expectation: str
    column: str | None
    success: bool
    unexpected_count: int
    unexpected_sample: list


@dataclass(frozen=True)
class ValidationResult:
    table: str
    rows: int
    outcomes: list[ExpectationOutcome]

    @property
    def success(self) -> bool:
        return all(o.success for o in self.outcomes)

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def as_markdown(self) -> str:
        lines = ["| expectation | column | ok | unexpected |", "|---|---|---|---|"]
        lines += [
            f"| {o.expectation} | {o.column or ''} | {'yes' if o.success else 'NO'} "
            f"| {o.unexpected_count} |"
            for o in self.outcomes
        ]
        return "\n".join(lines)


@cache
def _context():
    # Great Expectations costs seconds to import: only processes that validate pay for it.
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


# Rows per Great Expectations batch: pandas and GX hold several copies of a batch, so a bounded
# batch keeps a 1 GB run's validation flat in memory (a whole 7 M-row frame peaked at 1.6 GB).
BATCH_ROWS = 1_000_000


def validate(
    table: str,
    frame: pl.DataFrame | pl.LazyFrame,
    window: tuple[datetime, datetime | None] = (datetime.min.replace(tzinfo=UTC), None),
    batch_rows: int = BATCH_ROWS,
) -> ValidationResult:
    """Validate ``frame`` against the suite of ``table`` (timestamps inside ``window``, the
    run's window with its clock skew); never raises on failing data. Only the columns the
    suite looks at are read from a lazy frame.

    Large frames are validated in batches of about ``batch_rows`` rows, split by a hash of the
    suite's compound key: every copy of a key lands in the same batch, so uniqueness per batch
    is uniqueness over the frame, and the other (row-wise) rules are unaffected. The outcomes
    of the batches are summed per expectation.
    """
    suite = SUITES[table](*window)
    used = {
        column
        for _, kwargs in suite
        for key in ("column", "column_A", "column_B")
        if (column := kwargs.get(key))
    }
    keys = sorted({column for _, kwargs in suite for column in kwargs.get("column_list", [])})
    # Only the columns the suite looks at are read: a large run's other text columns would
    # double the memory for nothing. Each batch is read on its own (a filtered scan of the
    # Parquet files), so at most one batch is in memory.
    columns = frame.lazy().select(sorted(used | set(keys)))
    rows = columns.select(pl.len()).collect().item()
    batches = max(1, -(-rows // batch_rows))
    bucket = pl.struct(keys or sorted(used)).hash(seed=0) % batches
    outcomes: list[ExpectationOutcome] | None = None
    for index in range(batches):
        part = columns if batches == 1 else columns.filter(bucket == index)
        batch = _validate_batch(table, suite, part.collect(engine="streaming"))
        # Great Expectations' batch objects hold the pandas frame in reference cycles: without
        # a collection each batch stays resident (a 5 GB run's 35 batches reached 1.5 GB).
        gc.collect()
        outcomes = (
            batch
            if outcomes is None
            else [_merge(a, b) for a, b in zip(outcomes, batch, strict=True)]
        )
    return ValidationResult(table=table, rows=rows, outcomes=outcomes or [])


def _merge(a: ExpectationOutcome, b: ExpectationOutcome) -> ExpectationOutcome:
    return ExpectationOutcome(
        expectation=a.expectation,
        column=a.column,
        success=a.success and b.success,
        unexpected_count=a.unexpected_count + b.unexpected_count,
        unexpected_sample=(a.unexpected_sample + b.unexpected_sample)[:10],
    )


def _validate_batch(table: str, suite, columns: pl.DataFrame) -> list[ExpectationOutcome]:
    import great_expectations as gx
    import great_expectations.expectations as gxe

    context = _context()
    source = context.data_sources.add_or_update_pandas(f"frames_{table}")
    asset = source.add_dataframe_asset(f"{table}_{id(columns)}")
    # Text as categories: pandas would hold one Python string object per row (a 1 GB run's
    # 7 M source_file values alone cost gigabytes); a category holds each value once.
    pandas_frame = columns.with_columns(pl.col(pl.String).cast(pl.Categorical)).to_pandas()
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(
        batch_parameters={"dataframe": pandas_frame}
    )
    expectations = [getattr(gxe, name)(**kwargs) for name, kwargs in suite]
    result = batch.validate(gx.ExpectationSuite(name=table, expectations=expectations))
    source.delete_asset(asset.name)
    outcomes = []
    for item in result.results:
        config = item.expectation_config
        details = item.result or {}
        outcomes.append(
            ExpectationOutcome(
                expectation=config.type,
                column=config.kwargs.get("column")
                or ",".join(
                    config.kwargs.get("column_list")
                    or [
                        c
                        for c in (config.kwargs.get("column_A"), config.kwargs.get("column_B"))
                        if c
                    ]
                )
                or None,
                success=bool(item.success),
                unexpected_count=int(details.get("unexpected_count") or 0),
                unexpected_sample=list(details.get("partial_unexpected_list") or [])[:10],
            )
        )
    return outcomes
