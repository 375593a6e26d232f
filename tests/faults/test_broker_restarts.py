"""A day traded through the fake Alpaca and the fake TWS, its process killed with SIGKILL mid-day, then run again.

2018-03-01 is traded as in tests/flows/test_broker_days.py, but each day runs in a process of its own
(as every Prefect deployment run does), against a fake in this process that outlives it. The trading
process is killed with SIGKILL at one point of the day, found in the fake's own records:

- `moo_sent`: every market-on-open entry has reached the broker (the day may not have recorded them yet);
- `pairs_placed`: every protective pair of the day has reached the broker;
- `exit_filled`: the broker has filled a first exit while the monitor watches;
- `liquidation_sent`: every liquidation sell has reached the broker.

Then the day runs again, `replace_existing=False`, against the same fake, which has kept everything it
was sent. The run must adopt what the broker already has instead of sending it again, and the day must
end as a clean run through the same kind of fake ended: the same trades (gross: the fake TWS charges
its own commissions), each order sent once under its client order id, the account flat but for the
100 IBM it held before, and nothing of the killed process left running.

The fake fills by the paper fill model on the replay's timeline (broker_bridge). The replay runs in
another process here, so that process publishes its timeline to a file each time it moves, before
anything at the new time happens (`PublishedTimeline`, a SimClock that also writes its time, installed as
the SimClock `wiring.clock_for` makes; the flows, tasks and adapters run unchanged), and the fake's
clock reads the file (`PublishedReplayTime`): it sees the day's time exactly as a fake in the same
process would, so the fills do not depend on how fast either process runs. It
never goes back: a run killed at 10:31 leaves the market at 10:31, and the run after it, whose replay
starts again in the morning, finds it there until its own replay gets past 10:31. A restart takes no
market time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from openbell.config import Settings
from openbell.core.types import Order, Position, Symbol
from openbell.store import Store
from tests.fakes.broker_bridge import PaperExchange
from tests.flows.broker_day_support import DAY, HELD, SYMBOLS, BridgedBroker, orders, start_bridged_broker, trades

PROJECT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

OURS = f"ob-{DAY:%Y%m%d}-"
KINDS = ["alpaca", "ibkr"]
KILL_POINTS = ["moo_sent", "pairs_placed", "exit_filled", "liquidation_sent"]
POLL_S = 0.02
DAY_TIMEOUT_S = 240  # days run side by side on two cores
DAYS_AT_ONCE = 4

DAY_PROCESS = """
import json, os, sys
from datetime import date
from pathlib import Path

from openbell import wiring
from openbell.clock import SimClock

job = json.loads(sys.argv[1])
published = Path(job["timeline"])


class PublishedTimeline(SimClock):
    # The replay's timeline, written where the fake reads it each time it moves, before anything happens then.
    def __init__(self, start):
        super().__init__(start)
        self._publish()

    def sleep_until(self, moment):
        before = self.now()
        super().sleep_until(moment)
        if self.now() != before:
            self._publish()

    def _publish(self):
        scratch = published.with_name(published.name + ".new")
        scratch.write_text(self.now().isoformat())
        os.replace(scratch, published)


wiring.SimClock = PublishedTimeline  # the timelines `wiring.clock_for` makes for the day's phases

from openbell.flows.trading_day import trading_day
from openbell.config import RunOptions

trading_day(trade_date=date.fromisoformat(job["day"]), symbols=job["symbols"], replace_existing=False,
            options=RunOptions(db_path=job["db"], minute_bars=job["minute"], daily_bars=job["daily"]))
"""


class PublishedReplayTime:
    """Where the day replayed in another process has got to: the latest time published to `path`, never going back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._latest: datetime | None = None
        self._lock = threading.Lock()

    def __call__(self) -> datetime | None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            text = ""
        with self._lock:
            if text:
                moment = datetime.fromisoformat(text)
                if self._latest is None or moment > self._latest:
                    self._latest = moment
            return self._latest


