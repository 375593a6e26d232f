"""Backtests: each session of a date range decided as a trading day decides it, filled by the replay engine, one account.

Each session goes through the trading day's own decisions: the morning's scan and ranking
(`openbell.morning`, which the day's tasks call too), sizing on the account's equity within its
buying power (`core.sizing`), and the market-on-open fill, target, stop and liquidation (half days
included) by `core.backtest.replay_sessions`, which equals the paper broker. No position is held
overnight, so each morning's buying power is the equity the previous session left.

Planning a session (scan and rank) needs only the market data, so sessions are planned one by one
independently (`plan_session`, in this process or fanned out to other processes), then traded in
date order on the account (`trade_sessions`).

With the learning loop on (`learning.enabled`), a plan also carries the quant fallback's picks and
every ranker's rank correlation with the session's returns, and `trade_sessions` judges the rankers
before each session from the backtest's own earlier sessions, by the trading day's rule
(`core.learning`): a quarantined ranker's session trades the fallback's picks, a throttled one's
trades smaller.
"""

from __future__ import annotations

import time as clock
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from openbell import calendar, wiring
from openbell.config import Settings
from openbell.core.backtest import (
    DAY_TARGET,
    OPEN_MINUTE,
    REASONS,
    SessionBars,
    excursions,
    replay_sessions,
    select_sessions,
)
from openbell.core.learning import LearningPolicy, State, judge_rankers, ranker_records
from openbell.core.metrics import drawdown_pct, performance_metrics
from openbell.core.prices import UNITS, as_price, price_to_units, units_to_price
from openbell.core.quality import ranking_quality, realised_returns
from openbell.core.ranking import METHOD_RANKER, GapVolumeRanker, RankedPick, choose_ranker
from openbell.core.risk import Book, Halt, Rule, admit_entries, day_limit_exits, drawdown_breach
from openbell.core.sizing import PositionSize, scaled, size_position, within_buying_power
from openbell.core.types import Symbol
from openbell.core.voters import VOTERS
from openbell.errors import ConfigError
from openbell.llm import audit
from openbell.llm.ranker import LlmRanker
from openbell.morning import NO_PRICE, DayRanking, LlmRanking, prior_closes, rank_day, reference_prices, scan_day
from openbell.research.results import DAILY_COLUMNS, TRADE_COLUMNS, BacktestResult
from openbell.venues.marketdata import MarketData
from openbell.venues.replay import ParquetReplaySource

TARGET_LEVELS_PCT = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0)  # the missed-move table, with the policy's own target


@dataclass(frozen=True)
class BacktestSpec:
    """What to backtest: a date range of the replay data, with the settings a trading day would use."""

    settings: Settings  # data files, scan, ranking, exits, sizing, costs; the paper starting cash is the starting equity
    start: date
    end: date
    symbols: tuple[str, ...] | None = None  # trade these every session instead of the scan's picks
    fresh_llm: bool = False  # ask the LLM; otherwise only its replies recorded in DuckDB are used

    @property
    def starting_equity(self) -> Decimal:
        return self.settings.broker.starting_cash

    def parameters(self) -> dict[str, Any]:
        """The run's parameters as JSON-able values: what a user needs to run it again."""
        s = self.settings
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "symbols": list(self.symbols) if self.symbols else None,
            "ranker": s.ranking.method,
            "fresh_llm": self.fresh_llm,
            "top_n": s.scan.top_n,
            "scan": s.scan.model_dump(mode="json", exclude={"top_n"}),
            "quality": s.quality.model_dump(mode="json"),
            "exits": s.exits.model_dump(mode="json"),
            "sizing": s.sizing.model_dump(mode="json"),
            "starting_equity": str(self.starting_equity),
            "commission_per_share": str(s.broker.commission_per_share),
            "commission_min": str(s.broker.commission_min),
            "slippage_bps": str(s.broker.slippage_bps),
        }


