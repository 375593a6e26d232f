"""A deterministic synthetic US equity market, written as Parquet files in the shared-data format."""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from openbell.calendar import is_session, previous_session, session_close, session_open, sessions_between
from openbell.core.types import NEW_YORK_TZ
from openbell.errors import ConfigError

# Fixed dates, so the output is identical on every machine and in every year.
DEFAULT_MINUTE_SESSIONS = (date(2025, 3, 3), date(2025, 3, 4), date(2025, 3, 5), date(2025, 3, 6), date(2025, 3, 7))
MINUTE_FILE = "minute_bars.parquet"
DAILY_FILE = "daily_bars.parquet"

MINUTE_SCHEMA = pa.schema(
    [
        ("symbol", pa.large_string()),
        ("ts", pa.timestamp("us", tz=NEW_YORK_TZ)),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.int64()),
    ]
)
DAILY_SCHEMA = pa.schema(
    [
        ("symbol", pa.large_string()),
        ("date", pa.date32()),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.int64()),
    ]
)

_MINUTE_US = 60_000_000
_NEWS_SHARE = (0.02, 0.05)  # share of symbols with news (a 4-25% overnight gap) each session
_AUCTION_ONLY_OPEN_SHARE = 0.6  # 09:30 bars that are the auction print alone: open = high = low = close