@dataclass
class Venue(BridgedBroker):
    """A fake broker of one kind, its account holding 100 IBM, following the days replayed in other processes."""

    timeline: Path

    # --- the fake's own records ---------------------------------------------------------------
    def received(self) -> list[str]:
        """The client order id of every order placement the broker received, in order (a stop leg at Alpaca
        travels inside its target's order, and has no placement of its own)."""
        if self.kind == "alpaca":
            return [o["client_order_id"] for o in self.fake.orders_with_client_id_prefix(OURS)]
        return list(self.fake.place_requests)

    def placements(self) -> int:
        """Order placement requests the broker received, accepted or not."""
        if self.kind == "alpaca":
            return self.fake.requests.count("POST /v2/orders")
        return len(self.fake.place_requests)

    def sells_filled(self) -> int:
        """Executions of sell orders the broker made (the pre-existing IBM is never sold)."""
        if self.kind == "alpaca":
            with self.fake._lock:  # noqa: SLF001 - the fake's books, legs included, read under its own lock
                return sum(1 for o in self.fake._orders.values() if o["side"] == "sell" and Decimal(o["filled_qty"]))  # noqa: SLF001
        return sum(1 for e in list(self.fake.executions) if e.order.action == "SELL")


def _venue(kind: str, shared_data, folder: Path) -> Venue:
    timeline = folder / "replay-time"
    bridged = start_bridged_broker(kind, PaperExchange(DAY, *shared_data, replay_time=PublishedReplayTime(timeline)))
    return Venue(bridged.kind, bridged.fake, bridged.env, bridged.settings, timeline)


