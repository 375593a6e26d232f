"""The Prefect server killed with SIGKILL while a replayed day's exit monitor watches its positions, then started again.

The day (the synthetic market's last session, as `openbell demo` trades it on the paper broker) runs in a
process of its own against a real Prefect server, which the module starts once on a free port with a
Prefect home of its own (its first start creates and migrates the database). The test holds the store's
write turn and hands it to the day one transaction at a time, so it sees every state the day commits however
fast the replay runs: once the monitor has recorded its protective orders (every position open behind its
target and stop, no trade booked), the day waits for its next write while the test kills the server's whole
process group with SIGKILL; then the day goes on without a server. A few seconds after the monitor has
finished, the server is started again on the same port with the same database.

What a trader needs, and what happens today:

- the monitor carries on while the API is away: its loop makes no Prefect call, so its exits fill, the
  positions close and it books its own end in `runs`, all with the server down;
- Prefect's client retries its call at the monitor's end (for about a minute: after 2, 4, 8, 16, 32 s) and
  the day goes on once the server is back: it completes, and Prefect shows each of its runs completed;
- a client that waits no longer (PREFECT_CLIENT_MAX_RETRIES=0, as after an outage longer than that minute)
  fails the day at the monitor's end, its positions already closed, and the phases after the monitor do
  not run; `trading_day(replace_existing=False)` run again completes the day.

Either way the trades equal a clean run's (the same day against the same server, into another store, without
a restart), no order or fill is stored twice, no run is left `running`, and nothing is left running of the
day or of either server.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from openbell.config import RunOptions
from openbell.prefect_api import server_command
from openbell.store import Store, lake
from tests.service.service_support import (
    free_port,
    group_alive,
    kill_group,
    log_tail,
    processes_with_env,
    quiet_env,
    start_group,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

FIRST_START_S = 240.0  # a fresh server creates and migrates its database: 8 s here, a minute on a slow machine
RESTART_S = 120.0
DAY_S = 150.0
AFTER_MONITOR_S = 3.0  # the server stays away this long after the monitor has finished
MORNING = ["premarket_scan", "rank_candidates", "place_moo_orders", "monitor_exits"]  # the phases up to the monitor's end
PHASES = [*MORNING, "liquidate_eod", "report_eod"]
KEYS = {"orders": "client_order_id", "fills": "fill_id", "paper_orders": "client_order_id", "paper_fills": "fill_id"}

DAY_SCRIPT = """
import sys
from openbell.flows.trading_day import trading_day
from openbell.config import RunOptions
print(trading_day(options=RunOptions.model_validate_json(sys.argv[1]), replace_existing=sys.argv[2] == "replace"))
"""

# Where the day is: the monitor runs with positions open behind their protective orders, no trade booked yet.
PROGRESS = """
SELECT
    (SELECT count(*) FROM runs WHERE flow = 'monitor_exits' AND status = 'running'),
    (SELECT count(*) FROM orders WHERE purpose IN ('target', 'stop')),
    (SELECT count(*) FROM (
        SELECT symbol FROM fills GROUP BY symbol HAVING sum(CASE side WHEN 'buy' THEN qty ELSE -qty END) > 0
    )),
    (SELECT count(*) FROM trades)
"""


@dataclass
class PrefectServer:
    """A Prefect server as `openbell up` starts it, in a process group of its own; each start is one incarnation."""

    home: Path
    port: int
    logs: Path
    incarnations: list[subprocess.Popen] = field(default_factory=list)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a process using this server (or of the server itself)."""
        return quiet_env(
            self.logs / "data", PREFECT_HOME=str(self.home), PREFECT_API_URL=self.api, PREFECT_UI_ENABLED="0", **extra
        )

    def running(self) -> subprocess.Popen | None:
        last = self.incarnations[-1] if self.incarnations else None
        return last if last is not None and last.poll() is None else None

    def start(self, timeout: float = RESTART_S) -> subprocess.Popen:
        """Start the server on its port with its database, and wait until its API answers."""
        log = self.logs / f"server-{len(self.incarnations) + 1}.log"
        server = start_group(server_command(self.port), self.env(PREFECT__SERVER_FINAL="1"), log)
        self.incarnations.append(server)

        def answers() -> bool:
            assert server.poll() is None, f"the Prefect server exited with {server.returncode}:\n{log_tail(log)}"
            return httpx.get(f"{self.api}/health", timeout=5).status_code == 200

        wait_for(answers, timeout, f"the Prefect server on port {self.port}", log=log)
        return server

    def ensure_running(self) -> subprocess.Popen:
        return self.running() or self.start()

    def kill(self) -> subprocess.Popen:
        """SIGKILL the running server's whole process group, as a crash or the OOM killer would."""
        server = self.running()
        assert server is not None, "no Prefect server to kill"
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
        wait_for(lambda: not group_alive(server.pid), 10, f"the killed server's process group {server.pid} to go", 0.05)
        return server

    def stop(self) -> None:
        for server in self.incarnations:
            kill_group(server.pid, grace=10)
            server.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A Prefect server for this module: a Prefect home of its own, a free port, a data folder for the market."""
    base = tmp_path_factory.mktemp("prefect-restart")
    server = PrefectServer(base / "prefect-home", free_port(), base)
    server.home.mkdir()
    try:
        server.start(FIRST_START_S)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def clean(server: PrefectServer) -> list[tuple]:
    """The day's trades, traded against the same server without a restart, into a store of its own."""
    server.ensure_running()
    store = new_store(server.logs / "clean" / "openbell.ducklake")
    day = start_day(server, store, server.logs / "clean-day.log")
    try:
        assert day.wait(timeout=DAY_S) == 0, log_tail(server.logs / "clean-day.log")
    finally:
        stop_day(day)
    assert trades(store), "the clean run traded nothing: there is nothing for the monitor to watch"
    return trades(store)


