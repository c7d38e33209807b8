"""Great Expectations suites for the canonical tables, behind a plain result object."""

from metrics_pipeline.validation.runner import ExpectationOutcome, ValidationResult, validate

__all__ = ["ExpectationOutcome", "ValidationResult", "validate"]