@dataclass
class DayProcess:
    """One run of the whole day in a process of its own (and its own process group), trading through `venue`."""

    venue: Venue
    db: Path
    shared_data: tuple[Path, Path]
    prefect_api: str  # the session's Prefect API (read in the main thread: Prefect's settings are per context)
    log: Path
    process: subprocess.Popen | None = None

    def start(self) -> DayProcess:
        minute, daily = self.shared_data
        job = {"day": str(DAY), "symbols": SYMBOLS, "db": str(self.db), "minute": str(minute), "daily": str(daily),
               "timeline": str(self.venue.timeline)}  # fmt: skip
        env = {**os.environ, **self.venue.env, "PREFECT_API_URL": self.prefect_api,
               "OPENBELL_DATA__DIR": str(self.db.parent / "data")}  # fmt: skip
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([sys.executable, "-c", DAY_PROCESS, json.dumps(job)], cwd=PROJECT, env=env,
                                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        return self

    def finish(self) -> None:
        assert self.process.wait(timeout=DAY_TIMEOUT_S) == 0, f"the day failed:\n{self.tail()}"

    def kill_when(self, reached: Callable[[], bool], point: str) -> None:
        """SIGKILL the trading process as soon as `reached()` (polled every POLL_S) says the point has come."""
        deadline = time.monotonic() + DAY_TIMEOUT_S
        while not reached():
            assert self.process.poll() is None, f"the day ended before {point}:\n{self.tail()}"
            assert time.monotonic() < deadline, f"no {point} within {DAY_TIMEOUT_S} s"
            time.sleep(POLL_S)
        self.process.send_signal(signal.SIGKILL)
        assert self.process.wait(timeout=30) == -signal.SIGKILL, f"the day ended before it was killed:\n{self.tail()}"

    def group_left(self) -> bool:
        """Whether any process of this run's process group is still there."""
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def clean_up(self) -> None:
        if self.process is not None and self.group_left():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


# --- what a day leaves -------------------------------------------------------------------------------
def _ids(store: Store, *purposes: str) -> set[str]:
    rows = store.query("SELECT client_order_id FROM orders WHERE trade_date = ? AND purpose IN (SELECT unnest(?))",
                       [DAY, list(purposes)])  # fmt: skip
    return {cid for (cid,) in rows}


@dataclass
class CleanDay:
    trades: dict[str, tuple]
    orders: dict[str, tuple]
    entries: set[str]
    pairs: set[str]  # the protective pairs' ids that travel as placements (at Alpaca a stop rides in its target)
    liquidations: set[str]


def _clean_day(kind: str, shared_data, folder: Path, prefect_api: str) -> CleanDay:
    """The day through a fresh fake of `kind`, in a process of its own, undisturbed."""
    venue = _venue(kind, shared_data, folder)
    day = DayProcess(venue, folder / "openbell.ducklake", shared_data, prefect_api, folder / "day.log")
    try:
        day.start().finish()
    finally:
        day.clean_up()
        venue.fake.stop()
    store = Store(day.db)
    pairs = _ids(store, "target") if kind == "alpaca" else _ids(store, "target", "stop")
    return CleanDay(trades(store), orders(store), _ids(store, "entry"), pairs, _ids(store, "eod"))


def _kill_point(point: str, venue: Venue, clean: CleanDay) -> Callable[[], bool]:
    if point == "moo_sent":
        return lambda: clean.entries <= set(venue.received())
    if point == "pairs_placed":
        return lambda: clean.pairs <= set(venue.received())
    if point == "exit_filled":
        return lambda: venue.sells_filled() > 0
    assert point == "liquidation_sent"
    return lambda: clean.liquidations <= set(venue.received())


@dataclass
class Restarted:
    """A day killed at `point`, then run again, through a fake of `kind`; what the fake and the store show after."""

    kind: str
    point: str
    clean: CleanDay
    store: Store
    venue: Venue
    before_kill: list[str]  # the placements the broker had received when the process was killed
    after_kill: list[str]  # the placements it received from the run after
    placements: int
    left_after_kill: bool
    left_after_rerun: bool
    killed_at: datetime  # the replay's time in the killed process when it was killed
    recorded_at_kill: set[str]  # the orders the killed run had recorded in the store
    positions: dict[Symbol, Position] = field(default_factory=dict)
    working: list[Order] = field(default_factory=list)

    def __str__(self) -> str:
        return (f"{self.kind} killed at {self.point} ({self.killed_at:%H:%M:%S} in the replay): the broker had "
                f"{len(self.before_kill)} orders, the store {len(self.recorded_at_kill)}; the run after sent "
                f"{len(self.after_kill)}")  # fmt: skip


def _restart(kind: str, point: str, clean: CleanDay, shared_data, folder: Path, prefect_api: str) -> Restarted:
    """Run the day through a fresh fake of `kind`, SIGKILL it at `point`, and run it again against the same fake."""
    venue = _venue(kind, shared_data, folder)
    db = folder / "openbell.ducklake"
    killed = DayProcess(venue, db, shared_data, prefect_api, folder / "killed.log")
    again = DayProcess(venue, db, shared_data, prefect_api, folder / "again.log")
    try:
        killed.start().kill_when(_kill_point(point, venue, clean), point)
        left_after_kill = killed.group_left()
        before_kill, killed_at = venue.received(), venue.fake.engine.clock.now()
        recorded_at_kill = set(orders(Store(db)))
        again.start().finish()
        left_after_rerun = again.group_left()
        after_kill = venue.received()[len(before_kill) :]
        positions, working = venue.account()
    finally:
        killed.clean_up()
        again.clean_up()
        venue.fake.stop()
    return Restarted(kind, point, clean, Store(db), venue, before_kill, after_kill, venue.placements(),
                     left_after_kill, left_after_rerun, killed_at, recorded_at_kill, positions, working)  # fmt: skip


@pytest.fixture(scope="module")
def restarts(request, prefect_harness, shared_data, tmp_path_factory) -> Iterator[Callable[[str, str], Restarted]]:
    """`restarts(kind, point)`: the day killed at `point` and run again through a fake of `kind`.

    A day spends most of its time waiting on round trips (to the fake, to Prefect, to the store), so the
    selected restarts run side by side, DAYS_AT_ONCE at a time, each with a fake and a store of its own,
    once the clean day of their kind is known.
    """
    from prefect.settings import PREFECT_API_URL

    api = PREFECT_API_URL.value()
    wanted = sorted({item.callspec.params["restarted"] for item in request.session.items
                     if "restarted" in getattr(getattr(item, "callspec", None), "params", {})})  # fmt: skip
    turns = threading.BoundedSemaphore(DAYS_AT_ONCE)

    def clean_day(kind: str, folder: Path) -> CleanDay:
        with turns:
            return _clean_day(kind, shared_data, folder, api)

    def restart(kind: str, point: str, folder: Path) -> Restarted:
        clean = cleans[kind].result()
        with turns:
            return _restart(kind, point, clean, shared_data, folder, api)

    pool = ThreadPoolExecutor(max_workers=len(KINDS) + len(wanted))
    cleans = {k: pool.submit(clean_day, k, tmp_path_factory.mktemp(f"clean-{k}")) for k in sorted({k for k, _ in wanted})}
    runs = {(k, p): pool.submit(restart, k, p, tmp_path_factory.mktemp(f"{k}-{p}")) for k, p in wanted}
    try:
        yield lambda kind, point: runs[kind, point].result()
    finally:
        pool.shutdown(cancel_futures=True)


@pytest.fixture(params=[(k, p) for k in KINDS for p in KILL_POINTS], ids=lambda kp: f"{kp[0]}-{kp[1]}")
def restarted(request, restarts) -> Restarted:
    return restarts(*request.param)


def test_the_kill_came_at_its_point_of_the_day(restarted):
    from openbell.wiring import day_times

    when = day_times(DAY, Settings())
    print(restarted)  # where it landed, for -rP
    expected = {
        "moo_sent": (when.moo, when.open),
        "pairs_placed": (when.open, when.liquidation),
        "exit_filled": (when.open, when.liquidation),
        "liquidation_sent": (when.liquidation, when.close),
    }
    start, end = expected[restarted.point]
    assert start <= restarted.killed_at < end, str(restarted)


def test_the_day_after_the_restart_has_the_clean_days_trades(restarted):
    assert trades(restarted.store) == restarted.clean.trades


def test_every_order_ends_as_in_the_clean_day(restarted):
    assert orders(restarted.store) == restarted.clean.orders


def test_every_order_reached_the_broker_once_under_its_own_client_order_id(restarted):
    ids = [cid for (cid,) in restarted.store.query("SELECT client_order_id FROM orders WHERE trade_date = ?", [DAY])]
    fake = restarted.venue.fake
    if restarted.kind == "alpaca":
        sent = [cid for cid in ids if not cid.endswith("-stop")]  # a stop travels as the leg of its target's order
        assert [len(fake.orders_with_client_id(cid)) for cid in sent] == [1] * len(sent)
        assert restarted.placements == len(sent)
    else:
        assert sorted(fake.place_requests) == sorted(ids)
    assert len(ids) == len(set(ids)) > 0


def test_the_restart_adopts_what_the_broker_has_and_sends_only_the_rest(restarted):
    """The orders sent before the kill are the day's, recorded once; the run after sent none of them again."""
    recorded = set(orders(restarted.store))
    assert restarted.before_kill  # the kill came after orders reached the broker
    assert set(restarted.before_kill) <= recorded
    assert set(restarted.after_kill).isdisjoint(restarted.before_kill)
    expected_after = recorded - set(restarted.before_kill)
    if restarted.kind == "alpaca":
        expected_after = {cid for cid in expected_after if not cid.endswith("-stop")}
    assert sorted(restarted.after_kill) == sorted(expected_after)


def test_the_account_ends_flat_but_for_the_holding_from_before(restarted):
    assert restarted.positions == {HELD.symbol: HELD}
    assert restarted.working == []


def test_nothing_of_the_killed_run_is_left_running(restarted):
    assert not restarted.left_after_kill
    assert not restarted.left_after_rerun


def test_the_fake_and_its_matching_engine_report_no_failure(restarted):
    fake = restarted.venue.fake
    assert fake.engine.errors == []
    if restarted.kind == "ibkr":
        assert fake.errors == []
        assert fake.unhandled == []
