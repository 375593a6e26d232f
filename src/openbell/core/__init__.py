"""Pure trading logic: domain types, prices, sizing, exits, scan, ranking and P&L.

Nothing under `openbell.core` performs I/O, reads the clock or the environment, or imports
prefect, duckdb, a broker SDK or an HTTP client; tests, backtests and notebooks call it directly.
"""
