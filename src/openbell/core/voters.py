"""An ensemble of voters: simple technical readings that each score a candidate in [0, 1].

Each voter takes the scan's candidates (one row per symbol) and their daily bars
(symbol, date, open, high, low, close, volume up to the prior session) and returns a score in
[0, 1] per candidate symbol, or NaN when it has too little history to say anything. `vote`
runs several voters into one table, so a day's choice can be explained afterwards; `combine`
weights the scores into one number and `consensus` asks how many voters agree.
`EnsembleRanker` ranks the scan's passing candidates by the combined score.

Every voter reads the daily closes in date order; "close" below is the last daily close (the
prior session's), and averages include it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from openbell.core.ranking import RankedPick

Voter = Callable[[pd.DataFrame, pd.DataFrame], pd.Series]

RSI_PERIOD = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
MACD_SCALE = 100.0  # the histogram is read in percent of price before the logistic
SMA_SHORT, SMA_LONG = 20, 50
EXCLUDED_COLUMN = "excluded"  # vote()'s note column: why a voter gave no score

# Daily closes a voter needs before its reading means anything.
MIN_CLOSES: dict[str, int] = {
    "momentum": 0,
    "rsi": RSI_PERIOD + 1,
    "macd": MACD_SLOW + MACD_SIGNAL - 1,
    "sma_trend": SMA_LONG,
    "mean_reversion": SMA_SHORT,
}


def _logistic(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


def _closes_by_symbol(candidates: pd.DataFrame, daily: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each candidate's daily closes in date order (empty when it has no bars)."""
    wanted = candidates["symbol"].astype(str)
    ordered = daily[daily["symbol"].astype(str).isin(set(wanted))].sort_values(["symbol", "date"], kind="mergesort")
    symbols, closes = ordered["symbol"].astype(str).to_numpy(), ordered["close"].to_numpy(dtype=float)
    starts = np.flatnonzero(symbols[1:] != symbols[:-1]) + 1  # each symbol's rows are one run
    grouped = {run[0]: c for run, c in zip(np.split(symbols, starts), np.split(closes, starts), strict=True) if len(run)}
    return {s: grouped.get(s, np.empty(0)) for s in wanted}


def _per_symbol(
    candidates: pd.DataFrame, daily: pd.DataFrame, min_closes: int, reading: Callable[[np.ndarray], float]
) -> pd.Series:
    closes = _closes_by_symbol(candidates, daily)
    scores = {s: reading(c) if len(c) >= min_closes else np.nan for s, c in closes.items()}
    return pd.Series(scores, dtype=float).rename_axis("symbol")


def momentum(candidates: pd.DataFrame, daily: pd.DataFrame) -> pd.Series:
    """The quant baseline: raw = gap_pct x rel_volume; score = (raw - min) / (max - min) across candidates.

    Min and max are taken over the candidates given; with no spread (one candidate, or all
    equal) every score is 0.5. A candidate whose raw value is NaN gets NaN. Daily bars are unused.
    """
    raw = pd.Series(
        (candidates["gap_pct"] * candidates["rel_volume"]).to_numpy(dtype=float),
        index=candidates["symbol"].astype(str).to_numpy(),
    ).rename_axis("symbol")
    low, high = raw.min(), raw.max()
    if not high > low:
        return raw.where(raw.isna(), 0.5)
    return (raw - low) / (high - low)


def wilder_rsi(closes: np.ndarray, period: int = RSI_PERIOD) -> float:
    """Wilder's RSI of the last close: RSI = 100 - 100 / (1 + avg_gain / avg_loss).

    The first averages are the simple means of the first `period` gains and losses (a loss is
    a positive number); after that avg = (avg_prev x (period - 1) + today) / period. With no
    losses RSI = 100; with neither gains nor losses (a flat series) RSI = 50.
    """
    changes = np.diff(closes)
    gains, losses = np.clip(changes, 0, None), np.clip(-changes, 0, None)
    avg_gain, avg_loss = gains[:period].mean(), losses[:period].mean()
    for gain, loss in zip(gains[period:], losses[period:], strict=True):
        avg_gain = (avg_gain * (period - 1) + gain) / period
        avg_loss = (avg_loss * (period - 1) + loss) / period
    if avg_loss == 0:
        return 100.0 if avg_gain > 0 else 50.0
    return float(100.0 - 100.0 / (1.0 + avg_gain / avg_loss))


def rsi(candidates: pd.DataFrame, daily: pd.DataFrame) -> pd.Series:
    """Momentum reading of Wilder's RSI(14) on daily closes: score = RSI / 100 (strong = high).

    Needs 15 closes (14 changes).
    """
    return _per_symbol(candidates, daily, MIN_CLOSES["rsi"], lambda c: wilder_rsi(c) / 100.0)


def _ema(values: np.ndarray, span: int) -> np.ndarray:
    """EMA with alpha = 2 / (span + 1), seeded with the first value: e_t = e_{t-1} + alpha (x_t - e_{t-1})."""
    return pd.Series(values).ewm(span=span, adjust=False).mean().to_numpy()


