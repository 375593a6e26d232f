"""What a user waits for: the morning scan of a whole daily file, a replayed day, and the flows of a day.

(a) The scan of the 7,330-symbol daily file of ../shared/data for 2018-03-01, every symbol with a daily
    bar that day taken as an opening print (7,172 symbols): from the Parquet file to the filtered
    candidates (`ParquetReplaySource.daily_bars` -> `scan.scan_features` -> `scan.apply_filters`).
    - in a fresh process: interpreter start, imports, reading, sorting, scanning;
    - in-process, median of 5 on a new source each time (reading included), and the scan alone on the
      frames in memory;
    - the reference: the scan as first written (tests/unit/reference_scan.py, one pandas groupby().apply()
      per symbol) on the same inputs in the same run; the two results must be equal.
(b) `openbell replay --date 2018-03-01` of the recorded data, each in a fresh process, as a user runs it:
    the first in an empty data folder (its temporary Prefect server creates its database), then 5 more;
    then 5 with `openbell up` running (the runs go to its server). Next to it: `openbell demo` on a fresh
    machine (empty PREFECT_HOME and data folder), a process that only imports the flows, and the
    temporary server's start on its own.
(c) The flows of a day once the API is up: `trading_day(mode="replay")` of 2018-03-01, median of 5 calls in
    one process after a warm-up, next to the same seven flows and nineteen tasks with empty bodies (what
    Prefect itself costs) against the same server.

Run:  uv run python -m benchmarks.bench_day          (about 2 minutes; or: make bench)
Prints a table and writes benchmarks/results/day.json. Exits 1 when the two scans differ or a run fails.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from benchmarks.paths import DAILY, MINUTE, PROJECT_DIR, RESULTS_DIR, SHARED

DAY = "2018-03-01"
REPEATS = 5

SCAN_JOB = """
import sys, time
started = time.perf_counter()
from datetime import date, timedelta
from openbell import calendar
from openbell.core import scan
from openbell.venues.replay import ParquetReplaySource

day = date.fromisoformat(sys.argv[2]); prior = calendar.previous_session(day)
source = ParquetReplaySource(sys.argv[3], sys.argv[4])
daily = source.daily_bars(prior - timedelta(days=45), prior)
opening = source.daily_bars(day, day)[["symbol", "open", "volume"]]
if sys.argv[1] == "reference":
    from tests.unit import reference_scan as implementation  # found from the working directory, the project root
else:
    implementation = scan
