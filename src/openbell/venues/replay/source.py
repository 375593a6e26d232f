"""Replays recorded minute and daily bars from two Parquet files (the shared-data format)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from openbell.calendar import is_session
from openbell.core.backtest import SessionBars
from openbell.core.data_quality import BAD_ROW_REASONS
from openbell.core.data_quality import failed_checks as _failed_checks
from openbell.core.prices import to_units
from openbell.core.types import NEW_YORK, NEW_YORK_TZ
from openbell.errors import ConfigError, DataQualityError
from openbell.venues.marketdata import (
    DAILY_COLUMNS,
    MINUTE_COLUMNS,
    OPENING_PRINT_COLUMNS,
    PRICE_COLUMNS,
    REJECTED_COLUMNS,
)

OPENING_PRINT_TIME = time(9, 30)  # NYSE opens at 09:30 on every session, half days included

# A replayed day asks for a window ending one session later than the day before; reading a
# month past the requested end lets the following days be served from the same cached window.
_DAILY_READ_AHEAD = timedelta(days=31)
_DAILY_WINDOWS_KEPT = 4


@dataclass(frozen=True, slots=True)
class _FileKind:
    """What one of the two input files must look like, and how to say so when it does not."""

    name: str  # "minute" or "daily"
    argument: str  # the constructor argument that names the file
    key: str  # the time column: "ts" or "date"
    columns: tuple[str, ...]
    example: str

    def expected(self) -> str:
        key_type = f"timestamp with tz={NEW_YORK_TZ}" if self.key == "ts" else "date"
        return f"symbol (string), {self.key} ({key_type}), open, high, low, close (float), volume (integer)"


_MINUTE = _FileKind(
    "minute", "minute_path", "ts", MINUTE_COLUMNS, "../shared/data/minute_bars_2018-02-16_2018-03-09.parquet"
)
_DAILY = _FileKind("daily", "daily_path", "date", DAILY_COLUMNS, "../shared/data/daily_bars_2017-01-03_2018-03-09.parquet")


class ParquetReplaySource:
    """MarketData over a Parquet file of 1-minute bars and one of daily bars.

    The files follow the shared-data format (see `../shared/data/README.md`). Each file's schema
    is checked once, on its first use (or all at once with `validate()`); rows are then read with
    a pyarrow filter, one day of minute bars or one window of daily bars at a time, and kept in
    a small cache, because a replayed day asks for the same bars several times.

    Opening prints: the recorded data has no pre-market bars, so the indicative opening price
    and volume of a day are those of its 09:30 bar, which carries the opening auction print.
    Symbols without a 09:30 bar have no opening print that day.

    Bad rows are dropped, never used, and listed in `rejected_rows` with the reason: a missing
    value, a non-positive price, high below low, open or close outside the high-low range, a
    negative volume, or a duplicate bar. Two minute bars of one symbol with the same `ts` mean
    two price series are mixed, so all of that symbol's bars on that day are rejected. The checks are
    `openbell.core.data_quality.failed_checks`; the scan records what was dropped in `data_quality`.

    Args:
        minute_path: Parquet file of 1-minute bars (symbol, ts, open, high, low, close, volume).
        daily_path: Parquet file of daily bars (symbol, date, open, high, low, close, volume).
        cached_days: how many days of minute bars to keep in memory.
    """

    def __init__(self, minute_path: Path | str, daily_path: Path | str, *, cached_days: int = 8) -> None:
        # Prefect can run a flow's tasks in threads that share one source: guard the caches.
        self._lock = threading.Lock()
        self.minute_path = Path(minute_path)
        self.daily_path = Path(daily_path)
        self._cached_days = cached_days
        self._schemas: dict[str, pa.Schema] = {}
        self._minute_days: OrderedDict[date, pd.DataFrame] = OrderedDict()
        self._daily_windows: OrderedDict[tuple[date, date], tuple[pd.DataFrame, np.ndarray]] = OrderedDict()
        self._symbols: list[str] | None = None
        self._sessions: list[date] | None = None
        self._rejected: dict[tuple[str, date, date], pd.DataFrame] = {}

    # -- MarketData ---------------------------------------------------------------------------

    def daily_bars(self, start: date, end: date, symbols: Collection[str] | None = None) -> pd.DataFrame:
        """Daily bars from `start` to `end`, both included, sorted by (symbol, date).

        An empty frame when nothing was recorded in the window.

        Raises:
            ConfigError: `start` is after `end`, or the daily file is missing or malformed.
        """
        if start > end:
            raise ConfigError(f"daily_bars: start {start} is after end {end}; pass start <= end")
        with self._lock:
            frame, dates = self._daily_window(start, end)
        in_window = (dates >= np.datetime64(start, "D")) & (dates <= np.datetime64(end, "D"))
        return _select_symbols(frame.loc[in_window].reset_index(drop=True), symbols)

    def minute_bars(self, day: date, symbols: Collection[str] | None = None) -> pd.DataFrame:
        """The valid 1-minute bars of `day`, sorted by (symbol, ts).

        Raises:
            DataQualityError: the file has no valid bar at all on `day`.
            ConfigError: the minute file is missing or malformed.
        """
        with self._lock:
            bars = self._minute_day(day)
        return _select_symbols(bars, symbols)

    def minute_bars_between(self, start: date, end: date, symbols: Collection[str] | None = None) -> pd.DataFrame:
        """The valid 1-minute bars of every day from `start` to `end`, in one read of the file.

        Sorted by (symbol, ts), so each (symbol, day) session is one run. Not part of the MarketData
        protocol, and not cached: a backtest asks for its range once. An empty frame when the range
        holds no valid bar.

        Raises:
            ConfigError: `start` is after `end`, or the minute file is missing or malformed.
        """
        if start > end:
            raise ConfigError(f"minute_bars_between: start {start} is after end {end}; pass start <= end")
        with self._lock:
            loaded, rejected = self._read(_MINUTE, self._days_filter(start, end))
            self._remember_rejected(_MINUTE, start, end, rejected)
        return _select_symbols(loaded, symbols)

    def session_bars_between(
        self, start: date, end: date, symbols: Collection[str] | None = None
    ) -> tuple[SessionBars, pd.DataFrame]:
        """The valid minute bars of `start`..`end` laid out for the replay engine, in one read of the file.

        A session is one symbol on one day; sessions follow each other (by symbol, then day), each in
        time order. Returns the bars and a frame with one row per session: `day` (datetime.date) and
        `symbol`. Bad rows are dropped and recorded as `minute_bars` does; no pandas frame of the bars is
        built, so a backtest over millions of bars holds them once.

        Raises:
            ConfigError: `start` is after `end`, or the minute file is missing or malformed.
        """
        if start > end:
            raise ConfigError(f"session_bars_between: start {start} is after end {end}; pass start <= end")
        with self._lock:
            schema = self._schema(_MINUTE)
            return self._session_bars(schema, start, end, symbols)

    def _session_bars(
        self, schema: pa.Schema, start: date, end: date, symbols: Collection[str] | None
    ) -> tuple[SessionBars, pd.DataFrame]:
        """`session_bars_between`, reading one column at a time: the file's rows are never all in memory at once."""
        path, ts_type = self.minute_path, pa.timestamp(schema.field("ts").type.unit, tz=NEW_YORK_TZ)
        keys = pq.read_table(path, columns=["symbol", "ts"])
        names = keys.column("symbol").cast(pa.large_string())
        ts = keys.column("ts").cast(ts_type)
        at = ts.to_numpy().view(np.int64)
        begins = pa.scalar(datetime.combine(start, time(0), NEW_YORK), ts_type).value
        ends = pa.scalar(datetime.combine(end + timedelta(days=1), time(0), NEW_YORK), ts_type).value
        # A row without a symbol or a time belongs to no session (reading its day records it as rejected).
        wanted = (at >= begins) & (at < ends) & ~(_nulls(names) | _nulls(ts))
        if symbols is not None:
            asked = [symbols] if isinstance(symbols, str) else list(symbols)
            wanted &= pc.is_in(names, value_set=pa.array(asked, pa.large_string())).to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(wanted)
        local = pc.local_timestamp(ts)
        day = _day_numbers(pc.cast(local, pa.date32()))[rows]
        minute = (local.cast(pa.timestamp("us")).cast(pa.int64()).to_numpy() // 60_000_000 % 1440).astype(np.int32)[rows]
        dictionary, symbol = _alphabetical_dictionary(names)
        symbol, at = symbol[rows], at[rows]
        every_row = len(rows) == len(wanted)
        del keys, names, ts, local, wanted
        pa.default_memory_pool().release_unused()  # the keys' strings: gone before the prices come in
        if not _is_sorted(symbol, at):
            order = np.lexsort((at, symbol))
            rows, symbol, at, day, minute = rows[order], symbol[order], at[order], day[order], minute[order]
            every_row = False
        unit = symbol.astype(np.int64) * (int(day.max(initial=0)) + 1) + day
        take = slice(None) if every_row else rows  # the whole file in its order: no copy of its columns
        columns = {c: _floats(pq.read_table(path, columns=[c]).column(c))[take] for c in (*PRICE_COLUMNS, "volume")}
        no_nulls = np.zeros(len(rows), dtype=bool)
        prices = columns["open"], columns["high"], columns["low"], columns["close"]
        failed = _failed_checks(prices, columns["volume"], no_nulls, symbol, at, unit)
        bad = failed > 0
        if bad.any():
            rejected = pd.DataFrame(
                {
                    "symbol": dictionary[symbol[bad]],
                    "ts": pd.to_datetime(at[bad], unit=ts_type.unit, utc=True).tz_convert(NEW_YORK_TZ),
                    **{name: values[bad] for name, values in columns.items()},
                    "reason": BAD_ROW_REASONS[failed[bad]],
                }
            )
            self._remember_rejected(_MINUTE, start, end, rejected)
            keep = ~bad
            symbol, day, minute = symbol[keep], day[keep], minute[keep]
            columns = {name: values[keep] for name, values in columns.items()}
        session = symbol.astype(np.int64) * (int(day.max(initial=0)) + 1) + day
        starts = np.flatnonzero(np.diff(session, prepend=-1)).astype(np.int64)
        units = {}
        for name in PRICE_COLUMNS:  # each float column goes as soon as its units are made
            units[name] = to_units(columns.pop(name))
        bars = SessionBars(starts=starts, minute=minute, **units)
        sessions = pd.DataFrame(
            {"day": pd.to_datetime(day[starts], unit="D").date if len(starts) else [], "symbol": dictionary[symbol[starts]]}
        )
        return bars, sessions

    def opening_prints(self, day: date, symbols: Collection[str] | None = None) -> pd.DataFrame:
        """Each symbol's 09:30 bar open and volume on `day` (the opening auction print).

        Raises:
            DataQualityError: the file has no valid bar at all on `day`.
        """
        with self._lock:
            bars = self._minute_day(day)
        opening = bars.loc[bars["ts"] == datetime.combine(day, OPENING_PRINT_TIME, NEW_YORK), list(OPENING_PRINT_COLUMNS)]
        return _select_symbols(opening.reset_index(drop=True), symbols)

    def symbols(self) -> list[str]:
        """The symbols in the minute file, sorted (read once, from the symbol column only)."""
        with self._lock:
            if self._symbols is None:
                self._schema(_MINUTE)
                column = pq.read_table(self.minute_path, columns=["symbol"]).column("symbol")
                self._symbols = sorted(s for s in pc.unique(column).to_pylist() if s is not None)
            return list(self._symbols)

    def sessions(self) -> list[date]:
        """The days that have minute bars, sorted (read once, from the ts column only).

        Not part of the MarketData protocol: a replay knows which days it can replay.
        """
        with self._lock:
            if self._sessions is None:
                self._schema(_MINUTE)
                ts = pq.read_table(self.minute_path, columns=["ts"]).column("ts")
                minutes = pc.unique(ts).cast(pa.timestamp(ts.type.unit, tz=NEW_YORK_TZ)).to_pandas()
                self._sessions = sorted(set(minutes.dropna().dt.date))
            return list(self._sessions)

    # -- data quality -------------------------------------------------------------------------

    @property
    def rejected_rows(self) -> pd.DataFrame:
        """Every distinct bad row met so far, with columns `kind, symbol, at, open, high, low,
        close, volume, reason`; `kind` is "minute" or "daily", `at` the row's ts or date."""
        with self._lock:
            recorded = list(self._rejected.values())
        if not recorded:
            return pd.DataFrame(columns=list(REJECTED_COLUMNS))
        frames = [frame.astype({"at": object}) for frame in recorded]
        # Overlapping daily windows meet the same bad row more than once.
        return pd.concat(frames, ignore_index=True).drop_duplicates(ignore_index=True)

    def validate(self) -> None:
        """Check both files now instead of on first use.

        Raises:
            ConfigError: a file is missing, unreadable, lacks columns or has the wrong types.
        """
        with self._lock:
            self._schema(_MINUTE)
            self._schema(_DAILY)

    # -- loading ------------------------------------------------------------------------------

    def _path(self, kind: _FileKind) -> Path:
        return self.minute_path if kind is _MINUTE else self.daily_path

    def _schema(self, kind: _FileKind) -> pa.Schema:
        if kind.name not in self._schemas:
            self._schemas[kind.name] = _checked_schema(self._path(kind), kind)
        return self._schemas[kind.name]

    def _minute_day(self, day: date) -> pd.DataFrame:
        """The cached valid bars of `day`, loaded on first use; the caller holds the lock."""
        if day in self._minute_days:
            self._minute_days.move_to_end(day)
            return self._minute_days[day]
        loaded, rejected = self._read(_MINUTE, self._days_filter(day, day))
        self._remember_rejected(_MINUTE, day, day, rejected)
        if loaded.empty:
            raise DataQualityError(self._empty_day_message(day, len(rejected)))
        self._minute_days[day] = loaded
        if len(self._minute_days) > self._cached_days:
            self._minute_days.popitem(last=False)
        return loaded

    def _days_filter(self, first: date, last: date) -> pc.Expression:
        """Minute rows from midnight New York before `first` to the midnight after `last` (right across DST)."""
        ts_type = self._schema(_MINUTE).field("ts").type
        begins = datetime.combine(first, time(0), NEW_YORK)
        ends = datetime.combine(last + timedelta(days=1), time(0), NEW_YORK)
        return (pc.field("ts") >= pa.scalar(begins, ts_type)) & (pc.field("ts") < pa.scalar(ends, ts_type))

    def _daily_window(self, start: date, end: date) -> tuple[pd.DataFrame, np.ndarray]:
        """A cached window of valid daily bars that covers start..end; the caller holds the lock."""
        for (first, last), cached in self._daily_windows.items():
            if first <= start and end <= last:
                self._daily_windows.move_to_end((first, last))
                return cached
        last = end + _DAILY_READ_AHEAD
        date_type = self._schema(_DAILY).field("date").type
        in_window = (pc.field("date") >= pa.scalar(start, date_type)) & (pc.field("date") <= pa.scalar(last, date_type))
        loaded, rejected = self._read(_DAILY, in_window)
        self._remember_rejected(_DAILY, start, last, rejected)
        # Masks over datetime64 values are far faster than comparisons of date objects, and
        # arrow converts the date objects ~30x faster than numpy does.
        dates = pa.array(loaded["date"], type=pa.date32()).to_numpy(zero_copy_only=False)
        self._daily_windows[(start, last)] = (loaded, dates)
        if len(self._daily_windows) > _DAILY_WINDOWS_KEPT:
            self._daily_windows.popitem(last=False)
        return loaded, dates

    def _read(self, kind: _FileKind, row_filter: pc.Expression) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Read the rows matching `row_filter`: (valid rows, rejected rows with a reason), both sorted by (symbol, time)."""
        rows = self._read_sorted(kind, row_filter)
        frame = rows.table.to_pandas()
        bad = rows.failed > 0
        if not bad.any():
            return frame, frame.iloc[:0].assign(reason=pd.Series(dtype=object))
        # A null volume turned the column into float64; the remaining rows are whole shares.
        valid = frame.loc[~bad].reset_index(drop=True).astype({"volume": "int64"})
        rejected = frame.loc[bad].assign(reason=BAD_ROW_REASONS[rows.failed[bad]]).reset_index(drop=True)
        return valid, rejected

    def _read_sorted(self, kind: _FileKind, row_filter: pc.Expression) -> _SortedRows:
        """The rows matching `row_filter` in (symbol, time) order, with each row's failed check (0: none)."""
        schema = self._schema(kind)
        table = pq.read_table(self._path(kind), columns=list(kind.columns), filters=row_filter)
        table = table.cast(_output_schema(kind, schema))
        symbol = _alphabetical_codes(table.column("symbol"))
        if kind is _MINUTE:
            at = table.column("ts").to_numpy().view(np.int64)
            day = _day_numbers(pc.cast(pc.local_timestamp(table.column("ts")), pa.date32()))
        else:
            at = day = _day_numbers(table.column("date"))
        if not _is_sorted(symbol, at):  # files written in (symbol, time) order, as the shared data, skip this
            order = np.lexsort((at, symbol))
            table, symbol, at, day = table.take(order), symbol[order], at[order], day[order]
        # A duplicated minute rejects the symbol's whole day (which bar belongs to which series is unknowable);
        # a duplicated daily bar rejects the duplicated rows only.
        unit = symbol.astype(np.int64) * (int(day.max(initial=0)) + 1) + day if kind is _MINUTE else None
        prices = (
            _floats(table.column("open")),
            _floats(table.column("high")),
            _floats(table.column("low")),
            _floats(table.column("close")),
        )
        null_key = _nulls(table.column("symbol")) | _nulls(table.column(kind.key))
        failed = _failed_checks(prices, _floats(table.column("volume")), null_key, symbol, at, unit)
        return _SortedRows(table, symbol, day, failed)

    def _remember_rejected(self, kind: _FileKind, first: date, last: date, rejected: pd.DataFrame) -> None:
        if rejected.empty:
            return
        record = rejected.rename(columns={kind.key: "at"})
        record.insert(0, "kind", kind.name)
        self._rejected[(kind.name, first, last)] = record[list(REJECTED_COLUMNS)]

    def _empty_day_message(self, day: date, n_rejected: int) -> str:
        if n_rejected:
            return f"all {n_rejected} minute bars for {day} in {self.minute_path} are bad (see rejected_rows)"
        why = "" if is_session(day) else f"; {day} is not a NYSE session"
        return f"no minute bars for {day} in {self.minute_path}{why}: replay a day the file covers"


def _checked_schema(path: Path, kind: _FileKind) -> pa.Schema:
    """The file's schema, read without loading rows; ConfigError saying what to fix otherwise."""
    if not path.is_file():
        raise ConfigError(
            f"{kind.name} bars file not found: {path}. Pass {kind.argument}= an existing Parquet file "
            f"of {kind.name} bars with columns {kind.expected()}, e.g. {kind.example}"
        )
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise ConfigError(
            f"{path} is not a readable Parquet file ({exc}); pass {kind.argument}= a Parquet file of {kind.name} bars"
        ) from exc
    missing = [name for name in kind.columns if name not in schema.names]
    if missing:
        raise ConfigError(
            f"{kind.name} bars file {path} lacks column(s) {', '.join(missing)}; expected columns "
            f"{kind.expected()}, found {', '.join(schema.names)}"
        )
    wrong = [
        f"{name} is {schema.field(name).type}"
        for name in kind.columns
        if not _has_expected_type(name, schema.field(name).type)
    ]
    if wrong:
        raise ConfigError(
            f"{kind.name} bars file {path} has wrong column types ({'; '.join(wrong)}); expected {kind.expected()}"
        )
    if kind.key == "ts" and schema.field("ts").type.tz is None:
        raise ConfigError(
            f"{path}: column ts holds naive timestamps; ts must be tz-aware New York time (the start of "
            "the minute). Localize before writing, e.g. df['ts'] = df['ts'].dt.tz_localize('America/New_York')"
        )
    return schema


def _has_expected_type(name: str, arrow_type: pa.DataType) -> bool:
    if name == "symbol":
        if pa.types.is_dictionary(arrow_type):
            arrow_type = arrow_type.value_type
        return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
    if name == "ts":
        return pa.types.is_timestamp(arrow_type)
    if name == "date":
        return pa.types.is_date(arrow_type)
    if name == "volume":
        return pa.types.is_integer(arrow_type)
    return pa.types.is_floating(arrow_type) or pa.types.is_integer(arrow_type)


def _output_schema(kind: _FileKind, schema: pa.Schema) -> pa.Schema:
    if kind.key == "ts":
        key_type = pa.timestamp(schema.field("ts").type.unit, tz=NEW_YORK_TZ)
    else:
        key_type = pa.date32()  # converts to datetime.date objects in pandas
    return pa.schema(
        [("symbol", pa.large_string()), (kind.key, key_type)]
        + [(name, pa.float64()) for name in PRICE_COLUMNS]
        + [("volume", pa.int64())]
    )


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    """A numeric column as float64, NaN where a value is missing."""
    return column.to_numpy().astype(np.float64, copy=False)


def _nulls(column: pa.ChunkedArray) -> np.ndarray:
    return pc.is_null(column).to_numpy(zero_copy_only=False)


def _day_numbers(dates: pa.ChunkedArray) -> np.ndarray:
    """date32 values as int32 days since the epoch."""
    return dates.combine_chunks().view(pa.int32()).to_numpy(zero_copy_only=False)


def _alphabetical_codes(symbols: pa.ChunkedArray) -> np.ndarray:
    """Each row's symbol as the rank of that symbol in alphabetical order (sorting codes sorts the symbols)."""
    return _alphabetical_dictionary(symbols)[1]


def _alphabetical_dictionary(symbols: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct symbols in alphabetical order, each row's index into them)."""
    encoded = (symbols.chunk(0) if symbols.num_chunks == 1 else symbols.combine_chunks()).dictionary_encode()
    order = pc.array_sort_indices(encoded.dictionary).to_numpy()
    rank = np.empty(len(order), dtype=np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    names = np.asarray(encoded.dictionary.to_pylist(), dtype=object)[order]
    codes = rank[encoded.indices.to_numpy(zero_copy_only=False)] if len(encoded) else np.empty(0, dtype=np.int32)
    return names, codes


def _is_sorted(symbol: np.ndarray, at: np.ndarray) -> bool:
    """True when the rows are in (symbol, time) order."""
    if len(symbol) < 2:
        return True
    step = symbol[1:] - symbol[:-1]
    return bool(np.all((step > 0) | ((step == 0) & (at[1:] >= at[:-1]))))


@dataclass(frozen=True, slots=True)
class _SortedRows:
    """Rows of a file in (symbol, time) order: the table, symbol codes, day numbers, and each row's failed check."""

    table: pa.Table
    symbol: np.ndarray  # int64 alphabetical codes
    day: np.ndarray  # int64 days since the epoch (New York date)
    failed: np.ndarray  # int8 index into BAD_ROW_REASONS, 0 for a valid row


def _select_symbols(frame: pd.DataFrame, symbols: Collection[str] | None) -> pd.DataFrame:
    """The rows of `symbols` (unknown ones are simply absent); a new frame, never the cached one."""
    if symbols is None:
        return frame.copy(deep=False)
    wanted = [symbols] if isinstance(symbols, str) else list(symbols)
    return frame.loc[frame["symbol"].isin(wanted)].reset_index(drop=True)