def macd_histogram(closes: np.ndarray) -> float:
    """The last MACD(12, 26, 9) histogram: macd = EMA12 - EMA26 of closes; histogram = macd - EMA9(macd)."""
    line = _ema(closes, MACD_FAST) - _ema(closes, MACD_SLOW)
    return float(line[-1] - _ema(line, MACD_SIGNAL)[-1])


def macd(candidates: pd.DataFrame, daily: pd.DataFrame) -> pd.Series:
    """score = logistic(100 x histogram / close), close being the prior session's.

    The histogram is MACD(12, 26, 9)'s (see `macd_histogram`); dividing by the close and
    multiplying by 100 reads it in percent of price, so a histogram of +1% of price scores
    logistic(1) = 0.73 and a flat series 0.5. Needs 34 closes (26 for EMA26, 8 more for the signal).
    """
    return _per_symbol(candidates, daily, MIN_CLOSES["macd"], lambda c: _logistic(MACD_SCALE * macd_histogram(c) / c[-1]))


def _sma_trend_reading(closes: np.ndarray) -> float:
    sma20, sma50 = closes[-SMA_SHORT:].mean(), closes[-SMA_LONG:].mean()
    return (int(closes[-1] > sma20) + int(sma20 > sma50)) / 2.0  # int(): numpy bools add as OR


def sma_trend(candidates: pd.DataFrame, daily: pd.DataFrame) -> pd.Series:
    """Trend by moving averages: one point for close > SMA(20), one for SMA(20) > SMA(50); score = points / 2.

    So 1 if both are above, 0.5 if one, 0 if none (equal is not above). Needs 50 closes.
    """
    return _per_symbol(candidates, daily, MIN_CLOSES["sma_trend"], _sma_trend_reading)


def _mean_reversion_reading(closes: np.ndarray) -> float:
    window = closes[-SMA_SHORT:]
    stdev = window.std(ddof=1)
    z = 0.0 if stdev == 0 else (closes[-1] - window.mean()) / stdev
    return _logistic(-z)


def mean_reversion(candidates: pd.DataFrame, daily: pd.DataFrame) -> pd.Series:
    """Oversold scores high: z = (close - SMA20) / stdev20; score = logistic(-z).

    stdev20 is the sample standard deviation (ddof 1) of the last 20 closes; with no spread
    z = 0 and the score is 0.5. Needs 20 closes.
    """
    return _per_symbol(candidates, daily, MIN_CLOSES["mean_reversion"], _mean_reversion_reading)


VOTERS: dict[str, Voter] = {
    "momentum": momentum,
    "rsi": rsi,
    "macd": macd,
    "sma_trend": sma_trend,
    "mean_reversion": mean_reversion,
}


def vote(candidates: pd.DataFrame, daily: pd.DataFrame, voters: Mapping[str, Voter] = VOTERS) -> pd.DataFrame:
    """Every voter's score for every candidate.

    Returns one row per candidate symbol (index "symbol", in symbol order), one float column
    per voter (NaN: no score) and an `excluded` column saying why voters gave no score
    ("rsi: needs 15 daily closes, has 10"; empty when every voter scored).
    """
    symbols = sorted(dict.fromkeys(candidates["symbol"].astype(str)))
    votes = pd.DataFrame(index=pd.Index(symbols, name="symbol"))
    for name, voter in voters.items():
        votes[name] = voter(candidates, daily).astype(float).reindex(votes.index)
    closes = _closes_by_symbol(candidates, daily)
    notes = []
    for symbol in votes.index:
        missing = [name for name in voters if np.isnan(votes.at[symbol, name])]
        notes.append("; ".join(_why_excluded(name, len(closes[symbol])) for name in missing))
    votes[EXCLUDED_COLUMN] = notes
    return votes


def _why_excluded(name: str, n_closes: int) -> str:
    needed = MIN_CLOSES.get(name, 0)
    if n_closes < needed:
        return f"{name}: needs {needed} daily closes, has {n_closes}"
    return f"{name}: no score (missing inputs)"


def _score_columns(votes: pd.DataFrame) -> list[str]:
    return [c for c in votes.columns if c != EXCLUDED_COLUMN]