features = scan.apply_filters(implementation.scan_features(daily, opening, prior), scan.ScanFilters())
print(f"{len(features)} symbols, {int(features['passed'].sum())} candidates in {time.perf_counter() - started:.3f} s")
"""


@task(cache_policy=NO_CACHE)
def _step(x: int) -> int:
    return x


@flow
def _phase(tasks: int) -> None:
    for _ in range(tasks):
        _step(1)


@flow
def _empty_day() -> None:
    """The shape of trading_day with empty bodies: one task, then six phases of three tasks each."""
    _step(0)  # clear_replayed_day
    for _ in range(6):  # begin_run, the phase's task, finish_run
        _phase(3)


def main() -> int:
    if not (MINUTE.exists() and DAILY.exists()):
        print(f"the recorded market data is not at {SHARED}; this benchmark needs it", file=sys.stderr)
        return 1
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    results = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": _machine()}
    results["scan"] = bench_scan()
    with tempfile.TemporaryDirectory(prefix="openbell-bench-") as scratch:
        results["day"] = bench_day(Path(scratch))
        results["flows"] = bench_flows(Path(scratch))
    (RESULTS_DIR / "day.json").write_text(json.dumps(results, indent=2) + "\n")
    _print(results)
    print(f"\nwrote {RESULTS_DIR / 'day.json'}")
    return 0 if results["scan"]["equal"] else 1


# -- (a) the scan ---------------------------------------------------------------------------------


def bench_scan() -> dict:
    from datetime import date, timedelta

    import pandas as pd

    from openbell import calendar
    from openbell.core import scan
    from openbell.venues.replay import ParquetReplaySource
    from tests.unit import reference_scan

    day = date.fromisoformat(DAY)
    prior = calendar.previous_session(day)

    def whole_job(implementation) -> pd.DataFrame:
        source = ParquetReplaySource(MINUTE, DAILY)
        daily = source.daily_bars(prior - timedelta(days=45), prior)
        opening = source.daily_bars(day, day)[["symbol", "open", "volume"]]
        return scan.apply_filters(implementation.scan_features(daily, opening, prior), scan.ScanFilters())

    whole_job(scan)  # warm: the OS has the file in its page cache, as it does for a second scan
    job_s, fast = _median(lambda: whole_job(scan))
    reference_s, slow = _timed(lambda: whole_job(reference_scan))
    source = ParquetReplaySource(MINUTE, DAILY)
    daily = source.daily_bars(prior - timedelta(days=45), prior)
    opening = source.daily_bars(day, day)[["symbol", "open", "volume"]]
    kernel_s, _ = _median(lambda: scan.scan_features(daily, opening, prior))

    fresh = [_fresh_scan("scan") for _ in range(3)]
    fresh_reference = _fresh_scan("reference")
    equal = fast.equals(slow)
    return {
        "symbols": len(fast),
        "candidates": int(fast["passed"].sum()),
        "daily_rows_read": len(daily),
        "fresh_process_s": statistics.median(fresh),
        "fresh_process_runs_s": fresh,
        "fresh_process_reference_s": fresh_reference,
        "in_process_s": job_s,
        "in_process_reference_s": reference_s,
        "kernel_s": kernel_s,
        "equal": bool(equal),
    }


def _fresh_scan(which: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", SCAN_JOB, which, DAY, str(MINUTE), str(DAILY)],
        cwd=PROJECT_DIR, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "candidates" in done.stdout, done.stderr
    return time.perf_counter() - started


# -- (b) a replayed day in a fresh process -----------------------------------------------------------


def bench_day(scratch: Path) -> dict:
    env = _env(scratch / "prefect-home", scratch / "data")
    replay = ["replay", "--date", DAY, "--bars", str(MINUTE), "--daily", str(DAILY)]
    first = _cli(replay, env, "replay-first")
    runs = [_cli(replay, env, f"replay-{i}") for i in range(REPEATS)]
    demo = _cli(["demo"], _env(scratch / "demo-prefect-home", scratch / "demo-data"), "demo-fresh")
    up_env = _env(scratch / "up-prefect-home", scratch / "up-data")
    up_s = _cli(["up", "--port", str(_free_port())], up_env, "up")
    try:
        with_up = [_cli(replay, up_env, f"replay-up-{i}") for i in range(REPEATS)]
    finally:
        _cli(["down"], up_env, "down")
    imports = _wall([sys.executable, "-c", "import openbell.flows.trading_day"], env)
    return {
        "replay_first_s": first,
        "replay_s": statistics.median(runs),
        "replay_runs_s": runs,
        "demo_fresh_machine_s": demo,
        "up_s": up_s,
        "replay_with_up_s": statistics.median(with_up),
        "replay_with_up_runs_s": with_up,
        "import_flows_s": imports,
        "server_start_s": _server_start(scratch / "data"),
    }


def _cli(args: list[str], env: dict[str, str], name: str) -> float:
    log = RESULTS_DIR / f"{name}.log"
    started = time.perf_counter()
    command = [sys.executable, "-m", "openbell.cli", *args]
    done = subprocess.run(command, cwd=PROJECT_DIR, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    log.write_text(f"$ openbell {' '.join(args)}\n{done.stdout}\n{done.stderr}")
    if done.returncode != 0:
        raise RuntimeError(f"openbell {' '.join(args)} exited with {done.returncode}; see {log}")
    return seconds


def _free_port() -> int:
    from openbell.prefect_api import HOST

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _wall(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=PROJECT_DIR, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def _server_start(data_dir: Path) -> float:
    """The temporary server's start on an existing database: spawn to first answer."""
    from openbell import prefect_api

    started = time.perf_counter()
    api = prefect_api.open_api(None, data_dir / "prefect", data_dir / "logs" / "bench-server.log")
    try:
        api.wait_until_ready()
        return time.perf_counter() - started
    finally:
        api.stop()