@dataclass(frozen=True)
class SessionPlan:
    """A session's morning: which ranker's picks trade, and the price each would be sized by."""

    day: date
    ranker: str
    fallback_reason: str | None
    candidates: int  # the scan's passing candidates (0 with fixed symbols)
    picks: tuple[tuple[str, Decimal], ...]  # rank order; the price is 0 when there is none
    llm_calls: tuple = ()  # LlmCall rows of a fresh LLM ranking, for the audit
    atr: tuple[float | None, ...] = ()  # the scan's ATR(14) of each pick, dollars (None or absent: unknown)
    confidence: tuple[float | None, ...] = ()  # the ranker's confidence in each pick (None or absent: none)
    learning: LearningInputs | None = None  # what the learning loop needs, when it is on and the scan's picks trade

    def symbols(self) -> set[str]:
        """Every symbol the session may trade: the plan's picks, and the fallback's should the learning loop swap them in."""
        fallback = self.learning.fallback.picks if self.learning else ()
        return {s for s, _ in (*self.picks, *fallback)}


@dataclass(frozen=True)
class LearningInputs:
    """What the learning loop needs of a session, known from the market data alone (so planned in any order)."""

    fallback: SessionPlan  # the quant ranker's plan: it trades instead when the requested ranker is quarantined
    spearman: tuple[tuple[str, float], ...]  # (ranker, rank correlation with the open-to-close returns; NaN: none)


def replay_source(settings: Settings) -> ParquetReplaySource:
    """The replay data of the settings (the synthetic market unless files are given); a backtest needs recorded bars."""
    market = wiring.market_for(settings, "replay")
    if not isinstance(market, ParquetReplaySource):
        raise ConfigError(
            "a backtest replays recorded bars: give --bars and --daily Parquet files, or neither for the synthetic market"
        )
    return market


def sessions_of(spec: BacktestSpec, market: ParquetReplaySource) -> list[date]:
    """The sessions of the range that the minute data covers.

    Raises:
        ConfigError: the range is reversed, outside the exchange calendar, or holds no session of the data.
    """
    if spec.start > spec.end:
        raise ConfigError(f"the range starts after it ends ({spec.start} > {spec.end}): give --start before --end")
    calendar.sessions_between(spec.start, spec.end)  # a date outside the calendar is one clear line
    covered = market.sessions()
    days = [d for d in covered if spec.start <= d <= spec.end]
    if not days:
        span = f"{covered[0]} to {covered[-1]}" if covered else "no day at all"
        raise ConfigError(f"no session between {spec.start} and {spec.end} in {market.minute_path} (it covers {span})")
    return days


def plan_session(spec: BacktestSpec, day: date) -> SessionPlan:
    """The morning of `day` as the trading day decides it: the scan, the ranking, the prices to size by."""
    market = replay_source(spec.settings)
    judged = spec.settings.learning.enabled and not spec.symbols  # the loop judges the rankers of the scan's picks
    if spec.symbols:
        picks = [Symbol(s) for s in spec.symbols]
        ranking = DayRanking("fixed", [], spec.settings.ranking.method, None)
        passed = 0
        atr: dict[str, float] = {}
    else:
        candidates = scan_day(market, day, spec.settings)
        llm, calls = recorded_llm(spec, day)
        ranking = rank_day(candidates, day, spec.settings, market, llm=llm, every_ranker=judged)  # judged: score all
        picks = [Symbol(s) for s in ranking.selected]
        passed = int(candidates["passed"].sum())
        atr = dict(zip(candidates["symbol"], candidates["atr14"], strict=True))
    fallback = [Symbol(p.symbol) for p in ranking.by_ranker[GapVolumeRanker.name] if p.selected] if judged else []
    every = list(dict.fromkeys([*picks, *fallback]))
    prices = reference_prices(market, day, every) if every else {}

    def plan(ranker: str, reason: str | None, symbols: list[Symbol], ranked: list[RankedPick]) -> SessionPlan:
        confidence = {p.symbol: p.confidence for p in ranked}
        return SessionPlan(
            day=day,
            ranker=ranker,
            fallback_reason=reason,
            candidates=passed,
            picks=tuple((s, prices.get(s, Decimal(0))) for s in symbols),
            llm_calls=tuple(calls) if spec.fresh_llm else (),
            atr=tuple(_known(atr.get(s)) for s in symbols),
            confidence=tuple(_known(confidence.get(s)) for s in symbols),
        )

    planned = plan(ranking.ranker, ranking.fallback_reason, picks, ranking.picks)
    if not judged:
        return planned
    quant = plan(GapVolumeRanker.name, None, fallback, ranking.by_ranker[GapVolumeRanker.name])
    return replace(planned, learning=LearningInputs(quant, rank_correlations(ranking, market, day)))


