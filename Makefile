# The README's two commands: `make demo` (set up and replay a day) and `make test`.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: setup demo test typecheck bench browser postgres clean

setup:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv || python3 -m pip install --quiet --user uv
	$(UV) sync --frozen

demo: setup
	$(UV) run openbell demo

test: setup
	$(UV) run pytest

# mypy on the package (src/openbell, its flows and tasks included), as configured in pyproject.toml.
typecheck: setup
	$(UV) run mypy

# Headless Chromium for the UI test in tests/service: Debian's package, when it is missing and apt-get
# is there. Never fails: without a browser that one test skips and says why.
CHROMIUM := /usr/bin/chromium
browser:
	@if [ -x $(CHROMIUM) ]; then \
		echo "chromium: $$($(CHROMIUM) --version 2>/dev/null || echo present)"; \
	elif command -v apt-get >/dev/null 2>&1; then \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO="sudo -n"; \
		echo "installing Debian's chromium and chromium-driver for the UI test"; \
		{ $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
			&& $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
			|| echo "chromium could not be installed: the UI test will skip"; \
	else \
		echo "no $(CHROMIUM) and no apt-get: the UI test will skip"; \
	fi

# Debian's PostgreSQL for the store's shared-catalog tests, when it is missing and apt-get is there.
# Never fails: without it those tests skip and say why. No server is left running: each test starts its own.
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		echo "postgresql: $$(ls -d /usr/lib/postgresql/*/ | tail -1)"; \
	elif command -v apt-get >/dev/null 2>&1; then \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO="sudo -n"; \
		echo "installing Debian's postgresql for the store's shared-catalog tests"; \
		{ $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
			&& $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null \
			&& { $$SUDO service postgresql stop >/dev/null 2>&1 || true; }; } \
			|| echo "postgresql could not be installed: the shared-catalog tests will skip"; \
	else \
		echo "no PostgreSQL and no apt-get: the shared-catalog tests will skip"; \
	fi

bench: setup
	$(UV) run python -m benchmarks.bench_replay
	$(UV) run python -m benchmarks.bench_day
	$(UV) run python -m benchmarks.bench_backtest
	$(UV) run python -m benchmarks.bench_sweep
	$(UV) run python -m benchmarks.bench_ranking

clean:
	rm -rf data/openbell.duckdb data/openbell.ducklake data/openbell.ducklake-* data/openbell.ducklake.* data/synthetic