@dataclass(frozen=True, slots=True)
class SyntheticMarket:
    """The two Parquet files written by `generate_synthetic_market`, and what they hold.

    `missing_opening_prints` lists the (session, symbol) pairs whose 09:30 bar was deliberately
    left out, so code paths for "no opening print" get exercised.
    """

    minute_path: Path
    daily_path: Path
    sessions: list[date]
    symbols: list[str]
    missing_opening_prints: list[tuple[date, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Universe:
    symbols: list[str]
    first_close: np.ndarray  # the close before the first daily session
    average_volume: np.ndarray  # shares a day
    daily_sigma: np.ndarray  # standard deviation of daily log returns
    thinness: np.ndarray  # 0 for the more liquid half, rising for thinner names; mean 1


@dataclass(frozen=True, slots=True)
class _DailyBars:
    """One session's bar for every symbol, as arrays indexed like the universe."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray


@dataclass(frozen=True, slots=True)
class _MinuteSession:
    """One session's minute grid: prices and volumes are (symbols, minutes); `present` masks the
    bars that exist (a missing minute had no trade)."""

    ts: np.ndarray  # microseconds since the epoch, UTC, one per grid minute
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    present: np.ndarray

    def daily_bars(self) -> _DailyBars:
        """The session's daily bars, consistent with the bars that exist."""
        n_symbols, n_minutes = self.present.shape
        rows = np.arange(n_symbols)
        # Every symbol keeps most of its bars, so each row has a first and a last one.
        first = self.present.argmax(axis=1)
        last = n_minutes - 1 - self.present[:, ::-1].argmax(axis=1)
        return _DailyBars(
            open=self.open[rows, first],
            high=np.where(self.present, self.high, -np.inf).max(axis=1),
            low=np.where(self.present, self.low, np.inf).min(axis=1),
            close=self.close[rows, last],
            volume=np.where(self.present, self.volume, 0).sum(axis=1),
        )


def generate_synthetic_market(
    out_dir: Path,
    *,
    seed: int = 7,
    n_symbols: int = 300,
    minute_sessions: list[date] | None = None,
    history_sessions: int = 60,
    missing_minute_rate: float = 0.03,
    include_close_auction: bool = True,
) -> SyntheticMarket:
    """Write `minute_bars.parquet` and `daily_bars.parquet` for a made-up market into `out_dir`.

    The files follow the shared-data format. Minute bars cover `minute_sessions` (default the
    five sessions 2025-03-03 .. 2025-03-07), 09:30 to the close, plus a closing auction print
    at the close (16:00, or 13:00 on a half day) when `include_close_auction`. Daily bars cover
    the `history_sessions` sessions before the first minute session and every session from the
    first to the last minute session; on minute sessions they are built from that day's bars.

    The market is a pure function of the arguments: same arguments, same files. Realism, in
    brief: ticker-like symbols, prices log-uniform from about $2 to $400, average volumes from
    200k to 50M shares, fat-tailed returns, a handful of 4-25% news gaps with heavy volume each
    session, U-shaped intraday volume and volatility, and missing minutes in the thinner half of
    the symbols (`missing_minute_rate` is the average over all bars). When that rate is above 0,
    each minute session also has one thinly traded symbol without its 09:30 bar; the pairs are
    listed in `SyntheticMarket.missing_opening_prints`.

    Raises:
        ConfigError: a minute session is not a NYSE session, or a size or rate is out of range.
    """
    sessions = _checked_minute_sessions(minute_sessions)
    _check_sizes(n_symbols, history_sessions, missing_minute_rate)
    daily_sessions = _history_sessions(sessions[0], history_sessions) + sessions_between(sessions[0], sessions[-1])

    rng = np.random.default_rng(seed)
    universe = _draw_universe(rng, n_symbols)
    minute_days = set(sessions)
    prior_close = universe.first_close
    daily_parts: list[_DailyBars] = []
    minute_parts: list[_MinuteSession] = []
    missing_opening_prints: list[tuple[date, str]] = []
    for day in daily_sessions:
        gap, news = _draw_overnight_gaps(rng, n_symbols)
        day_open = _round_to_tick(prior_close * (1 + gap))
        day_volume = universe.average_volume * rng.lognormal(0.0, 0.3, n_symbols)
        day_volume *= np.where(news, rng.uniform(3.0, 8.0, n_symbols), 1.0)
        if day in minute_days:
            no_print = _pick_symbol_without_opening_print(rng, universe, news) if missing_minute_rate > 0 else None
            if no_print is not None:
                missing_opening_prints.append((day, universe.symbols[no_print]))
            bars = _simulate_minute_session(
                rng, day, day_open, day_volume, news, universe, missing_minute_rate, include_close_auction, no_print
            )
            minute_parts.append(bars)
            daily = bars.daily_bars()
        else:
            daily = _simulate_daily_bar(rng, day_open, day_volume, news, universe)
        daily_parts.append(daily)
        prior_close = daily.close

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    minute_path, daily_path = out_dir / MINUTE_FILE, out_dir / DAILY_FILE
    pq.write_table(_minute_table(universe.symbols, minute_parts), minute_path)
    pq.write_table(_daily_table(universe.symbols, daily_sessions, daily_parts), daily_path)
    return SyntheticMarket(minute_path, daily_path, sessions, list(universe.symbols), missing_opening_prints)


# -- arguments ---------------------------------------------------------------------------------


def _checked_minute_sessions(minute_sessions: list[date] | None) -> list[date]:
    days = sorted(set(DEFAULT_MINUTE_SESSIONS if minute_sessions is None else minute_sessions))
    if not days:
        raise ConfigError("minute_sessions is empty; pass at least one NYSE session, e.g. [date(2025, 3, 3)]")
    not_sessions = [str(day) for day in days if not is_session(day)]
    if not_sessions:
        raise ConfigError(
            f"minute_sessions must be NYSE sessions, but {', '.join(not_sessions)} are not; "
            "openbell.calendar.sessions_between(start, end) lists the sessions of a range"
        )
    return days


def _check_sizes(n_symbols: int, history_sessions: int, missing_minute_rate: float) -> None:
    if n_symbols < 1:
        raise ConfigError(f"n_symbols must be at least 1, got {n_symbols}")
    if history_sessions < 0:
        raise ConfigError(f"history_sessions must be 0 or more, got {history_sessions}")
    if not 0.0 <= missing_minute_rate <= 0.5:
        raise ConfigError(f"missing_minute_rate is a share of bars from 0 to 0.5, got {missing_minute_rate}")


def _history_sessions(first_minute_session: date, count: int) -> list[date]:
    if count == 0:
        return []
    # Two calendar days per session is more than enough room for weekends and holidays.
    start = first_minute_session - timedelta(days=2 * count + 10)
    return sessions_between(start, previous_session(first_minute_session))[-count:]


# -- the market --------------------------------------------------------------------------------


def _draw_tickers(rng: np.random.Generator, n_symbols: int) -> list[str]:
    letters = np.array(list(string.ascii_uppercase))
    tickers: set[str] = set()
    while len(tickers) < n_symbols:
        lengths = rng.choice([3, 4], size=n_symbols)
        codes = letters[rng.integers(0, len(letters), size=(n_symbols, 4))]
        for length, code in zip(lengths, codes, strict=True):  # one loop step per symbol, not per bar
            if len(tickers) == n_symbols:
                break
            tickers.add("".join(code[:length]))
    return sorted(tickers)


def _log_uniform(rng: np.random.Generator, low: float, high: float, size: int) -> np.ndarray:
    return np.exp(rng.uniform(np.log(low), np.log(high), size))


def _draw_universe(rng: np.random.Generator, n_symbols: int) -> _Universe:
    symbols = _draw_tickers(rng, n_symbols)
    # A few low-priced names (under $5) among prices spread log-uniformly up to $400.
    cheap = rng.random(n_symbols) < 0.08
    price = np.where(cheap, _log_uniform(rng, 2.0, 5.0, n_symbols), _log_uniform(rng, 5.0, 400.0, n_symbols))
    average_volume = _log_uniform(rng, 2e5, 5e7, n_symbols)
    # Cheaper stocks move more: about 4.5% a day at $2, 1.2% at $400.
    sigma = np.clip(0.02 * (50.0 / price) ** 0.25 * rng.lognormal(0.0, 0.25, n_symbols), 0.008, 0.08)
    below_median = np.maximum(0.0, np.log(np.median(average_volume) / average_volume))
    thinness = below_median / below_median.mean() if below_median.any() else below_median
    return _Universe(symbols, _round_to_tick(price), average_volume, sigma, thinness)


def _draw_overnight_gaps(rng: np.random.Generator, n_symbols: int) -> tuple[np.ndarray, np.ndarray]:
    """(gap from the prior close for each symbol, mask of the symbols with news)."""
    gap = np.clip(rng.standard_t(4, n_symbols) / np.sqrt(2) * 0.004, -0.03, 0.03)
    n_news = min(n_symbols, max(1, round(n_symbols * rng.uniform(*_NEWS_SHARE))))
    news_index = rng.choice(n_symbols, size=n_news, replace=False)
    # From 4.5%, not 4%, so that rounding to the tick never pulls a news gap under 4%.
    gap[news_index] = rng.uniform(0.045, 0.25, n_news) * rng.choice([-1.0, 1.0], n_news)
    news = np.zeros(n_symbols, dtype=bool)
    news[news_index] = True
    return gap, news


def _pick_symbol_without_opening_print(rng: np.random.Generator, universe: _Universe, news: np.ndarray) -> int | None:
    candidates = np.flatnonzero((universe.thinness > 0) & ~news)
    return int(rng.choice(candidates)) if candidates.size else None


def _simulate_daily_bar(
    rng: np.random.Generator, day_open: np.ndarray, day_volume: np.ndarray, news: np.ndarray, universe: _Universe
) -> _DailyBars:
    n_symbols = len(day_open)
    sigma = universe.daily_sigma * rng.lognormal(0.0, 0.3, n_symbols) * np.where(news, 2.0, 1.0)
    # Student t with 3 degrees of freedom (variance 3): fat-tailed daily returns.
    day_return = np.clip(rng.standard_t(3, n_symbols) / np.sqrt(3) * sigma, -0.5, 0.5)
    close = day_open * np.exp(day_return)
    high = np.maximum(day_open, close) * np.exp(np.abs(rng.normal(0.0, 0.4, n_symbols)) * sigma)
    low = np.minimum(day_open, close) * np.exp(-np.abs(rng.normal(0.0, 0.4, n_symbols)) * sigma)
    volume = np.maximum(100, np.round(day_volume, -2)).astype(np.int64)
    return _DailyBars(day_open, _round_to_tick(high), _round_to_tick(low), _round_to_tick(close), volume)


def _simulate_minute_session(
    rng: np.random.Generator,
    day: date,
    day_open: np.ndarray,
    day_volume: np.ndarray,
    news: np.ndarray,
    universe: _Universe,
    missing_minute_rate: float,
    include_close_auction: bool,
    no_opening_print: int | None,
) -> _MinuteSession:
    n_symbols = len(day_open)
    opens_at, closes_at = session_open(day), session_close(day)
    n_continuous = int((closes_at - opens_at).total_seconds()) // 60  # 390, or 210 on a half day
    since_open = np.arange(n_continuous)
    to_close = n_continuous - 1 - since_open
    # U-shapes: busy and volatile after the open and before the close, quiet at midday.
    volume_shape = 1.0 + 4.0 * np.exp(-since_open / 10) + 2.0 * np.exp(-to_close / 20)
    sd_shape = 1.0 + 1.5 * np.exp(-since_open / 15) + 0.5 * np.exp(-to_close / 20)

    day_sigma = universe.daily_sigma * rng.lognormal(0.0, 0.3, n_symbols) * np.where(news, 2.0, 1.0)
    day_sigma *= np.sqrt(n_continuous / 390)
    minute_sd = day_sigma[:, None] * np.sqrt(sd_shape**2 / np.sum(sd_shape**2))[None, :]
    # Student t with 4 degrees of freedom has variance 2.
    steps = rng.standard_t(4, size=(n_symbols, n_continuous)) / np.sqrt(2) * minute_sd
    auction_only = rng.random(n_symbols) < _AUCTION_ONLY_OPEN_SHARE
    steps[auction_only, 0] = 0.0
    close = day_open[:, None] * np.exp(np.cumsum(steps, axis=1))
    bar_open = np.empty_like(close)
    bar_open[:, 0] = day_open  # the opening auction price
    bar_open[:, 1:] = close[:, :-1] * np.exp(rng.normal(0.0, 0.15, (n_symbols, n_continuous - 1)) * minute_sd[:, 1:])
    wick_up = np.abs(rng.normal(0.0, 0.5, (n_symbols, n_continuous))) * minute_sd
    wick_down = np.abs(rng.normal(0.0, 0.5, (n_symbols, n_continuous))) * minute_sd
    wick_up[auction_only, 0] = 0.0
    wick_down[auction_only, 0] = 0.0
    high = np.maximum(bar_open, close) * np.exp(wick_up)
    low = np.minimum(bar_open, close) * np.exp(-wick_down)

    opening_share = rng.uniform(0.01, 0.03, n_symbols)
    closing_share = rng.uniform(0.04, 0.09, n_symbols) if include_close_auction else np.zeros(n_symbols)
    continuous_volume = day_volume * (1.0 - opening_share - closing_share)
    # Lognormal noise with mean 1 (mu = -sigma^2 / 2).
    volume = (
        continuous_volume[:, None]
        * (volume_shape / volume_shape.sum())[None, :]
        * rng.lognormal(-0.18, 0.6, (n_symbols, n_continuous))
    )
    volume[:, 0] += opening_share * day_volume
    ts = _epoch_us(opens_at) + since_open * _MINUTE_US

    if include_close_auction:
        auction_price = close[:, -1] * np.exp(rng.normal(0.0, 0.3, n_symbols) * minute_sd[:, -1])
        bar_open, high, low, close = (np.column_stack([a, auction_price]) for a in (bar_open, high, low, close))
        volume = np.column_stack([volume, closing_share * day_volume])
        ts = np.append(ts, _epoch_us(closes_at))

    present = np.ones(close.shape, dtype=bool)
    if missing_minute_rate > 0:
        # Minutes go missing in thin names at quiet times; the 09:30 bar and the closing
        # auction print always exist, so the rate is spread over the other minutes.
        quiet = 1.0 / volume_shape[1:]
        quiet /= quiet.mean()
        scale = missing_minute_rate * close.shape[1] / (n_continuous - 1)
        p_missing = np.clip(scale * universe.thinness[:, None] * quiet[None, :], 0.0, 0.9)
        present[:, 1:n_continuous] = rng.random((n_symbols, n_continuous - 1)) >= p_missing
    if no_opening_print is not None:
        present[no_opening_print, 0] = False

    return _MinuteSession(
        ts=ts,
        open=_round_to_tick(bar_open),
        high=_round_to_tick(high),
        low=_round_to_tick(low),
        close=_round_to_tick(close),
        volume=np.maximum(100, np.rint(volume)).astype(np.int64),
        present=present,
    )


def _round_to_tick(price: np.ndarray) -> np.ndarray:
    """Round to $0.01, or $0.0001 under $1 (the US sub-dollar tick). Monotone, so OHLC order holds."""
    return np.maximum(np.where(price < 1.0, np.round(price, 4), np.round(price, 2)), 0.0001)


def _epoch_us(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000


# -- files -------------------------------------------------------------------------------------


def _minute_table(symbols: list[str], parts: list[_MinuteSession]) -> pa.Table:
    """Rows sorted by (symbol, ts), like the shared data: symbols are the rows of the grids."""
    n_symbols = len(symbols)
    ts = np.concatenate([part.ts for part in parts])
    present = np.concatenate([part.present for part in parts], axis=1).ravel()
    symbol_index = np.repeat(np.arange(n_symbols), len(ts))[present]
    columns = {
        "symbol": pc.take(pa.array(symbols, pa.large_string()), pa.array(symbol_index)),
        "ts": pa.array(np.tile(ts, n_symbols)[present]).cast(MINUTE_SCHEMA.field("ts").type),
    }
    for name in ("open", "high", "low", "close", "volume"):
        grid = np.concatenate([getattr(part, name) for part in parts], axis=1)
        columns[name] = pa.array(grid.ravel()[present])
    return pa.Table.from_pydict(columns, schema=MINUTE_SCHEMA)


def _daily_table(symbols: list[str], sessions: list[date], parts: list[_DailyBars]) -> pa.Table:
    n_symbols = len(symbols)
    columns = {
        "symbol": pa.array(np.repeat(np.array(symbols, dtype=object), len(sessions)), pa.large_string()),
        "date": pa.array(np.tile(np.array(sessions, dtype="datetime64[D]"), n_symbols), pa.date32()),
    }
    for name in ("open", "high", "low", "close", "volume"):
        columns[name] = pa.array(np.stack([getattr(part, name) for part in parts], axis=1).ravel())
    return pa.Table.from_pydict(columns, schema=DAILY_SCHEMA)
