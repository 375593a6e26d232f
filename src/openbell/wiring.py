"""Wiring for one trading day: settings in, store, market data, clock and broker out.

The only place that knows the difference between a replayed day and a live one: a replay gets
a simulated clock that starts at the phase's scheduled time and a replay data source; the
flows, tasks and core run the same code either way.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal

from openbell import calendar
from openbell.clock import Clock, SimClock, WallClock
from openbell.config import Settings
from openbell.core.types import NEW_YORK
from openbell.errors import ConfigError
from openbell.store import Store
from openbell.store.convert import import_legacy
from openbell.venues.broker import Broker
from openbell.venues.marketdata import MarketData
from openbell.venues.paper import PaperBroker
from openbell.venues.replay import ParquetReplaySource
from openbell.venues.synthetic import generate_synthetic_market

log = logging.getLogger(__name__)

Mode = Literal["replay", "live"]
SYNTHETIC_DIR = "synthetic"


@dataclass(frozen=True, slots=True)
class DayTimes:
    """When each phase of a trading day happens, New York time."""

    scan: datetime
    moo: datetime
    open: datetime
    liquidation: datetime
    close: datetime
    report: datetime


def day_times(day: date, settings: Settings) -> DayTimes:
    at = lambda t: datetime.combine(day, t, tzinfo=NEW_YORK)  # noqa: E731
    close = calendar.session_close(day)
    return DayTimes(
        scan=at(settings.schedule.scan_time),
        moo=at(settings.schedule.moo_time),
        open=calendar.session_open(day),
        liquidation=calendar.liquidation_time(
            day, settings.exits.liquidation_time, timedelta(minutes=settings.exits.early_close_offset_min)
        ),
        close=close,
        report=close + timedelta(minutes=settings.schedule.report_delay_min),
    )


LIVE_DATA_MISSING = (
    "live mode needs live market data from a broker: set OPENBELL_BROKER__KIND=alpaca or ibkr (the paper "
    "broker only replays), or run with mode='replay' to trade a recorded or synthetic day"
)
_live_sources: dict[str, MarketData] = {}


@dataclass(frozen=True, slots=True)
class Phase:
    """What one phase of a trading day works with: its times, the store, market data, a clock, the broker."""

    when: DayTimes
    store: Store
    market: MarketData
    clock: Clock
    broker: Broker


def open_phase(settings: Settings, mode: Mode, day: date, starts: str) -> Phase:
    """The parts of a phase whose clock starts at `starts` (a DayTimes field: "moo", "open", ...) in a replay.

    The caller closes `phase.broker` when done.
    """
    when = day_times(day, settings)
    store, market = store_for(settings, mode), market_for(settings, mode)
    clock = clock_for(mode, getattr(when, starts))
    return Phase(when, store, market, clock, broker_for(settings, store, market, clock, day))


_timelines: dict[date, SimClock] = {}
_timelines_lock = threading.Lock()


def clock_for(mode: Mode, start: datetime) -> Clock:
    """The wall clock when live; for a replay, the day's simulated timeline, moved to `start`.

    The phases of a replayed day share one timeline in a process, the way they share the wall clock
    when live, so anything else simulating that day (a fake broker in a test, say) can follow it with
    `replay_time`. A phase that starts earlier than the timeline has got to begins a new replay.
    """
    if mode != "replay":
        return WallClock()
    day = start.astimezone(NEW_YORK).date()
    with _timelines_lock:
        clock = _timelines.get(day)
        if clock is None or clock.now() > start:
            clock = _timelines[day] = SimClock(start)
        else:
            clock.sleep_until(start)
        return clock


def replay_time(day: date) -> datetime | None:
    """Where the replay of `day` has got to in this process, or None before it starts."""
    clock = _timelines.get(day)
    return clock.now() if clock else None


_migrated: set[object] = set()
_migrated_lock = threading.Lock()


def store_for(settings: Settings, mode: Mode = "replay") -> Store:
    """The settings' store, migrated on its first use in this process (a replayed day asks about 20 times).

    Its day tables are the `mode`'s book: a live day's records in the live book, a replay's in the replay
    book, so a replay never touches what was traded live.

    A data folder that still holds the DuckDB file of an earlier openbell, and no store yet, has its
    records moved into a new store first (the old file stays).
    """
    data = settings.data
    store = Store(data.lake(), lock_timeout=data.lock_timeout_s, book="live" if mode == "live" else "replay")
    with _migrated_lock:
        if _identity(store) not in _migrated:
            if data.db_path is None and data.catalog is None and not store.lake.exists() and data.legacy_database.exists():
                import_legacy(data.legacy_database, store, announce=log.warning)
            store.migrate()
            if (identity := _identity(store)) is not None:
                _migrated.add(identity)
    return store


def _identity(store: Store) -> object:
    """The catalog file's path, device and inode (a file deleted and made again is a new store), or the catalog."""
    file = store.lake.sqlite_file
    if file is None:
        return None if store.path == ":memory:" else store.lake
    try:
        stat = file.stat()
    except OSError:  # not created yet
        return None
    return file, stat.st_dev, stat.st_ino


