"""Prefect flows, one per phase of the trading day, and `trading_day` that runs them in order."""
