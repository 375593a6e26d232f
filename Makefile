# The README's two commands: `make demo` (set up and replay a day) and `make test`.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: setup demo test bench clean

setup:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv || python3 -m pip install --quiet --user uv
	$(UV) sync --frozen

demo: setup
	$(UV) run openbell demo

test: setup
	$(UV) run pytest

bench: setup
	$(UV) run python benchmarks/bench_replay.py

clean:
	rm -rf data/openbell.duckdb data/synthetic