def market_for(settings: Settings, mode: Mode = "replay") -> MarketData:
    """The broker's market data when live; else the replay source of the settings (`replay_source`)."""
    return _live_source(settings) if mode == "live" else replay_source(settings)


def replay_source(settings: Settings) -> ParquetReplaySource:
    """The replay source of the settings' Parquet files, or of the synthetic market (generated once)."""
    data = settings.data
    if data.minute_bars is not None and data.daily_bars is not None:
        return _replay_source(Path(data.minute_bars), Path(data.daily_bars))
    if data.minute_bars is not None or data.daily_bars is not None:
        raise ConfigError("give both minute_bars and daily_bars Parquet files, or neither for the synthetic market")
    folder = data.dir / SYNTHETIC_DIR
    minute, daily = folder / "minute_bars.parquet", folder / "daily_bars.parquet"
    if not (minute.exists() and daily.exists()):
        generate_synthetic_market(folder)
    return _replay_source(minute, daily)


def _live_source(settings: Settings) -> MarketData:
    """The broker's market data, one per process and settings (IB allows one connection per client id)."""
    key = settings.model_dump_json()
    if key not in _live_sources:
        universe = settings.data.universe
        if settings.broker.kind == "alpaca":
            from openbell.venues.alpaca.marketdata import AlpacaMarketData  # the SDKs load only for those who use them

            _live_sources[key] = AlpacaMarketData(settings, universe=universe)
        elif settings.broker.kind == "ibkr":
            from openbell.venues.ibkr.marketdata import IbkrMarketData

            _live_sources[key] = IbkrMarketData(settings, universe=universe)
        else:
            raise ConfigError(LIVE_DATA_MISSING)
    return _live_sources[key]


@lru_cache(maxsize=4)
def _replay_source(minute: Path, daily: Path) -> ParquetReplaySource:
    # One source per file pair and process: a replayed day asks for the same bars in every phase.
    source = ParquetReplaySource(minute, daily)
    source.validate()  # both files' existence and columns, before any flow starts work
    return source


def require_ready_to_trade(settings: Settings) -> None:
    """Every check of the trading settings that needs no connection, so a mistake stops a run before its first
    flow writes anything: the live switch, the broker's keys, a live port for a paper account."""
    settings.require_live_confirmed()
    if settings.broker.kind == "alpaca":
        from openbell.venues.alpaca.broker import require_keys  # the SDK loads only for those who use it

        require_keys(settings)
    elif settings.broker.kind == "ibkr":
        from openbell.venues.ibkr.session import api_ports

        api_ports(settings)


def broker_for(settings: Settings, store: Store | None, market: MarketData | None, clock: Clock, day: date) -> Broker:
    """The configured broker for `day`: the paper broker (default) or a real one, paper account unless live."""
    settings.require_live_confirmed()
    if settings.broker.kind == "alpaca":
        from openbell.venues.alpaca import AlpacaBroker  # the SDK loads only for those who use it

        return AlpacaBroker(settings, clock, day)
    if settings.broker.kind == "ibkr":
        from openbell.venues.ibkr import IbkrBroker

        return IbkrBroker(settings, clock, day)
    assert store is not None, "the paper broker keeps its books in the store"
    return PaperBroker(store, market, clock, day, settings.broker.costs(), settings.broker.starting_cash)


def resolve_trade_date(trade_date: date | None, mode: Mode, settings: Settings) -> date:
    """The day to trade: the given date, else today (live) or the replay data's last session.

    A replay must name a session (ConfigError otherwise); a live day may be a holiday, which the
    flows then skip.
    """
    if mode == "live":
        return trade_date or datetime.now(NEW_YORK).date()
    day = trade_date or last_replay_session(market_for(settings))
    calendar.require_session(day)
    return day


def last_replay_session(market: MarketData) -> date:
    sessions = getattr(market, "sessions", None)
    if not sessions:
        raise ConfigError("no trade date given and the replay data does not list its sessions; pass a date")
    return max(sessions())