def rank_correlations(ranking: DayRanking, market: MarketData, day: date) -> tuple[tuple[str, float], ...]:
    """Each ranker's rank correlation with the session's open-to-close returns, as the day's report scores it.

    The scores are those the ranking task records in `ranker_scores`: every ranker's, the LLM's only
    when its ranking was used, and each voter's.
    """
    rows: list[tuple[str, str, float | None]] = [  # ranker, symbol, score (None: the LLM did not score it)
        (name, p.symbol, p.score) for name, ranked in ranking.by_ranker.items() if name != "llm" for p in ranked
    ]
    if ranking.llm_scores:  # none when the LLM's ranking could not be used
        rows += [("llm", p.symbol, ranking.llm_scores.get(p.symbol)) for p in ranking.by_ranker.get("llm", [])]
    votes = ranking.votes
    if votes is not None and not votes.empty:
        rows += [(voter, symbol, score) for voter in VOTERS for symbol, score in votes[voter].astype(float).items()]
    scores = pd.DataFrame(rows, columns=["ranker", "symbol", "score"])
    if scores.empty:
        return ()
    bars = market.minute_bars(day, sorted(scores["symbol"].unique()))
    table = ranking_quality(scores, realised_returns(bars, calendar.session_open(day), calendar.session_close(day)))
    open_close = table[table["horizon"] == "open_close"]
    return tuple(zip(open_close["ranker"], open_close["spearman"].astype(float), strict=True))


def _known(value: float | None) -> float | None:
    """A number from the scan or the ranker, None when missing (None or NaN)."""
    return None if value is None or value != value else float(value)


def recorded_llm(spec: BacktestSpec, day: date) -> tuple[LlmRanking, list]:
    """The LLM ranking a backtest may use: the reply recorded for the same prompt, unless told to ask afresh."""
    settings = spec.settings
    calls: list = []

    def ask(candidates: pd.DataFrame, top_n: int) -> tuple[list[RankedPick], dict[str, float], str | None]:
        store = wiring.store_for(settings) if settings.llm.configured else None  # no LLM: it says so, reads nothing
        ranker = LlmRanker(
            settings.llm,
            trade_date=day,
            run_id=None,
            fallback=GapVolumeRanker(),
            headlines=(audit.recorded_headlines(store, day) or {}) if store else {},
            cached=lambda key: audit.cached_reply(store, key) if store else None,
            recorded_only=not spec.fresh_llm,
        )
        picks = ranker.rank(candidates, top_n)
        outcome = ranker.outcome
        assert outcome is not None
        calls.extend(outcome.calls)
        return picks, outcome.scores, outcome.fallback_reason

    return ask, calls


@dataclass
class _Account:
    """The account carried from session to session: flat every night, so cash is the equity."""

    equity: Decimal
    trades: list[dict] = field(default_factory=list)
    days: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unfilled: int = 0
    risk: list[str] = field(default_factory=list)  # what the guards did, one line each
    halt: Halt | None = None  # a drawdown halt: no new entries for the rest of the range
    closes: list[Decimal] = field(default_factory=list)  # the equity before the first session, then at each close

    def __post_init__(self) -> None:
        self.closes.append(self.equity)


