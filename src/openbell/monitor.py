"""The exit monitor's minute: one read of the broker, then protect, hold or close each position on its own.

A tick costs the same broker requests whatever the number of positions: `day_orders()` and
`fills_since()` (two GET /v2/orders at Alpaca). Orders go out only when something happens: the
protective pair of a newly filled entry, a retry of a refused pair on the backoff of
`core.protection`, and a cancel and market sell when the monitor closes a position itself. Market
data is read only for the positions whose exits the monitor holds or whose stop the break-even may
still raise (one request for all of them).

The break-even (`ExitPolicy.breakeven_after_pct`) moves a stop at the broker by replacing the pair:
once a completed bar's high reached its level (`core.exits.breakeven_stop`, the rule `core.exits.step`
follows), the monitor cancels the pair and, once the broker confirms, places the same target with
the stop at the entry under the break-even ids (`core.orders.breakeven_exit`), which a run again finds.

Failures stay with the symbol they concern. A pair the broker refuses (`OrderRejected`, such as
Alpaca's pattern-day-trader 403) or fails to place (`TransientError`) leaves that symbol to the
monitor: the same target and stop, checked each tick by `core.exits.bar_exits` on its completed
minute bars, and a market sell under a deterministic id when one is crossed. A broker that cannot
be read at all is an outage: the monitor asks again with backoff, and at reconnect closes any
position whose level was crossed on the bars it missed while the broker's pair is still working.
Every fallback, recovery and close is a `RiskEvent` in `risk_events`, and one log line.

A broker whose protective pairs take no trailing stop (`Broker.pairs_trailing_stops` False: Alpaca)
holds the pair with the fixed stop, and the monitor trails: each tick it steps the position's
completed bars through `core.exits.step` and, once a bar crossed the trailed stop above the broker's,
cancels the pair and sells at market (booked as a stop).

An entry is protected once it is done, for the shares it got. With an order time-to-live
(`order_ttl`, OPENBELL_BROKER__ORDER_TTL_S) the monitor cancels an entry still working, unfilled or
filled in part, once it has worked that long (`Order.past_ttl`: a market-on-open entry from the
open); the cancelled entry keeps its fills, and its pair goes out in the same tick for them. Under a
halt (the kill switch, the day's profit target, a flatten) an entry still working is cancelled the same
way, and what it got is sold with the rest. The TTL lives here because the monitor is what watches the
orders through the session, on the read it makes each minute anyway: the order task has ended before
the open, when no entry can have worked yet.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd

from openbell import calendar
from openbell.core.exits import ExitBar, ExitCode, ExitPolicy, ExitState, breakeven_stop, exit_levels_for, step
from openbell.core.orders import breakeven_exit, liquidation, monitor_exit, protective_exit
from openbell.core.prices import price_to_units, to_units, units_to_price
from openbell.core.protection import EXIT_PURPOSE, OUTAGE_LONGEST_WAIT, HeldExit, Retry, first_crossing
from openbell.core.risk import PROFIT_RULES, Action, Halt, RiskEvent, RiskLimits, Rule, day_pnl_breach, marked_pnl
from openbell.core.types import (
    ClientOrderId,
    Fill,
    Order,
    OrderIntent,
    OrderStatus,
    Purpose,
    Side,
    Symbol,
    client_order_id,
    is_ours,
)
from openbell.errors import OpenbellError, OrderRejected, TransientError
from openbell.notify import Notifier, kill_switch_message, monitor_message
from openbell.store import Store, ledger
from openbell.venues.broker import Broker
from openbell.venues.marketdata import MarketData

MINUTE = timedelta(minutes=1)
UNREACHABLE = (TransientError, OSError)  # the broker did not answer: worth asking again
_NO_LIQUIDATION = 24 * 60  # the stepper's liquidation minute when the monitor only trails
MONITOR_EXITS = frozenset({*EXIT_PURPOSE.values(), Purpose.KILL, Purpose.DAY_TARGET, Purpose.TIME})


@dataclass(frozen=True, slots=True)
class _Closing:
    """A position the monitor decided to close itself: why, and which rule it falls under."""

    crossed: ExitCode
    rule: Rule | None  # None: an exit rule (time exit, trailing stop), not a guard: no risk event
    why: str
    purpose: Purpose | None = None  # the sell's purpose when it is not the monitor's own exit (the kill switch)


class ExitMonitor:
    """The intraday exit monitor of one trading day; `tick(now)` once a minute from the open to the liquidation.

    Args:
        market: where the minute bars of the positions the monitor holds come from.
        policy: the target and stop percentages (`ExitSettings.policy()`).
        log: where the one line per event goes (the Prefect run logger in a flow).
        dry_run: decide and log, send no order and record no event.
        limits: the risk limits; their daily loss limit is the kill switch the monitor checks each tick.
        halt: a halt already in force for the day (the kill switch tripped in an earlier run): the
            monitor then only closes what is still held.
        notifier: where the kill switch and the fallbacks are told (none: nowhere).
        exit_inputs: each symbol's scan ATR(14) and ranker confidence, for exits in ATR multiples or by confidence.
        order_ttl: how long an entry may work before the monitor cancels what is left of it (None: no limit).
    """

    def __init__(
        self,
        store: Store,
        broker: Broker,
        market: MarketData,
        trade_date: date,
        policy: ExitPolicy,
        *,
        run_id: str | None = None,
        log: logging.Logger | logging.LoggerAdapter | None = None,
        dry_run: bool = False,
        limits: RiskLimits = RiskLimits(),
        halt: Halt | None = None,
        notifier: Notifier | None = None,
        exit_inputs: Mapping[str, tuple[Decimal | None, float | None]] | None = None,
        order_ttl: timedelta | None = None,
    ) -> None:
        self._store, self._broker, self._market, self._date = store, broker, market, trade_date
        self._open = calendar.session_open(trade_date)  # the day's open, fixed: read from the calendar once
        self._policy, self._run_id, self._dry_run = policy, run_id, dry_run
        self._log = log or logging.getLogger(__name__)
        self._mirror = ledger.BrokerMirror(store, broker, trade_date)
        self._held: dict[Symbol, HeldExit] = {}  # exits the monitor holds because the broker has no pair
        self._closing: dict[Symbol, _Closing] = {}  # decided, not yet sent (a cancel still pending, say)
        self._outage: Retry | None = None
        self._last_read: datetime | None = None  # the last tick that read the broker
        self._limits, self._halt, self._notifier = limits, halt, notifier
        self._starting_equity: Decimal | None = None  # the day's, for a loss limit in percent
        self._flat = False
        self._unreachable = False
        self._placed: list[Order] = []
        self._bars_read: tuple[datetime, set[Symbol], pd.DataFrame] | None = None  # this tick's read of the bars
        self._exit_inputs = dict(exit_inputs or {})
        self._order_ttl = order_ttl
        self._raised: dict[Symbol, Decimal] = {}  # stops the break-even raised: their pair is the break-even pair
        trails = policy.trail_pct is not None or policy.trail_atr is not None
        self._trails_itself = trails and not broker.pairs_trailing_stops  # the broker's pair holds the fixed stop
        self._pair_policy = replace(policy, trail_pct=None, trail_atr=None) if self._trails_itself else policy

    @property
    def halted(self) -> Halt | None:
        """Why the day's trading stopped (the kill switch, a flatten), or None."""
        return self._halt

    @property
    def held(self) -> dict[Symbol, HeldExit]:
        """The positions whose exits the monitor holds now."""
        return dict(self._held)

    def tick(self, now: datetime) -> None:
        """One pass: read the broker once, then close, protect or hold each filled entry's position."""
        book = self._read(now)
        if book is None:
            return
        self._unreachable = False  # set by the first broker call of this tick that gets no answer
        self._placed = []  # the orders this tick sent, recorded in one write when it ends
        try:
            self._act(now, *book)
        finally:
            ledger.record_orders(self._store, self._date, self._placed, self._run_id)

    def _act(self, now: datetime, orders: list[Order], fills: list[Fill]) -> None:
        """The tick once the broker was read: record what changed, then close, protect or hold each position."""
        self._mirror.sync(fills, orders)
        ours = {o.client_order_id: o for o in orders if is_ours(o.client_order_id, self._date)}
        ours |= self._cancel_stale_entries(now, ours)
        our_fills = [f for f in fills if is_ours(f.client_order_id, self._date)]
        self._flat = not any(o.is_open() for o in ours.values()) and not ledger.opened_quantities(our_fills)
        entries = {s: e for s, e in _filled_entries(ours).items() if not self._closed(s, ours)}
        missed, self._last_read = self._reconnect(now), now
        if self._halt is None:
            self._check_day_pnl(now, our_fills)
        if self._halt is not None:  # everything the system holds goes, and nothing is protected again
            purpose = Purpose.DAY_TARGET if self._halt.rule in PROFIT_RULES else Purpose.KILL
            for symbol in entries:
                self._closing[symbol] = _Closing(ExitCode.NONE, self._halt.rule, self._halt.reason, purpose)
            for symbol in sorted(entries):
                if not self._unreachable:
                    self._close(now, symbol, ours, fills)
            return
        trailing = set(entries) - set(self._closing) if self._trails_itself else set()
        bars = self._decide_closes(now, entries, ours, missed, self._breakeven_watch(entries, ours) | trailing)
        self._decide_trailing_stops(entries, {s: b for s, b in bars.items() if s in trailing})
        self._decide_time_exits(now, entries)
        closing = sorted(set(self._closing) & set(entries))
        for symbol in closing:
            if not self._unreachable:  # a broker that stopped answering is not asked again before the next tick
                self._close(now, symbol, ours, fills)
        for symbol in sorted(set(entries) - set(closing)):
            if self._unreachable:
                break
            if symbol in bars:
                self._raise_stop(now, entries[symbol], ours, bars[symbol])
            if not self._unreachable:
                self._protect(now, entries[symbol], ours)

    @property
    def flat(self) -> bool:
        """True once the day is over for the monitor: every entry done, nothing held, no order of the system working."""
        return self._flat

    def fills(self) -> list[Fill]:
        """The system's fills of the day, recorded (two broker reads)."""
        return self._mirror.sync()

    def _cancel_stale_entries(self, now: datetime, ours: dict[ClientOrderId, Order]) -> dict[ClientOrderId, Order]:
        """Cancel what is left of each entry still working that should stop: it has worked the order TTL, or the
        day's trading is halted. Returns those entries as the broker reports them after the cancel (a cancelled
        entry keeps what it filled, and is then protected, or closed under a halt, for it)."""
        if self._order_ttl is None and self._halt is None:
            return {}
        cancelled: dict[ClientOrderId, Order] = {}
        for entry in sorted(ours.values(), key=lambda o: o.client_order_id):
            if entry.intent.purpose is not Purpose.ENTRY or not entry.is_open():
                continue
            done = f"{entry.filled_qty} of {entry.intent.qty} filled"
            if self._halt is not None:
                why = f"{entry.intent.symbol}: its entry is still working ({done}) and trading is halted"
            elif self._order_ttl is not None and entry.past_ttl(now, self._order_ttl, self._open):
                ttl_s = self._order_ttl.total_seconds()
                why = f"{entry.intent.symbol}: its entry outlived the order TTL of {ttl_s:g} s with {done}"
            else:
                continue
            if self._dry_run:
                self._log.info("dry run: %s; would cancel the rest", why)
                continue
            try:
                order = self._broker.cancel(entry.client_order_id)
            except (OrderRejected, *UNREACHABLE) as failed:
                self._unreachable = self._unreachable or isinstance(failed, UNREACHABLE)
                self._log.warning("%s; could not cancel the rest at %s (%s): trying again next minute", why,
                                  f"{now:%H:%M}", failed)  # fmt: skip
                continue
            cancelled[order.client_order_id] = order
            self._placed.append(order)  # its new state is recorded with the tick's orders
            if order.is_open():  # asked again next minute until the broker confirms
                self._log.info("%s; waiting for the broker to cancel the rest at %s", why, f"{now:%H:%M}")
                continue
            kept = f"it keeps the {order.filled_qty} it got" if order.filled_qty else "nothing filled"
            self._log.warning("%s: the rest is cancelled at %s, %s", why, f"{now:%H:%M}", kept)
        return cancelled

    # --- reading the broker ------------------------------------------------------------------
    def _read(self, now: datetime) -> tuple[list[Order], list[Fill]] | None:
        """The day's orders and fills, or None while the broker is unreachable (asked again on the backoff)."""
        if self._outage is not None and not self._outage.is_due(now):
            return None
        try:
            return self._broker.day_orders(), self._broker.fills_since(None)
        except UNREACHABLE as failure:
            if self._outage is None:
                self._outage = Retry.first(now, OUTAGE_LONGEST_WAIT)
                message = f"the broker cannot be read ({failure}); its pairs keep working there, the monitor asks again"
                self._log.warning("broker outage at %s: %s at %s", f"{now:%H:%M}", message, f"{self._outage.due:%H:%M}")
                self._event(now, Rule.BROKER_OUTAGE, Action.FALLBACK, message)
            else:
                self._outage = self._outage.failed_again(now, OUTAGE_LONGEST_WAIT)
                self._log.debug("broker still unreachable at %s: %s", f"{now:%H:%M}", failure)
            return None

    def _reconnect(self, now: datetime) -> datetime | None:
        """After an outage: record the recovery; returns the last moment the broker was read before it."""
        if self._outage is None:
            return None
        outage, self._outage = self._outage, None
        message = f"the broker answers again after {_minutes(now - outage.since)} minutes"
        self._log.info("broker outage over at %s: %s; checking the bars it missed", f"{now:%H:%M}", message)
        self._event(now, Rule.BROKER_OUTAGE, Action.RECOVERED, message, observed=(now - outage.since).total_seconds())
        return self._last_read or outage.since

    # --- deciding ----------------------------------------------------------------------------
    def _closed(self, symbol: Symbol, ours: dict[ClientOrderId, Order]) -> bool:
        """True once the monitor has sold the position itself (in this run or an earlier one)."""
        return any(client_order_id(self._date, symbol, p) in ours for p in MONITOR_EXITS)

    def _breakeven_watch(self, entries: dict[Symbol, Order], ours: dict[ClientOrderId, Order]) -> set[Symbol]:
        """The positions whose stop the break-even may still raise (their bars are read each tick).

        A break-even pair already at the broker (placed by this run or an earlier one) is the position's pair.
        """
        if self._policy.breakeven_after_pct is None:
            return set()
        watch = set()
        for symbol in set(entries) - set(self._closing) - set(self._raised):
            raised = ours.get(client_order_id(self._date, symbol, Purpose.BE_STOP))
            if raised is not None and raised.intent.stop_price is not None:
                self._raised[symbol] = raised.intent.stop_price
            elif not any(h is not None and _filled(h) for h in self._halves(symbol, ours)):
                watch.add(symbol)
        return watch

    def _decide_closes(
        self,
        now: datetime,
        entries: dict[Symbol, Order],
        ours: dict[ClientOrderId, Order],
        missed: datetime | None,
        watched: set[Symbol],
    ) -> dict[Symbol, tuple[np.ndarray, ...]]:
        """Which positions the monitor closes itself: a level crossed on the bars it holds, or on bars an outage hid.

        After an outage, a position whose pair is still working at the broker (or was never placed)
        is checked on the bars from the last read before the outage on. The bars of the `watched`
        positions (the break-even, the trailing stop) are read in the same request and returned.
        """
        since = {s: h.since for s, h in self._held.items() if s in entries and s not in self._closing}
        if missed is not None:
            for symbol in set(entries) - set(since) - set(self._closing):
                if self._pair_working(symbol, ours) or not self._pair_placed(symbol, ours):
                    since[symbol] = missed
        bars = self._completed_bars(set(since) | watched, now)
        for symbol, first_minute in sorted(since.items()):
            if symbol not in bars:
                continue
            target, stop = _levels(self._pair(entries[symbol]))
            starts, open_, high, low = bars[symbol]
            after = starts >= _naive_minute(first_minute)
            crossed, index = first_crossing(open_[after], high[after], low[after], target, stop)
            if crossed is ExitCode.NONE:
                continue
            level, price = ("stop", stop) if crossed is ExitCode.STOP else ("target", target)
            bar = _hhmm(starts[after][index])
            if symbol in self._held:
                rule, why = Rule.PROTECTION, f"the monitor's own {level} {price} crossed on the {bar} bar"
            else:
                rule, why = Rule.BROKER_OUTAGE, f"the {level} {price} crossed on the {bar} bar, during the broker outage"
            self._closing[symbol] = _Closing(crossed, rule, why)
        return {s: b for s, b in bars.items() if s in watched}

    def _decide_trailing_stops(self, entries: dict[Symbol, Order], bars: dict[Symbol, tuple[np.ndarray, ...]]) -> None:
        """The trailing stop the broker cannot hold: each position's bars since the open through `core.exits.step`.

        A bar that crossed the trailed stop, above the stop of the broker's pair, closes the position;
        a target or a stop the broker's pair holds is left to it.
        """
        open_minute = _naive_minute(self._open)
        for symbol, (starts, open_, high, low) in sorted(bars.items()):
            entry = entries[symbol]
            atr, confidence = self._exit_inputs.get(symbol, (None, None))
            state = ExitState.opened(self._policy, _entry_price(entry), 0, _NO_LIQUIDATION, atr, confidence)
            state = replace(state, time_exit_minute=None)  # the time exit and the liquidation are decided apart
            at_broker = price_to_units(_levels(self._pair(entry))[1])
            after = starts >= open_minute
            minutes = ((starts[after] - starts[after].astype("datetime64[D]")) // np.timedelta64(1, "m")).astype(int)
            columns = (minutes, to_units(open_[after]), to_units(high[after]), to_units(low[after]))
            for bar in zip(*columns, strict=True):
                minute = int(bar[0])
                state, decision = step(state, ExitBar(*(int(v) for v in bar)))
                if decision.code is ExitCode.NONE:
                    continue
                if decision.code is ExitCode.STOP and decision.stop > at_broker:
                    stop, hhmm = units_to_price(decision.stop), f"{minute // 60:02d}:{minute % 60:02d}"
                    self._closing[symbol] = _Closing(
                        ExitCode.STOP, None, f"the trailing stop {stop} crossed on the {hhmm} bar"
                    )
                break

    def _decide_time_exits(self, now: datetime, entries: dict[Symbol, Order]) -> None:
        """The time exit: a position held `time_exit_min` minutes after the open (its entry) is sold at market."""
        minutes = self._policy.time_exit_min
        if minutes is None or now < self._open + timedelta(minutes=minutes):
            return
        for symbol in entries:
            if symbol not in self._closing:
                why = f"held {minutes} minutes since the open (the time exit)"
                self._closing[symbol] = _Closing(ExitCode.TIME, None, why, Purpose.TIME)

    def _protect(self, now: datetime, entry: Order, ours: dict[ClientOrderId, Order]) -> None:
        """Give a filled entry its protective pair, or ask again for a refused one when its retry is due."""
        symbol = entry.intent.symbol
        pair = self._pair(entry)
        if _accepted(ours.get(pair[0].client_order_id), ours.get(pair[1].client_order_id)):
            if symbol in self._held:
                self._recovered(now, symbol)
            return
        watch = self._held.get(symbol)
        if watch is not None and not watch.retry.is_due(now):
            return
        if self._dry_run:
            self._log.info("dry run: would protect %s with target %s and stop %s", symbol, pair[0].limit_price,
                           pair[1].stop_price)  # fmt: skip
            return
        try:
            placed = self._broker.submit_oco(*pair)
        except OrderRejected as refused:
            self._hold(now, symbol, pair, f"the broker refused its protective pair: {refused}")
        except UNREACHABLE as failed:
            self._unreachable = True
            self._hold(now, symbol, pair, f"placing its protective pair failed: {failed}")
        else:
            self._placed.extend(placed)  # recorded together at the end of the tick
            if symbol in self._held:
                self._recovered(now, symbol)

    def _raise_stop(
        self, now: datetime, entry: Order, ours: dict[ClientOrderId, Order], bars: tuple[np.ndarray, ...]
    ) -> None:
        """The break-even: once a completed bar's high reached its level, replace the pair with one whose stop is the entry.

        The pair is cancelled first; the replacement goes out (by `_protect`, this tick) once the broker
        confirms the cancel, and not at all when a half of the old pair filled meanwhile. A pair the
        monitor holds itself (the broker refused it) has its stop raised there, and is asked for again raised.
        """
        symbol, price = entry.intent.symbol, _entry_price(entry)
        starts, _, high, _ = bars
        high = high[starts >= _naive_minute(self._open)]  # the entry's bar on: market-on-open
        highest = units_to_price(int(to_units(high).max())) if len(high) else None
        atr, confidence = self._exit_inputs.get(symbol, (None, None))
        stop = breakeven_stop(exit_levels_for(self._policy, price, atr, confidence), price, highest)
        if stop is None:
            return
        why = f"a completed bar's high reached the break-even level ({highest}): the stop goes up to the entry {stop}"
        if self._dry_run:
            self._log.info("dry run: %s: %s; would replace its protective pair", symbol, why)
            return
        working = [h for h in self._halves(symbol, ours) if h is not None and h.is_open()]
        try:
            cancelled = [self._broker.cancel(h.client_order_id) for h in working]
        except (OrderRejected, *UNREACHABLE) as failed:
            self._unreachable = isinstance(failed, UNREACHABLE)
            self._log.warning("%s: could not cancel its pair to raise the stop at %s (%s); trying again next minute",
                              symbol, f"{now:%H:%M}", failed)  # fmt: skip
            return
        if any(_filled(o) for o in cancelled):
            self._log.info("%s: a half of its pair filled before the break-even could replace it", symbol)
            return
        if any(o.is_open() for o in cancelled):
            self._log.info("%s: waiting for the broker to cancel its pair before raising the stop", symbol)
            return
        self._raised[symbol] = stop
        self._log.info("break-even at %s: %s: %s", f"{now:%H:%M}", symbol, why)
        watch = self._held.get(symbol)
        if watch is not None:  # the monitor holds the exits: from this minute on, with the stop raised
            self._held[symbol] = HeldExit(symbol, watch.target, stop, _minute(now), watch.retry)

    def _check_day_pnl(self, now: datetime, fills: list[Fill]) -> None:
        """The kill switch and the day's profit target: the day's P&L, realised plus open positions at their
        last completed close, against the limits.

        Checked on every tick once a bar has completed, as the backtest checks it (`core.risk.day_limit_exits`).
        """
        if not self._limits.watches_day_pnl:
            return
        held = ledger.opened_quantities(fills)
        closes = self._last_closes(set(held), now)
        if closes is None:
            return  # no completed bar yet, or no bars: checked again next minute
        if self._starting_equity is None:
            in_pct = self._limits.daily_loss_pct is not None or self._limits.daily_profit_pct is not None
            self._starting_equity = self._day_start_equity(fills) if in_pct else Decimal(0)
        pnl = marked_pnl(fills, closes)
        breach = day_pnl_breach(pnl, self._starting_equity, self._limits)
        if breach is None:
            return
        rule, observed, limit, message = breach
        message = f"{message} at {now:%H:%M}: cancelling the system's orders, selling what it holds, no new order today"
        self._halt = Halt(rule, message)
        if rule in PROFIT_RULES:
            self._log.warning("day's profit target: %s", message)
        else:
            self._log.error("kill switch: %s", message)
        if not self._dry_run:
            event = RiskEvent(self._date, now, rule, Action.HALTED, message, None, observed, limit)
            ledger.record_risk_events(self._store, [event], self._run_id)
        if self._notifier is not None:
            self._notifier.notify(kill_switch_message(rule.value, observed, limit, sorted(held)))

    def _day_start_equity(self, fills: list[Fill]) -> Decimal:
        """The account's equity before the day's trades: its equity now less the day's P&L at cost."""
        return self._broker.account().equity - marked_pnl(fills, {})

    def _last_closes(self, symbols: set[Symbol], now: datetime) -> dict[Symbol, Decimal] | None:
        """Each symbol's last close among the minute bars complete by `now`; None before the first bar completes."""
        if now < self._open + MINUTE:
            return None
        if not symbols:
            return {}
        frame = self._completed_frame(symbols, now)
        if frame is None:
            return None
        last = frame.groupby("symbol")["close"].last()  # in $0.0001 units, as the paper broker and the backtest mark
        return {Symbol(s): units_to_price(u) for s, u in zip(last.index, to_units(last.to_numpy()), strict=True)}

    # --- acting ------------------------------------------------------------------------------
    def _hold(self, now: datetime, symbol: Symbol, pair: tuple[OrderIntent, OrderIntent], why: str) -> None:
        target, stop = _levels(pair)
        watch = self._held.get(symbol)
        if watch is not None:
            retry = watch.retry.failed_again(now)
            since = watch.since if watch.stop == stop else _minute(now)  # a raised stop counts from the bar it applies to
            self._held[symbol] = HeldExit(symbol, target, stop, since, retry)
            self._log.info("%s: still no protective pair at %s (%s); next try at %s", symbol, f"{now:%H:%M}", why,
                           f"{retry.due:%H:%M}")  # fmt: skip
            return
        retry = Retry.first(now)
        self._held[symbol] = HeldExit(symbol, target, stop, _minute(now), retry)
        message = (f"{symbol}: {why}; the monitor holds target {target} and stop {stop} itself "
                   f"and asks the broker again at {retry.due:%H:%M}")  # fmt: skip
        self._log.error("protection fallback: %s", message)
        self._event(now, Rule.PROTECTION, Action.FALLBACK, message, symbol)

    def _recovered(self, now: datetime, symbol: Symbol) -> None:
        watch = self._held.pop(symbol)
        message = (f"{symbol}: the broker accepted the protective pair after {watch.retry.failures} refusals; "
                   "the monitor's own exit stops")  # fmt: skip
        self._log.info("protection recovered: %s", message)
        self._event(now, Rule.PROTECTION, Action.RECOVERED, message, symbol, observed=watch.retry.failures)

    def _close(self, now: datetime, symbol: Symbol, ours: dict[ClientOrderId, Order], fills: list[Fill]) -> None:
        """Cancel the symbol's working exits, then sell what the system holds of it at market.

        The sell waits for a later tick while a cancel is unconfirmed, and when a half of the pair
        filled meanwhile (the fills are then read again).
        """
        closing = self._closing[symbol]
        held = ledger.opened_quantities(fills).get(symbol, 0)
        if held <= 0:
            del self._closing[symbol]  # the broker's pair closed it meanwhile
            return
        if self._dry_run:
            self._log.info("dry run: %s: %s; would sell %d at market", symbol, closing.why, held)
            del self._closing[symbol]
            return
        working = [o for o in ours.values() if o.intent.symbol == symbol and o.intent.side is Side.SELL and o.is_open()]
        try:
            cancelled = [self._broker.cancel(o.client_order_id) for o in working]
            if any(o.is_open() or o.filled_qty for o in cancelled):
                self._log.info("%s: waiting for the broker to cancel its exits before selling", symbol)
                return
            position = self._broker.positions().get(symbol)
            shares = min(held, position.qty if position is not None else 0)
            if shares <= 0:
                del self._closing[symbol]
                return
            if closing.purpose is not None:
                order = self._broker.submit(liquidation(self._date, symbol, shares, closing.purpose))
            else:
                order = self._broker.submit(monitor_exit(self._date, symbol, shares, closing.crossed))
        except (OrderRejected, *UNREACHABLE) as failed:
            self._unreachable = isinstance(failed, UNREACHABLE)
            self._log.warning("%s: could not close at %s (%s); trying again next minute", symbol, f"{now:%H:%M}", failed)
            return
        self._placed.append(order)
        del self._closing[symbol]
        self._held.pop(symbol, None)
        message = f"{symbol}: {closing.why}: sold {shares} at market ({order.client_order_id})"
        if closing.rule is None:  # an exit rule, not a guard: no risk event
            self._log.info("%s: %s", "time exit" if closing.purpose is Purpose.TIME else "trailing stop", message)
            return
        self._log.warning("monitor exit: %s", message)
        self._event(now, closing.rule, Action.FLATTENED, message, symbol, observed=shares)

    # --- helpers -----------------------------------------------------------------------------
    def _pair(self, entry: Order) -> tuple[OrderIntent, OrderIntent]:
        """The protective pair of a filled entry (its break-even replacement once the stop was raised); the monitor
        holds the same levels when the broker has none."""
        symbol = entry.intent.symbol
        atr, confidence = self._exit_inputs.get(symbol, (None, None))
        policy = self._pair_policy
        pair = protective_exit(self._date, symbol, entry.filled_qty, _entry_price(entry), policy, atr, confidence)
        return pair if symbol not in self._raised else breakeven_exit(self._date, pair, self._raised[symbol])

    def _halves(self, symbol: Symbol, ours: dict[ClientOrderId, Order]) -> tuple[Order | None, Order | None]:
        """The position's pair at the broker: the first one, or its break-even replacement once the stop was raised."""
        halves = (Purpose.BE_TARGET, Purpose.BE_STOP) if symbol in self._raised else (Purpose.TARGET, Purpose.STOP)
        target, stop = (ours.get(client_order_id(self._date, symbol, p)) for p in halves)
        return target, stop

    def _pair_working(self, symbol: Symbol, ours: dict[ClientOrderId, Order]) -> bool:
        return any(h is not None and h.is_open() for h in self._halves(symbol, ours))

    def _pair_placed(self, symbol: Symbol, ours: dict[ClientOrderId, Order]) -> bool:
        return _accepted(*self._halves(symbol, ours))

    def _completed_frame(self, symbols: set[Symbol], now: datetime) -> pd.DataFrame | None:
        """The minute bars of `symbols` complete by `now`, read once a tick: the kill switch's marks and the
        exits the monitor holds share one market-data request. None when the bars cannot be read."""
        if self._bars_read is not None and self._bars_read[0] == now and symbols <= self._bars_read[1]:
            frame = self._bars_read[2]
            return frame[frame["symbol"].isin(sorted(symbols))]
        try:
            frame = self._market.minute_bars(self._date, sorted(symbols))
        except (OpenbellError, OSError) as failed:
            self._log.warning("no minute bars for %s at %s (%s); checking again next minute", ", ".join(sorted(symbols)),
                              f"{now:%H:%M}", failed)  # fmt: skip
            return None
        frame = frame[frame["ts"].dt.tz_localize(None) + MINUTE <= _naive_minute(now, floor=False)]
        self._bars_read = (now, set(symbols), frame)
        return frame

    def _completed_bars(self, symbols: set[Symbol], now: datetime) -> dict[Symbol, tuple[np.ndarray, ...]]:
        """(start, open, high, low) of each symbol's minute bars complete by `now` (naive New York starts)."""
        frame = self._completed_frame(symbols, now) if symbols else None
        if frame is None:
            return {}
        return {
            Symbol(s): (
                group["ts"].dt.tz_localize(None).to_numpy(),
                group["open"].to_numpy(),
                group["high"].to_numpy(),
                group["low"].to_numpy(),
            )
            for s, group in frame.groupby("symbol", sort=True)
        }

    def _event(self, now: datetime, rule: Rule, action: Action, message: str, symbol: str | None = None,
               observed: float | None = None) -> None:  # fmt: skip
        if not self._dry_run:
            event = RiskEvent(self._date, now, rule, action, message, symbol, observed)
            ledger.record_risk_events(self._store, [event], self._run_id)
        if self._notifier is not None and action is Action.FALLBACK:  # the user should know the monitor holds it
            self._notifier.notify(monitor_message(message, fallback="the monitor holds the exits itself", symbol=symbol))


def _filled_entries(ours: dict[ClientOrderId, Order]) -> dict[Symbol, Order]:
    """Entries that are done and hold shares, by symbol (a partial fill that then expired counts for what it got)."""
    return {
        o.intent.symbol: o
        for o in ours.values()
        if o.intent.purpose is Purpose.ENTRY and o.is_done() and o.filled_qty > 0 and o.avg_fill_price is not None
    }


def _entry_price(entry: Order) -> Decimal:
    """A filled entry's average fill price (the monitor acts only on `_filled_entries`, which all have one)."""
    assert entry.avg_fill_price is not None, f"{entry.client_order_id}: an entry without a fill price"
    return entry.avg_fill_price


def _levels(pair: tuple[OrderIntent, OrderIntent]) -> tuple[Decimal, Decimal]:
    """A protective pair's target and stop prices (`core.orders.protective_exit` always sets both)."""
    target, stop = pair[0].limit_price, pair[1].stop_price
    assert target is not None and stop is not None, f"{pair[0].symbol}: a protective pair without its levels"
    return target, stop


def _accepted(target: Order | None, stop: Order | None) -> bool:
    """Both halves of the pair are at the broker and neither was rejected (working, filled or cancelled)."""
    return all(h is not None and h.status is not OrderStatus.REJECTED for h in (target, stop))


def _filled(order: Order) -> bool:
    """True once any share of the order filled (a cancelled half that filled in part counts)."""
    return order.filled_qty > 0 or order.status is OrderStatus.FILLED


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _minutes(span: timedelta) -> int:
    return max(1, round(span.total_seconds() / 60))


def _naive_minute(moment: datetime, *, floor: bool = True) -> np.datetime64:
    """`moment` as a naive New York numpy time, cut to its minute (the bars' own `ts` without the zone)."""
    local = moment.astimezone(calendar.NEW_YORK).replace(tzinfo=None)
    return np.datetime64(local.replace(second=0, microsecond=0) if floor else local, "us")


def _hhmm(start: np.datetime64) -> str:
    return str(start.astype("datetime64[m]"))[-5:]