def _env(prefect_home: Path, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "OPENBELL_"))}
    env.update(
        PREFECT_HOME=str(prefect_home),
        OPENBELL_DATA__DIR=str(data_dir),
        DO_NOT_TRACK="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    return env


# -- (c) the flows of a day, the API up ------------------------------------------------------------


def bench_flows(scratch: Path) -> dict:
    """trading_day in this process against a temporary server, next to the same flow shape with empty bodies."""
    from datetime import date

    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from openbell import prefect_api
    from openbell.config import RunOptions

    os.environ["OPENBELL_DATA__DIR"] = str(scratch / "data")
    from openbell.flows.trading_day import trading_day

    options = RunOptions(db_path=str(scratch / "flows.ducklake"), minute_bars=str(MINUTE), daily_bars=str(DAILY))
    day = date.fromisoformat(DAY)
    api = prefect_api.open_api(None, scratch / "data" / "prefect", scratch / "data" / "logs" / "bench-flows.log")
    try:
        url = api.wait_until_ready()
        with temporary_settings(updates={PREFECT_API_URL: url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            first_s, _ = _timed(lambda: trading_day(trade_date=day, mode="replay", options=options))
            flows_s, _ = _median(lambda: trading_day(trade_date=day, mode="replay", options=options))
            _empty_day()
            floor_s, _ = _median(_empty_day)
            prefect_api.drain_workers()
    finally:
        api.stop()
    return {"first_call_s": first_s, "warm_s": flows_s, "prefect_floor_s": floor_s}


# -- helpers -----------------------------------------------------------------------------------------


def _timed(work: Callable):
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def _median(work: Callable, repeats: int = REPEATS):
    times, result = [], None
    for _ in range(repeats):
        seconds, result = _timed(work)
        times.append(seconds)
    return statistics.median(times), result


def _machine() -> dict:
    import duckdb
    import pandas as pd
    import prefect

    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "pandas": pd.__version__,
        "duckdb": duckdb.__version__,
        "prefect": prefect.__version__,
        "platform": platform.platform(),
    }


def _print(r: dict) -> None:
    m, s, d, f = r["machine"], r["scan"], r["day"], r["flows"]
    print(f"\nmachine: {m['cpu_count']} cores, Python {m['python']}, pandas {m['pandas']}, Prefect {m['prefect']}")
    rows = [
        (f"(a) scan of the daily file, {s['symbols']:,} symbols -> {s['candidates']:,} candidates", "", ""),
        ("  whole job in a fresh process (median of 3)", f"{s['fresh_process_s']:.2f} s",
         f"reference {s['fresh_process_reference_s']:.2f} s"),
        ("  file to candidates, in-process (median of 5)", f"{s['in_process_s'] * 1000:.0f} ms",
         f"reference {s['in_process_reference_s'] * 1000:,.0f} ms"),
        (f"  scan_features on {s['daily_rows_read']:,} daily rows in memory", f"{s['kernel_s'] * 1000:.0f} ms", ""),
        ("  equal to the reference, row for row", "yes" if s["equal"] else "NO", ""),
        (f"(b) openbell replay --date {DAY}, fresh process", "", ""),
        ("  first run, empty data folder (creates the server's database)", f"{d['replay_first_s']:.1f} s", ""),
        (f"  later runs (median of {REPEATS})", f"{d['replay_s']:.1f} s",
         "runs " + ", ".join(f"{x:.1f}" for x in d["replay_runs_s"])),
        (f"  with `openbell up` running (median of {REPEATS})", f"{d['replay_with_up_s']:.1f} s",
         f"openbell up itself {d['up_s']:.1f} s"),
        ("  openbell demo, fresh machine (empty PREFECT_HOME and data)", f"{d['demo_fresh_machine_s']:.1f} s", ""),
        ("  reference: a process that imports the flows", f"{d['import_flows_s']:.1f} s", ""),
        ("  reference: the temporary server's start, database there", f"{d['server_start_s']:.1f} s", ""),
        ("(c) the flows of a day, API up", "", ""),
        (f"  trading_day {DAY} (median of {REPEATS} after a warm-up)", f"{f['warm_s']:.2f} s",
         f"first call {f['first_call_s']:.2f} s"),
        ("  reference: the same 7 flows and 19 tasks, empty", f"{f['prefect_floor_s']:.2f} s", ""),
    ]  # fmt: skip
    width = max(len(row[0]) for row in rows)
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>9}  {note}")


if __name__ == "__main__":
    sys.exit(main())
