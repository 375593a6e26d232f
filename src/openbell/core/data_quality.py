"""The data-quality gate: which bars cannot be used, what looks wrong in the bars a scan reads, and a score per symbol.

Pure functions over a day's bars (numpy and pandas, whole columns at a time). Each check returns issues, one
row per bar or per symbol-day with ISSUE_COLUMNS:

- `symbol`; `source`: "minute" or "daily" bars, or "scan" for a verdict on the symbol;
- `bar_date` (the bar's session day) and `ts` (a minute bar's start; None for daily bars and symbol-days);
- `check` (one of CHECKS), `reason` (a sentence for a person) and `value` (the number compared, when any).

The score of a symbol is 1 minus the PENALTIES of the checks it failed, each counted once, never below 0.
A symbol with a hard problem (its day's bars dropped, its opening print missing, stale, prices that disagree
between its daily and minute bars by more than the tolerance) scores 0; one soft problem (a bad bar, an
outlier, a long gap between minutes) leaves 0.5 or 0.75, so with the default `min_score` of 0.5 one soft
problem is tolerated and two are not. `gate` marks the symbols below `min_score` as rejected with the reason.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import pandas as pd

from openbell.core.types import NEW_YORK_TZ

ISSUE_COLUMNS = ("symbol", "source", "bar_date", "ts", "check", "reason", "value")

# Bad rows: the first check a bar fails, as BAD_ROW_REASONS[code] (the replay source's words) and BAD_ROW_CHECKS[code].
BAD_ROW_REASONS = np.array(
    [
        "",
        "missing value",
        "non-positive price",
        "high below low",
        "open or close outside high-low range",
        "negative volume",
        "duplicate bar",
    ]
)
BAD_ROW_CHECKS = np.array(
    ["", "missing_value", "non_positive_price", "high_below_low", "outside_range", "negative_volume", "duplicate_bar"]
)
DUPLICATE_BAR = 6

# What each failed check takes off the score (once per symbol, however many bars fail it).
PENALTIES: dict[str, float] = {
    "missing_value": 0.5,
    "non_positive_price": 0.5,
    "high_below_low": 0.5,
    "outside_range": 0.5,
    "negative_volume": 0.5,
    "duplicate_bar": 1.0,  # two price series mixed: the symbol's day is dropped
    "no_opening_print": 1.0,  # its opening bar was dropped: nothing to scan or fill at
    "stale": 1.0,
    "split_mismatch": 0.5,
    "outlier_atr": 0.5,
    "outlier_neighbours": 0.5,
    "minute_gap": 0.25,
}
CHECKS = (*PENALTIES, "score")


@dataclass(frozen=True, slots=True)
class QualityPolicy:
    """The gate's thresholds (the settings' `quality` group; these defaults are the settings' defaults).

    On the recorded sessions of ../shared/data the defaults exclude no symbol with a valid opening print: the
    largest minute bar there spans 1.8 daily ATRs, the largest move between minutes 1.1 ATRs, the largest
    spike from both neighbours 7.6%, the longest gap between minutes 35 minutes (one symbol-day, a halt), and
    daily and minute closes agree within 2% except for the nine symbols whose daily file is adjusted for
    later splits and spin-offs (4% to 100%).
    """

    min_score: float = 0.5
    stale_after_min: float = 15.0
    outlier_atr: float = 3.0
    outlier_pct: float = 10.0
    max_gap_min: float = 30.0
    split_tolerance_pct: float = 3.0


def failed_checks(
    prices: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    volume: np.ndarray,
    null_key: np.ndarray,
    symbol: np.ndarray,
    at: np.ndarray,
    unit: np.ndarray | None,
) -> np.ndarray:
    """The first check each row fails (an index into BAD_ROW_REASONS), 0 where it passes them all.

    `prices` are the open, high, low and close columns as floats (NaN where missing), `volume` too;
    `null_key` marks rows without a symbol or time. Rows are in (symbol, time) order, given as
    `symbol` codes and times `at`, so a duplicated (symbol, time) is a neighbour. A duplicated row
    rejects its `unit` whole (minute bars: the symbol's day), or only the duplicated rows when
    `unit` is None (daily bars).
    """
    open_, high, low, close = prices
    same_as_previous = np.zeros(len(symbol), dtype=bool)
    if len(symbol) > 1:
        same_as_previous[1:] = (symbol[1:] == symbol[:-1]) & (at[1:] == at[:-1])
    duplicate = same_as_previous | np.append(same_as_previous[1:], False)
    if unit is not None and duplicate.any():
        duplicate = np.isin(unit, unit[duplicate])
    with np.errstate(invalid="ignore"):
        checks = [
            null_key | np.isnan(open_) | np.isnan(high) | np.isnan(low) | np.isnan(close) | np.isnan(volume),
            (open_ <= 0) | (high <= 0) | (low <= 0) | (close <= 0),
            high < low,
            (np.maximum(open_, close) > high) | (np.minimum(open_, close) < low),
            volume < 0,
            duplicate,
        ]
    failed = np.zeros(len(symbol), dtype=np.int8)
    for code, check in reversed(list(enumerate(checks, start=1))):  # the first check a row fails wins
        failed[check] = code
    return failed


def bad_minute_bars(bars: pd.DataFrame) -> pd.Series:
    """Each minute bar's first failed check (BAD_ROW_CHECKS), "" for a good bar, in the frame's row order.

    `bars` has columns symbol, ts (tz-aware), open, high, low, close, volume, in any order. Two bars of a
    symbol with the same ts fail every bar of that symbol's day ("duplicate_bar").
    """
    return pd.Series(BAD_ROW_CHECKS[bad_row_codes(bars)].astype(object), index=bars.index, name="check")


def bad_row_codes(bars: pd.DataFrame) -> np.ndarray:
    """Each minute bar's first failed check as a code into BAD_ROW_REASONS and BAD_ROW_CHECKS (0 for a good bar),
    in the frame's row order; `bars` as for `bad_minute_bars`."""
    order = np.lexsort((_ns(bars["ts"]), bars["symbol"].to_numpy()))
    rows = bars.iloc[order]
    codes, uniques = pd.factorize(rows["symbol"])
    day = _days(rows["ts"])
    day = day - day.min(initial=0)
    unit = codes.astype(np.int64) * (int(day.max(initial=0)) + 1) + day
    prices = tuple(rows[c].to_numpy(dtype=float) for c in ("open", "high", "low", "close"))
    failed = failed_checks(
        prices, rows["volume"].to_numpy(dtype=float), rows["ts"].isna().to_numpy(), codes, _ns(rows["ts"]), unit
    )
    out = np.empty(len(bars), dtype=np.int8)
    out[order] = failed
    return out


def dropped_bar_issues(rejected: pd.DataFrame) -> pd.DataFrame:
    """Issues for the rows a source dropped: one per bar, and one per symbol-day whose bars were all dropped.

    `rejected` has the replay source's `rejected_rows` columns (kind "minute" or "daily", symbol, at: the bar's
    ts or date, ..., reason: BAD_ROW_REASONS). A duplicated minute drops the symbol's whole day: that is one
    issue (ts None) whose value is how many bars went; bad daily bars are counted per date the same way.
    """
    if rejected.empty:
        return empty_issues()
    check = pd.Series(dict(zip(BAD_ROW_REASONS, BAD_ROW_CHECKS, strict=True)))
    minute = rejected["kind"] == "minute"
    at = rejected["at"]
    ts = pd.Series([pd.Timestamp(a) if m else pd.NaT for a, m in zip(at, minute, strict=True)], index=rejected.index)
    bar_date = [a.tz_convert(NEW_YORK_TZ).date() if m else a for a, m in zip(ts, minute, strict=True)]
    bar_date = [b if m else a for a, b, m in zip(at, bar_date, minute, strict=True)]
    issues = pd.DataFrame(
        {
            "symbol": rejected["symbol"].astype(str).to_numpy(),
            "source": rejected["kind"].to_numpy(),
            "bar_date": bar_date,
            "ts": ts.where(minute & (rejected["reason"] != BAD_ROW_REASONS[DUPLICATE_BAR])).to_numpy(),
            "check": rejected["reason"].map(check).to_numpy(),
            "reason": rejected["reason"].to_numpy(),
        }
    )
    keys = ["symbol", "source", "bar_date", "ts", "check", "reason"]
    counted = issues.groupby(keys, dropna=False, sort=True).size().rename("value").reset_index()
    whole_day = (counted["check"] == "duplicate_bar") & (counted["source"] == "minute")
    counted.loc[whole_day, "reason"] = [
        f"duplicate minute bars: all {n} bars of {d} dropped"
        for n, d in zip(counted.loc[whole_day, "value"], counted.loc[whole_day, "bar_date"], strict=True)
    ]
    many = ~whole_day & (counted["value"] > 1)
    counted.loc[many, "reason"] = counted.loc[many, "reason"] + " (" + counted.loc[many, "value"].astype(str) + " bars)"
    counted["value"] = counted["value"].astype(float)
    return counted[list(ISSUE_COLUMNS)]


def minute_gaps(bars: pd.DataFrame, max_gap_min: float) -> pd.DataFrame:
    """Symbol-days with more than `max_gap_min` minutes between two consecutive minute bars: the longest gap.

    `bars` sorted by (symbol, ts). A missing minute is a minute without trades, so short gaps are normal.
    """
    symbol, ts = bars["symbol"].to_numpy(), bars["ts"]
    day = _days(ts)
    same = np.r_[False, (symbol[1:] == symbol[:-1]) & (day[1:] == day[:-1])]
    step = np.r_[0, np.diff(_ns(ts))] / 60e9
    gap = np.where(same, step, 0.0)
    found = bars.assign(_gap=gap, _day=day).loc[gap > max_gap_min]
    if found.empty:
        return empty_issues()
    worst = found.sort_values("_gap", ascending=False, kind="stable").drop_duplicates(["symbol", "_day"])
    return _issues(
        worst,
        "minute",
        "minute_gap",
        [
            f"{g:.0f} minutes without a bar before {t:%H:%M} (limit {max_gap_min:g})"
            for g, t in zip(worst["_gap"], worst["ts"], strict=True)
        ],
        worst["_gap"],
    ).sort_values(["symbol", "bar_date"], ignore_index=True)


def outliers(bars: pd.DataFrame, atr: pd.Series, outlier_atr: float, outlier_pct: float) -> pd.DataFrame:
    """Minute bars out of line: a range or a move from the previous bar's close beyond `outlier_atr` daily ATRs
    ("outlier_atr"), or a high or low beyond `outlier_pct` percent of both neighbours' closes ("outlier_neighbours").

    `bars` sorted by (symbol, ts); `atr` the daily ATR(14) by symbol, in dollars (symbols without one are not
    judged by it). The move at a session's first bar is the opening gap, which the scan trades, never an outlier;
    a bar that jumps and stays (its next bar closes near it) is a move, not a spike.
    """
    symbol = bars["symbol"].to_numpy()
    day = _days(bars["ts"])
    high, low = bars["high"].to_numpy(float), bars["low"].to_numpy(float)
    open_, close = bars["open"].to_numpy(float), bars["close"].to_numpy(float)
    prev = np.r_[False, (symbol[1:] == symbol[:-1]) & (day[1:] == day[:-1])]
    after = np.r_[prev[1:], False]
    prev_close = np.r_[np.nan, close[:-1]]
    next_close = np.r_[close[1:], np.nan]
    limit = bars["symbol"].map(atr).to_numpy(float) * outlier_atr
    rng = high - low
    move = np.where(prev, np.abs(open_ - prev_close), 0.0)
    with np.errstate(invalid="ignore"):
        by_range, by_move = rng > limit, move > limit
        up = np.where(prev & after, high / np.maximum(prev_close, next_close) - 1, 0.0) * 100
        down = np.where(prev & after, 1 - low / np.minimum(prev_close, next_close), 0.0) * 100
    spike = np.maximum(up, down)
    found = []
    atr_rows = by_range | by_move
    if atr_rows.any():
        rows = bars.loc[atr_rows]
        value = np.maximum(rng, move)[atr_rows] / (limit[atr_rows] / outlier_atr)
        what = np.where(by_range[atr_rows], "range", "move from the previous close")
        reasons = [f"bar {w} of {v:.1f} daily ATRs (limit {outlier_atr:g})" for w, v in zip(what, value, strict=True)]
        found.append(_issues(rows, "minute", "outlier_atr", reasons, value))
    spiked = spike > outlier_pct
    if spiked.any():
        rows = bars.loc[spiked]
        reasons = [f"bar {v:.1f}% beyond both neighbours' closes (limit {outlier_pct:g}%)" for v in spike[spiked]]
        found.append(_issues(rows, "minute", "outlier_neighbours", reasons, spike[spiked]))
    return pd.concat(found, ignore_index=True) if found else empty_issues()


def stale_symbols(bars: pd.DataFrame, symbols: Collection[str], now: datetime, stale_after_min: float) -> pd.DataFrame:
    """Symbols whose last minute bar began more than `stale_after_min` minutes before `now`, or that have none.

    For a live day once its session has run at least that long: a price that stopped updating cannot be traded on.
    """
    last = bars.groupby("symbol")["ts"].max() if len(bars) else pd.Series(dtype=object)
    wanted = pd.Index(sorted(set(symbols)), name="symbol")
    last = last.reindex(wanted)
    age = (pd.Timestamp(now) - pd.to_datetime(last, utc=True)).dt.total_seconds() / 60
    stale = age.isna() | (age > stale_after_min)
    if not stale.any():
        return empty_issues()
    rows = pd.DataFrame({"symbol": wanted[stale.to_numpy()], "ts": last[stale].to_numpy()})
    reasons = [
        f"no minute bar today by {now:%H:%M}"
        if pd.isna(a)
        else f"last minute bar {a:.0f} minutes old (limit {stale_after_min:g})"
        for a in age[stale]
    ]
    out = _issues(rows, "scan", "stale", reasons, age[stale].to_numpy())
    out["bar_date"] = pd.Timestamp(now).date()
    out["ts"] = None
    return out


def split_mismatches(daily_close: pd.Series, minute_close: pd.Series, day: date, tolerance_pct: float) -> pd.DataFrame:
    """Symbols whose daily close of `day` and last minute close of `day` differ by more than `tolerance_pct` percent.

    The two files then disagree on the price scale (one is adjusted for a split or spin-off, the other not), so
    the daily history (ATR, returns) does not describe the prices traded.
    """
    both = pd.concat([daily_close.rename("daily"), minute_close.rename("minute")], axis=1, join="inner")
    diff = (both["daily"] / both["minute"] - 1).abs() * 100
    found = diff[diff > tolerance_pct]
    if found.empty:
        return empty_issues()
    rows = pd.DataFrame({"symbol": found.index.astype(str), "ts": None})
    reasons = [
        f"daily close {both.at[s, 'daily']:g} and last minute close {both.at[s, 'minute']:g} of {day} differ by "
        f"{v:.1f}% (limit {tolerance_pct:g}%): a split or spin-off adjusts one and not the other"
        for s, v in found.items()
    ]
    out = _issues(rows, "scan", "split_mismatch", reasons, found.to_numpy())
    out["bar_date"] = day
    return out


def scores(issues: pd.DataFrame, symbols: Collection[str]) -> pd.Series:
    """Each symbol's score in [0, 1]: 1 minus the penalty of every distinct check it failed."""
    wanted = pd.Index(sorted(set(symbols)), name="symbol")
    failed = issues.loc[issues["symbol"].isin(wanted), ["symbol", "check"]].drop_duplicates()
    penalty = failed["check"].map(PENALTIES).fillna(0.0).groupby(failed["symbol"]).sum()
    return (1 - penalty.reindex(wanted, fill_value=0.0)).clip(lower=0.0).rename("score")


def verdicts(issues: pd.DataFrame, score: pd.Series) -> pd.Series:
    """Per symbol, the reasons behind its score ("" for a clean symbol), worst problems first."""
    if issues.empty:
        return pd.Series("", index=score.index, dtype=object)
    ranked = issues.assign(_penalty=issues["check"].map(PENALTIES).fillna(0.0))
    ranked = ranked.sort_values(["symbol", "_penalty"], ascending=[True, False], kind="stable")
    first = ranked.drop_duplicates(["symbol", "check"])
    joined = first.groupby("symbol")["reason"].agg("; ".join)
    return joined.reindex(score.index, fill_value="")


def gate(candidates: pd.DataFrame, score: pd.Series, why: pd.Series, min_score: float) -> pd.DataFrame:
    """Reject the candidates still passing whose score is below `min_score`, saying why; other rows stay as they are."""
    out = candidates.copy()
    low = out["symbol"].map(score).fillna(1.0) < min_score
    newly = out["passed"].astype(bool) & low
    if newly.any():
        out.loc[newly, "reject_reason"] = [
            f"data quality {score[s]:.2f} below {min_score:g}: {why.get(s, '')}" for s in out.loc[newly, "symbol"]
        ]
        out.loc[newly, "passed"] = False
    return out


def summary(quality: pd.DataFrame, min_score: float) -> str:
    """One line for the scan's log: the bars and symbol-days dropped, the symbols below `min_score`, each check's count.

    `quality` has ISSUE_COLUMNS, with one "score" row per scanned symbol.
    """
    dropped = quality["check"].isin(BAD_ROW_CHECKS[1:])
    days = quality["check"] == "duplicate_bar"
    bars = quality.loc[dropped & ~days].groupby("check")["value"].sum()
    scored = quality.loc[quality["check"] == "score"]
    below = scored.loc[scored["value"] < min_score, "symbol"]
    found = (
        quality.loc[~dropped & (quality["check"] != "score")].drop_duplicates(["symbol", "check"])["check"].value_counts()
    )
    bars_text = ", ".join(f"{c} {int(n)}" for c, n in bars.items())
    parts = [
        f"{int(bars.sum())} bars dropped" + (f" ({bars_text})" if bars_text else ""),
        f"{int(days.sum())} symbol-days dropped (duplicate bars)",  # daily duplicates drop the rows alone: rare
        f"{len(below)} of {len(scored)} symbols below the score {min_score:g}"
        + (f" ({', '.join(sorted(below)[:10])})" if len(below) else ""),
    ]
    if len(found):
        parts.append("symbols failing a check: " + ", ".join(f"{c} {n}" for c, n in found.sort_index().items()))
    return "; ".join(parts)


def empty_issues() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=float if c == "value" else object) for c in ISSUE_COLUMNS})


def _ns(ts: pd.Series) -> np.ndarray:
    """Tz-aware timestamps as int64 nanoseconds since the epoch."""
    return ts.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[ns]").view(np.int64)


def _days(ts: pd.Series) -> np.ndarray:
    """Each timestamp's New York date as a day number."""
    local = ts.dt.tz_convert(NEW_YORK_TZ).dt.tz_localize(None)
    return local.to_numpy().astype("datetime64[D]").view(np.int64)


def _issues(rows: pd.DataFrame, source: str, check: str, reasons: list[str], value) -> pd.DataFrame:
    ts = rows["ts"] if "ts" in rows else pd.Series(None, index=rows.index)
    bar_date = [t.tz_convert(NEW_YORK_TZ).date() if isinstance(t, pd.Timestamp) else None for t in ts]
    return pd.DataFrame(
        {
            "symbol": rows["symbol"].astype(str).to_numpy(),
            "source": source,
            "bar_date": bar_date,
            "ts": ts.to_numpy(dtype=object),
            "check": check,
            "reason": reasons,
            "value": np.asarray(value, dtype=float),
        }
    )
