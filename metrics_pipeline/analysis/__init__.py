"""Per-run and history analyses: summaries, baselines, verdicts, SLAs, findings."""