def trade_sessions(
    spec: BacktestSpec,
    plans: Iterable[SessionPlan],
    bars: SessionBars,
    sessions: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Size, fill and exit every plan's picks in date order on one account: (trades, daily, notes).

    `bars` and `sessions` are the range's minute bars as `ParquetReplaySource.session_bars_between`
    lays them out. With the learning loop on, the plans that carry its inputs (`plan_session`'s) are
    judged first: which ranker's picks trade, and at what size.
    """
    settings = spec.settings
    policy, sizing, costs = settings.exits.policy(), settings.sizing.policy(), settings.broker.costs()
    index = {(d, s): i for i, (d, s) in enumerate(zip(sessions["day"], sessions["symbol"], strict=True))}
    account = _Account(spec.starting_equity)
    loop = _LearningLoop(settings.learning.policy(), settings.ranking.method) if settings.learning.enabled else None
    for planned in plans:
        start_equity, plan, sized_by = account.equity, planned, sizing
        if loop is not None and planned.learning is not None:
            plan, factor = loop.judge(planned)
            sized_by = scaled(sizing, factor)
        sizes = [
            size_position(symbol, price, start_equity, sized_by)
            if price > 0
            else PositionSize(symbol, price, 0, Decimal(0), NO_PRICE)
            for symbol, price in plan.picks
        ]
        sizes = within_buying_power(sizes, start_equity)
        sizes = _within_risk_limits(account, plan.day, sizes, start_equity, settings)
        account.skipped += [f"{plan.day} {s.symbol}: {s.skipped_reason}" for s in sizes if not s.shares]
        traded = [s for s in sizes if s.shares and (plan.day, s.symbol) in index]
        account.unfilled += sum(1 for s in sizes if s.shares and (plan.day, s.symbol) not in index)  # no bar at all
        before = len(account.trades)
        day_pnl, notional = _trade_day(account, plan, traded, bars, index, policy, costs, settings)
        if loop is not None and planned.learning is not None:
            loop.record(planned, account.trades[before:])
        account.equity += day_pnl
        account.closes.append(account.equity)
        account.days.append(
            {
                "trade_date": plan.day,
                "equity": float(account.equity),
                "pnl": float(day_pnl),
                "exposure": float(notional / start_equity) if start_equity > 0 else 0.0,
                "trades": len(account.trades) - before,
                "ranker": plan.ranker,
                "note": plan.fallback_reason,
            }
        )
    daily = pd.DataFrame(account.days, columns=[*DAILY_COLUMNS, "ranker", "note"])
    if len(daily):
        daily["drawdown_pct"] = drawdown_pct(daily["equity"], float(spec.starting_equity)).to_numpy()
    trades = pd.DataFrame(account.trades, columns=[*TRADE_COLUMNS, "_high_before_liquidation"])
    notes = _notes(daily, account.skipped, account.unfilled, loop_days=loop.quarantined_days if loop else ())
    return trades, daily, notes + _risk_notes(account.risk) + (loop.notes() if loop else [])


@dataclass
class _LearningLoop:
    """The learning loop over a backtest's own sessions: before each, every ranker judged as the trading day judges it.

    A ranker's record covers the last `lookback_sessions` sessions of the backtest (its trades with the
    ranker whose picks traded, and every ranker's rank correlation), every ranker starts active, and
    `core.learning` decides, as `tasks/rank.py` does from the store.
    """

    policy: LearningPolicy
    method: str  # ranking.method
    states: dict[str, State] = field(default_factory=dict)
    history: list[tuple[date, tuple[tuple[str, float], ...], list[dict]]] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    quarantined_days: list[date] = field(default_factory=list)
    throttled: dict[str, int] = field(default_factory=dict)  # sessions traded smaller, by the ranker traded

    def judge(self, plan: SessionPlan) -> tuple[SessionPlan, Decimal]:
        """The plan whose picks trade (the fallback's when the requested ranker is quarantined), and the size factor."""
        assert plan.learning is not None
        window = self.history[-self.policy.lookback_sessions :]
        trades = pd.DataFrame([t for _, _, day in window for t in day], columns=["ranker", "pnl", "return_pct"])
        quality = pd.DataFrame([q for _, day, _ in window for q in day], columns=["ranker", "spearman"])
        requested = METHOD_RANKER[self.method]
        verdicts = judge_rankers(ranker_records(trades, quality), self.states, requested, self.policy)
        for name, (before, state, reason) in verdicts.items():
            if state is not before:
                self.changes.append(f"{plan.day}: {name} {state} (was {before}): {reason}")
            self.states[name] = state
        _, state, reason = verdicts[requested]
        if state is State.QUARANTINED:  # the quarantine alone decides: the other reasons do not matter
            ranker, why = choose_ranker(self.method, llm_asked=True, llm_fallback=None, ensemble_failure=None,
                                        quarantined=reason)  # fmt: skip
            plan = replace(plan.learning.fallback, fallback_reason=why)
            assert plan.ranker == ranker
            self.quarantined_days.append(plan.day)
        if self.states.get(plan.ranker) is not State.THROTTLED:
            return plan, Decimal(1)
        self.throttled[plan.ranker] = self.throttled.get(plan.ranker, 0) + 1
        return plan, self.policy.throttle_size

    def record(self, plan: SessionPlan, trades: list[dict]) -> None:
        """The session as the next ones judge it: every ranker's rank correlation, and the trades with their ranker."""
        assert plan.learning is not None
        self.history.append((plan.day, plan.learning.spearman, trades))

    def notes(self, shown: int = 12) -> list[str]:
        """What the loop did: the sessions it changed, then each state change (the first few)."""
        requested, notes = METHOD_RANKER[self.method], []
        if self.quarantined_days:
            n = len(self.quarantined_days)
            notes.append(f"learning loop: {n} session(s) traded {GapVolumeRanker.name}'s picks: {requested} quarantined")
        for ranker, n in sorted(self.throttled.items()):
            notes.append(f"learning loop: {n} session(s) of {ranker} traded at {self.policy.throttle_size} of the size")
        notes += [f"learning loop: {line}" for line in self.changes[:shown]]
        if len(self.changes) > shown:
            notes.append(f"learning loop: ... and {len(self.changes) - shown} more state change(s)")
        return notes


def _within_risk_limits(
    account: _Account, day: date, sizes: list[PositionSize], start_equity: Decimal, settings: Settings
) -> list[PositionSize]:
    """The sizes the risk limits admit, as the order task admits them; a drawdown halt lasts to the range's end."""
    limits = settings.risk.limits()
    if account.halt is None and limits.max_drawdown_pct is not None:
        breach = drawdown_breach(account.closes, limits)
        if breach is not None:
            account.halt = Halt(Rule.MAX_DRAWDOWN_PCT, breach[1])
            account.risk.append(f"{day}: new entries halted for the rest of the range: {breach[1]}")
    kept, refused = admit_entries(sizes, limits, Book(start_equity), trade_date=day, now=_at(day, OPEN_MINUTE),
                                  halted=account.halt)  # fmt: skip
    account.risk += [f"{day} {e.message}" for e in refused if account.halt is None]
    return kept


def _trade_day(
    account: _Account,
    plan: SessionPlan,
    traded: list[PositionSize],
    bars: SessionBars,
    index: dict[tuple[date, str], int],
    policy,
    costs,
    settings: Settings,
) -> tuple[Decimal, Decimal]:
    """Fill and exit the day's positions; appends their trades; returns (the day's P&L, entry notional)."""
    if not traded:
        return Decimal(0), Decimal(0)
    day = plan.day
    liquidation = calendar.liquidation_time(
        day, settings.exits.liquidation_time, timedelta(minutes=settings.exits.early_close_offset_min)
    )
    liquidation_minute = liquidation.hour * 60 + liquidation.minute
    day_bars = select_sessions(bars, np.array([index[(day, s.symbol)] for s in traded]))
    shares = np.array([s.shares for s in traded], dtype=np.int64)
    atr, confidence = _exit_inputs(plan, traded)
    result = replay_sessions(day_bars, shares, liquidation_minute, policy, costs, atr, confidence)
    limits = settings.risk.limits()
    loss_limit, target = limits.daily_loss_limit(account.equity), limits.daily_profit_target(account.equity)
    result, trip = day_limit_exits(
        day_bars, result, shares, liquidation_minute, costs,
        loss_units=None if loss_limit is None else price_to_units(loss_limit),
        target_units=None if target is None else price_to_units(target),
    )  # fmt: skip
    if trip is not None:
        at = f"{trip.minute // 60:02d}:{trip.minute % 60:02d}"
        if trip.code == DAY_TARGET:
            account.risk.append(f"{day} {at}: the day's profit ${trip.pnl / UNITS:,.2f} reached the ${target:,.2f} "
                                "target; open positions flattened")  # fmt: skip
        else:
            account.risk.append(f"{day} {at}: the day's loss ${-trip.pnl / UNITS:,.2f} reached the ${loss_limit:,.2f} "
                                "limit; open positions flattened")  # fmt: skip
    moves = excursions(day_bars, result, liquidation_minute)
    account.unfilled += int((~result.filled).sum())
    close = calendar.session_close(day)
    for i in np.flatnonzero(result.filled):
        entry, exit_ = int(result.entry_price[i]), int(result.exit_price[i])
        exit_at = _at(day, int(day_bars.minute[result.exit_index[i]])) if result.exit_index[i] >= 0 else close
        account.trades.append(
            {
                "trade_date": day,
                "symbol": traded[i].symbol,
                "ranker": plan.ranker,
                "shares": int(shares[i]),
                "entry_ts": _at(day, int(day_bars.minute[result.entry_index[i]])),
                "entry_price": entry / UNITS,
                "exit_ts": exit_at,
                "exit_price": exit_ / UNITS,
                "exit_reason": REASONS[int(result.exit_code[i])],
                "commission": int(result.commission[i]) / UNITS,
                "pnl": int(result.pnl[i]) / UNITS,
                "return_pct": (exit_ / entry - 1) * 100,
                "mfe_pct": (int(moves.highest[i]) / entry - 1) * 100,
                "mae_pct": (int(moves.lowest[i]) / entry - 1) * 100,
                "open_high_pct": (int(moves.day_high[i]) / entry - 1) * 100,
                "_high_before_liquidation": int(moves.high_before_liquidation[i]) / entry,
            }
        )
    pnl = Decimal(int(result.pnl.sum())) / UNITS
    notional = Decimal(int((result.entry_price * shares)[result.filled].sum())) / UNITS
    return pnl, notional


def _exit_inputs(plan: SessionPlan, traded: list[PositionSize]) -> tuple[np.ndarray, np.ndarray]:
    """Per traded position: the scan's ATR(14) in $0.0001 units (0: unknown) and the ranker's confidence (NaN: none)."""
    symbols = [s for s, _ in plan.picks]
    atr = dict(zip(symbols, plan.atr, strict=False))
    confidence = dict(zip(symbols, plan.confidence, strict=False))
    atr_units = [price_to_units(Decimal(repr(atr[s.symbol]))) if atr.get(s.symbol) else 0 for s in traded]
    known = [confidence.get(s.symbol) for s in traded]
    return np.array(atr_units, dtype=np.int64), np.array([np.nan if c is None else c for c in known], dtype=np.float64)


def _at(day: date, minute: int) -> datetime:
    return datetime.combine(day, time(minute // 60, minute % 60), tzinfo=calendar.NEW_YORK)


def target_reach(trades: pd.DataFrame, target_pct: Decimal) -> pd.DataFrame:
    """How often each target level would have been reached before the liquidation time, whatever the exit."""
    levels = sorted({*TARGET_LEVELS_PCT, float(target_pct)})
    if "_high_before_liquidation" not in trades or trades.empty:
        return pd.DataFrame({"level_pct": levels, "trades": 0, "reached": 0, "reached_pct": np.nan})
    peak = trades["_high_before_liquidation"].to_numpy(dtype=float)
    reached = [int((peak >= 1 + level / 100 - 1e-12).sum()) for level in levels]
    n = len(trades)
    return pd.DataFrame(
        {"level_pct": levels, "trades": n, "reached": reached, "reached_pct": [100.0 * r / n for r in reached]}
    )


def _notes(daily: pd.DataFrame, skipped: list[str], unfilled: int, loop_days: Iterable[date] = ()) -> list[str]:
    """What a user should know about the run, one line each (the learning loop's notes tell of `loop_days`)."""
    notes = []
    if len(daily):
        quiet = int((daily["trades"] == 0).sum())
        if quiet:
            notes.append(f"{quiet} of {len(daily)} sessions traded nothing")
        noted = daily[~daily["trade_date"].isin(list(loop_days))].dropna(subset=["note"])
        for (ranker, reason), n in noted.groupby(["ranker", "note"]).size().items():
            notes.append(f"{n} session(s) ranked by {ranker}: {reason}")
    if skipped:
        notes.append(f"{len(skipped)} pick(s) skipped by sizing, e.g. {skipped[0]}")
    if unfilled:
        notes.append(f"{unfilled} entry order(s) unfilled (no opening print)")
    return notes


def _risk_notes(lines: list[str], shown: int = 8) -> list[str]:
    """What the risk guards did (entries refused, loss limits tripped, halts), the first few one line each."""
    notes = [f"risk: {line}" for line in lines[:shown]]
    if len(lines) > shown:
        notes.append(f"risk: ... and {len(lines) - shown} more")
    return notes


Progress = Callable[[date, int, int], None]  # (the session just planned, sessions planned, sessions in all)
Planner = Callable[["BacktestSpec", list[date], Progress], list[SessionPlan]]


def run_backtest(
    spec: BacktestSpec, *, run_id: str, planner: Planner | None = None, progress: Progress = lambda *_: None
) -> BacktestResult:
    """Backtest the spec's range: plan every session (by `planner`, default: one after another here), then trade them.

    Raises:
        ConfigError: no session in the range, files missing or malformed, unknown symbols.
    """
    started = clock.perf_counter()
    market = replay_source(spec.settings)
    days = sessions_of(spec, market)
    if spec.symbols and (unknown := sorted(set(spec.symbols) - set(market.symbols()))):
        raise ConfigError(f"unknown symbol(s) {', '.join(unknown)}: {market.minute_path} has no bars for them")
    if spec.symbols and planner is None:  # no scan: the prices to size by are in the range's bars
        bars, sessions = market.session_bars_between(days[0], days[-1], spec.symbols)
        plans = fixed_plans(spec, days, bars, sessions, progress)
    else:
        plans = (planner or plan_in_process)(spec, days, progress)
        symbols = sorted(set().union(*(p.symbols() for p in plans)))
        bars, sessions = market.session_bars_between(days[0], days[-1], symbols)
    trades, daily, notes = trade_sessions(spec, plans, bars, sessions)
    parameters = spec.parameters() | {"sessions": len(days), "wall_s": round(clock.perf_counter() - started, 3)}
    return result_of(spec, run_id, parameters, trades, daily, notes)


def result_of(
    spec: BacktestSpec, run_id: str, parameters: dict, trades: pd.DataFrame, daily: pd.DataFrame, notes: list[str]
) -> BacktestResult:
    """The result of traded sessions (`trade_sessions`' output): with the metrics and the missed-move table."""
    reach = target_reach(trades, spec.settings.exits.target_pct)
    trades = trades.drop(columns=["_high_before_liquidation"])
    metrics = performance_metrics(daily, trades, float(spec.starting_equity))
    return BacktestResult(run_id, parameters, float(spec.starting_equity), trades, daily, metrics, reach, tuple(notes))


def fixed_plans(
    spec: BacktestSpec, days: list[date], bars: SessionBars, sessions: pd.DataFrame, progress: Progress = lambda *_: None
) -> list[SessionPlan]:
    """The plans of fixed symbols, sized by their opening prints as `plan_session` sizes them, read from the range's bars.

    Gives what `plan_session` gives for each day, without reading each day's minute bars again.
    """
    assert spec.symbols
    market = replay_source(spec.settings)
    opens_at_the_bell = bars.minute[bars.starts] == OPEN_MINUTE if len(bars.starts) else np.empty(0, dtype=bool)
    opening = {
        (d, s): as_price(units_to_price(int(u)))
        for d, s, u, at_bell in zip(
            sessions["day"], sessions["symbol"], bars.open[bars.starts], opens_at_the_bell, strict=True
        )
        if at_bell
    }
    plans = []
    for done, day in enumerate(days, start=1):
        prices = {Symbol(s): opening[(day, s)] for s in spec.symbols if (day, s) in opening}
        missing = [Symbol(s) for s in spec.symbols if s not in prices]
        prices |= prior_closes(market, day, missing) if missing else {}
        picks = tuple((Symbol(s), prices.get(Symbol(s), Decimal(0))) for s in spec.symbols)
        plans.append(SessionPlan(day, "fixed", None, 0, picks))
        progress(day, done, len(days))
    return plans


def plan_in_process(spec: BacktestSpec, days: list[date], progress: Progress = lambda *_: None) -> list[SessionPlan]:
    """Plan the sessions one after another in this process."""
    plans = []
    for i, day in enumerate(days, start=1):
        plans.append(plan_session(spec, day))
        progress(day, i, len(days))
    return plans
