"""Thin Prefect tasks over the openbell package: load inputs, call the core, persist the result."""