def test_the_monitor_closes_its_positions_while_prefect_restarts_and_the_day_completes(
    server: PrefectServer, clean: list[tuple], tmp_path: Path
):
    first = server.ensure_running()
    since = datetime.now(UTC)
    store = new_store(tmp_path / "openbell.ducklake")
    turns = WriteTurns(store)
    day = start_day(server, store, tmp_path / "day.log")
    try:
        open_at_kill = kill_server_mid_monitor(server, store, day, turns, tmp_path / "day.log")
        left_open, waiting = monitor_ends_without_server(store, day, tmp_path / "day.log")
        second = server.start()
        code = day.wait(timeout=DAY_S)
        prefect_view = flow_run_states(server.api, since)
    finally:
        turns.release()
        stop_day(day)
        server.stop()

    assert open_at_kill > 0  # positions were open when the server died (all three, unless a turn went unseen)
    assert left_open == 0  # the monitor watched and closed every position while the API was away
    assert waiting  # and the day waited for Prefect to come back instead of failing
    assert code == 0, log_tail(tmp_path / "day.log", 60)
    assert trades(store) == clean
    assert duplicated_keys(store) == {}
    assert run_statuses(store) == {phase: ["completed"] for phase in PHASES}
    # Prefect's own record: trading-day and its six phases, each completed
    assert len(prefect_view) == 1 + len(PHASES) and {state for _, state in prefect_view} == {"COMPLETED"}, prefect_view
    assert nothing_left(server, [day, first, second]) == []


def test_a_day_whose_prefect_client_gives_up_during_the_restart_is_completed_by_a_rerun(
    server: PrefectServer, clean: list[tuple], tmp_path: Path
):
    first = server.ensure_running()
    store = new_store(tmp_path / "openbell.ducklake")
    turns = WriteTurns(store)
    day = start_day(server, store, tmp_path / "day.log", PREFECT_CLIENT_MAX_RETRIES="0")
    rerun = None
    try:
        open_at_kill = kill_server_mid_monitor(server, store, day, turns, tmp_path / "day.log")
        left_open, _ = monitor_ends_without_server(store, day, tmp_path / "day.log")
        second = server.start()
        code = day.wait(timeout=DAY_S)
        after_failure = run_statuses(store)
        rerun = start_day(server, store, tmp_path / "rerun.log", replace=False)
        rerun_code = rerun.wait(timeout=DAY_S)
    finally:
        turns.release()
        stop_day(day)
        if rerun is not None:
            stop_day(rerun)
        server.stop()

    assert open_at_kill > 0
    assert left_open == 0
    assert code != 0  # the day's flow failed at the monitor's end: its client could not report the monitor done
    assert after_failure == {phase: ["completed"] for phase in MORNING}  # the monitor's end booked, nothing after it
    assert rerun_code == 0, log_tail(tmp_path / "rerun.log", 60)
    assert trades(store) == clean
    assert duplicated_keys(store) == {}
    assert run_statuses(store) == {
        **{phase: ["completed", "completed"] for phase in MORNING},  # run again: the same order ids, nothing open
        "liquidate_eod": ["completed"],
        "report_eod": ["completed"],
    }
    assert nothing_left(server, [day, rerun, first, second]) == []


# --------------------------------------------------------------------------------------------- the day


def new_store(path: Path) -> Store:
    store = Store(path)
    store.migrate()
    return store


def start_day(server: PrefectServer, store: Store, log: Path, replace: bool = True, **extra: str) -> subprocess.Popen:
    """`trading_day` in a process (and session) of its own, reporting to the server, trading into `store`."""
    options = RunOptions(db_path=str(store.path)).model_dump_json(exclude_none=True)
    argv = [sys.executable, "-c", DAY_SCRIPT, options, "replace" if replace else "keep"]
    return start_group(argv, server.env(**extra), log)