def combine(votes: pd.DataFrame, weights: Mapping[str, float]) -> pd.Series:
    """Weighted mean of the scores each candidate has: sum(w_i x s_i) / sum(w_i) over non-NaN s_i.

    A candidate with no score from any positively weighted voter gets NaN.

    Raises:
        ValueError: a weight names a voter that is not in `votes`, or is negative, or all are zero.
    """
    unknown = sorted(set(weights) - set(_score_columns(votes)))
    if unknown:
        raise ValueError(f"Weights name voters that did not vote: {unknown}; use some of {_score_columns(votes)}.")
    if any(w < 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
        raise ValueError(f"Weights must be >= 0 with at least one > 0, got {dict(weights)}.")
    names = list(weights)
    scores = votes[names].astype(float)
    w = pd.Series(weights, dtype=float)[names]
    present = scores.notna()
    total_weight = present.mul(w, axis=1).sum(axis=1)
    weighted = scores.fillna(0.0).mul(w, axis=1).sum(axis=1)
    return (weighted / total_weight.where(total_weight > 0)).rename("score")


def agreeing_voters(votes: pd.DataFrame, threshold: float = 0.5) -> pd.Series:
    """How many voters scored each candidate at or above `threshold` (NaN does not agree)."""
    return (votes[_score_columns(votes)].astype(float) >= threshold).sum(axis=1).rename("agree")


def consensus(votes: pd.DataFrame, k: int, threshold: float = 0.5) -> pd.Series:
    """True where at least `k` of the n voters scored the candidate >= `threshold`.

    Raises:
        ValueError: k is not between 1 and the number of voters.
    """
    n = len(_score_columns(votes))
    if not 1 <= k <= n:
        raise ValueError(f"Consensus needs 1 <= k <= {n} (the number of voters), got k={k}.")
    return (agreeing_voters(votes, threshold) >= k).rename("consensus")


class EnsembleRanker:
    """Ranks passing candidates by the weighted mean of the voters' scores; ties break by symbol.

    Args:
        weights: voter name -> weight; the voters named are the ones that run (default: every
            voter of VOTERS, weight 1).
        min_agree: if given, only candidates where at least this many voters score >= 0.5 can
            be selected; the others are still ranked, with the reason saying so.
        daily: daily bars up to the prior session, for the technical voters.
        external: scores from voters outside this module (the LLM), by name: a score in [0, 1]
            per symbol; a symbol it lacks has no score from that voter.
        missing_notes: why an external voter gave no score ("llm: fell back: timeout"), by name.
    Raises:
        ValueError: a weight names an unknown voter, or min_agree is outside 1..number of voters.

    After `rank`, `votes` holds every voter's score per candidate and the combined score.
    """

    name = "ensemble"
    threshold = 0.5

    def __init__(
        self,
        weights: Mapping[str, float] | None = None,
        min_agree: int | None = None,
        *,
        daily: pd.DataFrame,
        external: Mapping[str, pd.Series] | None = None,
        missing_notes: Mapping[str, str] | None = None,
    ) -> None:
        self.external = dict(external or {})
        self.weights = dict(weights) if weights is not None else dict.fromkeys([*VOTERS, *self.external], 1.0)
        unknown = sorted(set(self.weights) - set(VOTERS) - set(self.external))
        if unknown:
            raise ValueError(f"Unknown voters {unknown}; choose from {sorted([*VOTERS, *self.external])}.")
        if min_agree is not None and not 1 <= min_agree <= len(self.weights):
            raise ValueError(f"min_agree must be between 1 and {len(self.weights)} (the voters), got {min_agree}.")
        self.min_agree = min_agree
        self.daily = daily
        self.missing_notes = dict(missing_notes or {})
        self.votes: pd.DataFrame | None = None

    def rank(self, candidates: pd.DataFrame, top_n: int) -> list[RankedPick]:
        passed = candidates[candidates["passed"].astype(bool)]
        if passed.empty:
            return []
        votes = vote(passed, self.daily, {name: VOTERS[name] for name in self.weights if name in VOTERS})
        for name in (n for n in self.weights if n not in VOTERS):
            scores = self.external[name].astype(float)
            votes.insert(len(votes.columns) - 1, name, scores.reindex(votes.index).to_numpy())
            note = self.missing_notes.get(name, f"{name}: no score")
            missing = votes[name].isna()
            votes.loc[missing, EXCLUDED_COLUMN] = [
                "; ".join(filter(None, [old, note])) for old in votes.loc[missing, EXCLUDED_COLUMN]
            ]
        self.votes = votes.assign(score=combine(votes, self.weights))
        table = votes.assign(score=combine(votes, self.weights), agree=agreeing_voters(votes, self.threshold))
        table = table.rename_axis("symbol").reset_index()
        table = table.sort_values(
            ["score", "symbol"], ascending=[False, True], na_position="last", kind="mergesort"
        ).reset_index(drop=True)
        eligible = table["score"].notna()
        if self.min_agree is not None:
            eligible &= table["agree"] >= self.min_agree
        selected = eligible & (eligible.cumsum() <= top_n)
        return [
            RankedPick(
                symbol=row["symbol"],
                rank=i,
                score=float(row["score"]),
                reason=self._reason(row),
                selected=bool(selected.iloc[i - 1]),
            )
            for i, (_, row) in enumerate(table.iterrows(), start=1)
        ]

    def _reason(self, row: pd.Series) -> str:
        parts = ", ".join(f"{name} {row[name]:.2f}" if pd.notna(row[name]) else f"{name} n/a" for name in self.weights)
        total = f"{row['score']:.2f}" if pd.notna(row["score"]) else "n/a"
        reason = f"{parts} → {total}"
        if self.min_agree is not None and row["agree"] < self.min_agree:
            reason += f"; only {row['agree']} of {len(self.weights)} voters >= {self.threshold:.2f}, needs {self.min_agree}"
        if row[EXCLUDED_COLUMN]:
            reason += f" ({row[EXCLUDED_COLUMN]})"
        return reason
