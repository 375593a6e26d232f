"""Research: backtests over date ranges through the live day's decisions, exit sweeps, ranker comparisons, reports."""
