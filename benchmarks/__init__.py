"""Benchmarks of openbell, each run from the project root as a module: uv run python -m benchmarks.bench_day."""
