"""The run-to-run noise assumed when nothing measured it (one baseline run, no history).

Kept apart from ``stats`` so that the command line can show the defaults without importing
scipy.
"""

# Identical runs on shared CI machines differ by 5-15 % in their medians and more in their
# tails (see the README's "Verdicts"); 10 % is the spread assumed for a run's statistic.
DEFAULT_RUN_NOISE = 0.10
# Error rates vary more: a few timeouts or a flaky upstream more or less move a 1 % error rate
# by a third between identical runs (issue #13: 30 % run-to-run variation in error rate gave
# 9-13 % false verdicts without a run term). With the latencies' 10 %, one baseline run of
# 50,000 requests flagged 12.5 % of unchanged runs' error rates (bench/README.md).
DEFAULT_ERROR_RATE_NOISE = 0.30
# Client-side timing jitter (scheduler, event loop, timer resolution) does not shrink with the
# latency: a 1 ms endpoint does not vary by 10 % of 1 ms between runs. Added in quadrature to
# the relative part for latencies, in milliseconds.
DEFAULT_LATENCY_JITTER_MS = 0.5
