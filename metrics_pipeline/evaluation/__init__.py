"""Generated runs with known answers: the demo's data and the detectors' backtest."""