def stop_day(day: subprocess.Popen) -> None:
    kill_group(day.pid, grace=5)
    day.wait(timeout=10)


class WriteTurns:
    """The store's write turn (the lock every writer of the store takes for each transaction), held by the test.

    The day then waits at each of its writes until the test hands it the turn for exactly one transaction,
    so the test sees every state the day commits, however fast the replay runs and however slowly the
    test's reads answer on a busy machine.
    """

    def __init__(self, store: Store) -> None:
        self.path = lake.lock_file(store.path)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def hand_one(self, day: subprocess.Popen, deadline: float) -> None:
        """Let the day take the turn for one transaction, and take it back once that transaction ends."""
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        while not self._taken():
            assert day.poll() is None, f"the day ended with {day.returncode}"
            assert time.monotonic() < deadline, "the day wrote nothing more"
            time.sleep(0.0005)
        fcntl.flock(self.fd, fcntl.LOCK_EX)  # queued now: granted when the day's transaction ends

    def release(self) -> None:
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1

    def _taken(self) -> bool:
        probe = os.open(self.path, os.O_RDWR)
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(probe)  # closing drops the probe's lock, if it got it
        return False


def kill_server_mid_monitor(server: PrefectServer, store: Store, day: subprocess.Popen, turns: WriteTurns, log: Path) -> int:
    """Hand the day its write turns until the monitor has placed its protective pairs, then kill the server.

    The day waits for its next write meanwhile (the monitor's next exit). Returns the positions open at the kill.
    """
    deadline = time.monotonic() + DAY_S
    while True:
        running, protective, open_positions, booked = store.query(PROGRESS)[0]
        assert booked == 0 and not (protective and not open_positions), "the day went past its monitor's first tick"
        if running and protective:
            break
        try:
            turns.hand_one(day, deadline)
        except AssertionError as failed:
            raise AssertionError(f"{failed} before its monitor placed its protective orders:\n{log_tail(log)}") from None
    server.kill()
    turns.release()
    return open_positions


def monitor_ends_without_server(store: Store, day: subprocess.Popen, log: Path) -> tuple[int, bool]:
    """Wait, the server away, until the monitor has booked its end, then AFTER_MONITOR_S more.

    Returns the positions the monitor left open, and whether the day still runs at the end of the outage.
    """

    def monitor_done() -> bool:
        if store.query("SELECT count(*) FROM runs WHERE flow = 'monitor_exits' AND status = 'completed'")[0][0]:
            return True
        assert day.poll() is None, f"the day ended with {day.returncode} while the server was away:\n{log_tail(log)}"
        return False

    wait_for(monitor_done, 60, "the monitor to finish while the Prefect server is away", interval=0.1, log=log)
    time.sleep(AFTER_MONITOR_S)
    return store.query(PROGRESS)[0][2], day.poll() is None


# ------------------------------------------------------------------------------------------ the records


def trades(store: Store) -> list[tuple]:
    return store.query(
        "SELECT trade_date, symbol, shares, entry_ts, entry_price, exit_ts, exit_price, exit_reason, pnl FROM trades "
        "ORDER BY ALL"
    )


def duplicated_keys(store: Store) -> dict[str, tuple[int, int]]:
    """Tables holding a key more than once: (rows, distinct keys)."""
    counts = {t: store.query(f"SELECT count(*), count(DISTINCT {k}) FROM {t}")[0] for t, k in KEYS.items()}
    return {t: (rows, keys) for t, (rows, keys) in counts.items() if rows != keys}


def run_statuses(store: Store) -> dict[str, list[str]]:
    """Each phase's runs in `runs`, their statuses in the order they started."""
    statuses: dict[str, list[str]] = {}
    for flow, status in store.query("SELECT flow, status FROM runs ORDER BY started_at"):
        statuses.setdefault(flow, []).append(status)
    return statuses


def flow_run_states(api: str, since: datetime) -> list[tuple[str, str]]:
    """The flow runs that started since `since`, as Prefect records them: (name, state type)."""
    body = {"flow_runs": {"start_time": {"after_": since.isoformat()}}}
    response = httpx.post(f"{api}/flow_runs/filter", json=body, timeout=10)
    response.raise_for_status()
    return [(run["name"], run["state_type"]) for run in response.json()]


def nothing_left(server: PrefectServer, processes: list[subprocess.Popen]) -> list[str]:
    """What still runs of these processes' groups, or of any process using the server's Prefect home."""
    left = [f"process group {p.pid}" for p in processes if group_alive(p.pid)]
    return left + [f"pid {pid} (PREFECT_HOME)" for pid in processes_with_env("PREFECT_HOME", str(server.home))]
