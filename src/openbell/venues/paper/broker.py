"""The paper broker: simulated executions on replayed minute bars, with books kept in DuckDB.

Fill model (exact; the replay engine in core.backtest implements the same rules in bulk):
- A market-on-open order fills at the open of the session's 09:30 bar (the opening auction
  print) when the clock reaches the open; with no 09:30 bar it expires unfilled.
- Other orders take part in every bar that starts at or after they were submitted. A bar is
  simulated once it is complete (the clock is past its minute). Market orders fill at the bar's
  open. Sell limit (target) and sell stop orders, alone or as a one-cancels-other pair, fill by
  `core.exits.bar_exits`: gap through at the open, else the stop before the target.
- A trailing stop fills the same way at its level for the bar: the trail below the highest price
  since it was placed (the open of its first bar, then the highs of its completed bars: within a bar
  the order of high and low is unknown), never below its `stop_price`, tick-rounded
  (`core.exits.trail_stop`); so it follows `core.exits.step` and the replay engine.
- At the session's end, market orders still waiting fill at the symbol's last close and day
  orders expire.
- Commission per order max($1.00, $0.005 x shares); market fills take the slippage in bps.
- With a participation cap (`FillCosts.max_participation_pct`, off by default) an order fills at most
  that percent of a bar's volume (rounded down) per bar, the opening auction included, and is
  partially filled until the rest fills in the following bars at their prices: a market order at
  their opens, a target at its limit (or a better open), a stop that has begun to fill at their opens
  (it was triggered). One execution per bar, each a fill of its own; the commission is still the
  order's, spread over its fills. The first fill of one half of a one-cancels-other pair cancels the
  other half (IB's ocaType 1). At the session's end a market order's rest fills at the last close.

State lives in the paper_* tables, so every flow (each its own process when deployed) sees the
same books, and a crash loses nothing that was reported: re-simulating bars is deterministic.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd

from openbell import calendar
from openbell.clock import Clock
from openbell.core.backtest import FillCosts
from openbell.core.exits import ExitCode, bar_exits, trail_stop
from openbell.core.prices import price_to_units, to_units, units_to_price, with_slippage
from openbell.core.types import (
    MOO_CUTOFF,
    NEW_YORK,
    PAPER_STARTING_CASH,
    ClientOrderId,
    Fill,
    Order,
    OrderIntent,
    OrderStatus,
    OrderType,
    Position,
    Purpose,
    Side,
    Symbol,
    TimeInForce,
    working_status,
)
from openbell.errors import OrderRejected
from openbell.store import Store
from openbell.venues.broker import Account, MooWindow, check_market_on_open, required
from openbell.venues.marketdata import MarketData

_STOP_TYPES = frozenset({OrderType.STOP, OrderType.TRAILING_STOP})
_NO_LEVEL = np.int64(2**62)  # a target no bar reaches
_UNIT = Decimal("0.0001")  # an average fill price is kept to a hundredth of a cent


@dataclass(slots=True)
class _SymbolBars:
    minute_start: np.ndarray  # seconds since midnight of each bar's start
    open: np.ndarray  # int64 units
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray  # int64 shares


class PaperBroker:
    """A simulated broker for one trading day. Every call first simulates the market up to `clock.now()`."""

    name = "paper"
    pairs_trailing_stops = True  # a trailing-stop order next to the target

    def __init__(
        self,
        store: Store,
        market: MarketData | None,
        clock: Clock,
        trade_date: date,
        costs: FillCosts = FillCosts(),
        starting_cash: Decimal = PAPER_STARTING_CASH,
    ) -> None:
        calendar.require_session(trade_date)
        self._store = store
        self._market = market
        self._clock = clock
        self._date = trade_date
        self._costs = costs
        self._starting_cash = starting_cash
        self._midnight = datetime.combine(trade_date, time(0), tzinfo=NEW_YORK)
        self._open_s = self._seconds(calendar.session_open(trade_date))
        self._close_s = self._seconds(calendar.session_close(trade_date))
        self._bars: dict[Symbol, _SymbolBars] = {}
        self._orders: dict[ClientOrderId, Order] = {}
        self._working: dict[Symbol, dict[ClientOrderId, Order]] = {}  # open orders by symbol, for the bar loop
        self._unsaved_orders: dict[ClientOrderId, Order] = {}
        self._unsaved_fills: list[Fill] = []
        self._fills: list[Fill] = []
        self._fill_counts: dict[ClientOrderId, int] = {}  # fills per order: the next fill's id
        self._synced_s = -1.0
        self._prior_close: dict[Symbol, Decimal] = {}
        self._other_days_cash: Decimal | None = None
        self._load()

    # --- the Broker protocol ---------------------------------------------------------------
    def moo_window(self, day: date) -> MooWindow:
        """From the previous session's close to 09:28 New York time."""
        opens = calendar.session_close(calendar.previous_session(day))
        return MooWindow(opens, datetime.combine(day, MOO_CUTOFF, tzinfo=NEW_YORK))

    def submit(self, intent: OrderIntent) -> Order:
        self._sync()
        existing = self._orders.get(intent.client_order_id)
        if existing is not None:
            if existing.intent != intent:
                raise OrderRejected(intent.client_order_id, "client order id already used for a different order")
            return existing
        now = self._clock.now()
        self._check_acceptable(intent, now)
        order = Order(
            intent=intent, status=OrderStatus.NEW, broker_order_id=_broker_id(intent.client_order_id), submitted_at=now
        )
        self._put(order)
        self._bars_for(intent.symbol)
        self._save_orders([order])
        return order

    def submit_oco(self, target: OrderIntent, stop: OrderIntent) -> tuple[Order, Order]:
        if not target.oco_group or target.oco_group != stop.oco_group:
            raise OrderRejected(target.client_order_id, "a one-cancels-other pair needs one shared oco_group")
        return self.submit(target), self.submit(stop)

    def cancel(self, client_order_id: ClientOrderId) -> Order:
        self._sync()
        order = self._orders.get(client_order_id)
        if order is None:
            raise OrderRejected(client_order_id, "no such order")
        if order.is_done():
            return order
        cancelled = self._finish(order, OrderStatus.CANCELLED, "cancelled by request")
        self._save_orders([cancelled])
        return cancelled

    def order(self, client_order_id: ClientOrderId) -> Order | None:
        self._sync()
        return self._orders.get(client_order_id)

    def open_orders(self) -> list[Order]:
        self._sync()
        return [o for book in self._working.values() for o in book.values()]

    def day_orders(self) -> list[Order]:
        """Every order of the day, in the order they were sent."""
        self._sync()
        return list(self._orders.values())

    def fills_since(self, since: datetime | None = None) -> list[Fill]:
        self._sync()
        return [f for f in self._fills if since is None or f.ts >= since]

    def positions(self) -> dict[Symbol, Position]:
        """Net positions at average cost: holdings from before the system traded, then every fill in time order."""
        self._sync()
        self._flush()  # fills of this batch are written before they are read back
        holdings = self._store.query("SELECT symbol, qty, avg_price FROM paper_holdings")
        fills = self._store.query("SELECT symbol, side, qty, price FROM paper_fills ORDER BY ts, fill_id")
        book: dict[str, tuple[int, Decimal]] = {}  # symbol -> (shares, total cost)
        for symbol, qty, price in holdings:
            book[symbol] = (int(qty), Decimal(qty) * Decimal(price))
        for symbol, side, qty, price in fills:
            shares, cost = book.get(symbol, (0, Decimal(0)))
            if side == Side.BUY.value:
                shares, cost = shares + qty, cost + qty * Decimal(price)
            else:
                average = cost / shares if shares else Decimal(0)
                shares, cost = shares - qty, cost - qty * average
            book[symbol] = (shares, cost if shares else Decimal(0))
        return {
            Symbol(s): Position(Symbol(s), q, (c / q).quantize(Decimal("0.0001"))) for s, (q, c) in sorted(book.items()) if q
        }

    def account(self) -> Account:
        """Cash from the starting cash and every fill; equity adds the positions at cost."""
        self._sync()
        cash = self._cash()
        equity = cash + sum((p.qty * p.avg_price for p in self.positions().values()), Decimal(0))
        return Account(cash=cash, equity=equity, buying_power=max(cash, Decimal(0)), paper=True)

    def close(self) -> None:
        self._sync()
        self._store.before_commit(self._flush)

    # --- simulation ------------------------------------------------------------------------
    def _sync(self) -> None:
        """Simulate every event between the last sync and now, in time order."""
        now_s = self._seconds(self._clock.now())
        if now_s <= self._synced_s:
            return
        changed: list[Order] = []
        new_fills: list[Fill] = []
        if self._synced_s < self._open_s <= now_s:
            self._opening_auction(changed, new_fills)
        for symbol in sorted(self._working):
            self._simulate_bars(symbol, now_s, changed, new_fills)
        if self._synced_s < self._close_s + 60 <= now_s:
            self._session_end(changed, new_fills)
        self._synced_s = now_s
        if changed:
            self._save_orders(changed, new_fills)

    def _opening_auction(self, changed: list[Order], new_fills: list[Fill]) -> None:
        for order in [o for book in self._working.values() for o in book.values() if o.intent.tif is TimeInForce.OPG]:
            bars = self._bars_for(order.intent.symbol)
            if len(bars.minute_start) and bars.minute_start[0] == self._open_s:
                shares = _fillable(order, self._share_cap(int(bars.volume[0])))
                if shares:  # none under the cap: the order waits for the following bars
                    changed.append(self._fill(order, int(bars.open[0]), self._open_s, new_fills, market=True, qty=shares))
            else:
                changed.append(self._finish(order, OrderStatus.EXPIRED, "no opening print: market-on-open order unfilled"))

    def _simulate_bars(self, symbol: Symbol, now_s: float, changed: list[Order], new_fills: list[Fill]) -> None:
        bars = self._bars_for(symbol)
        bar_ends = bars.minute_start + 60  # a bar is simulated once it is complete
        first, last = np.searchsorted(bar_ends, [self._synced_s, now_s], side="right")
        for i in range(first, last):
            working = [o for o in self._working.get(symbol, {}).values() if self._works_in(o, bars.minute_start[i])]
            if not working and symbol not in self._working:
                break
            share_cap = self._share_cap(int(bars.volume[i]))
            at_market: list[Order] = []
            exits: list[Order] = []
            for order in working:
                (at_market if _at_market(order) else exits).append(order)
            for order in at_market:
                if shares := _fillable(order, share_cap):
                    changed.append(
                        self._fill(order, int(bars.open[i]), bars.minute_start[i], new_fills, market=True, qty=shares)
                    )
            for group in _oco_groups(exits):
                target = next((o for o in group if o.intent.order_type is OrderType.LIMIT), None)
                stop = next((o for o in group if o.intent.order_type in _STOP_TYPES), None)
                code, price = bar_exits(
                    bars.open[i],
                    bars.high[i],
                    bars.low[i],
                    price_to_units(required(target.intent.limit_price, "limit_price")) if target else _NO_LEVEL,
                    self._stop_level(stop, bars, i) if stop else np.int64(0),
                )
                if code == ExitCode.NONE:
                    continue
                winner, loser = (target, stop) if code == ExitCode.TARGET else (stop, target)
                if winner is None:  # bar_exits reports only a level that was given
                    continue
                shares = _fillable(winner, share_cap)
                if not shares:
                    continue  # nothing executed: the pair keeps working
                changed.append(
                    self._fill(winner, int(price), bars.minute_start[i], new_fills, market=code == ExitCode.STOP, qty=shares)
                )
                if loser is not None:
                    changed.append(
                        self._finish(loser, OrderStatus.CANCELLED, f"one-cancels-other: {winner.client_order_id} filled")
                    )

    def _stop_level(self, stop: Order, bars: _SymbolBars, i: int) -> int:
        """The stop order's level on bar i: its stop price, or a trailing stop's level from the bars before i."""
        intent = stop.intent
        floor = price_to_units(intent.stop_price) if intent.stop_price is not None else 0
        if intent.order_type is not OrderType.TRAILING_STOP:
            return floor
        first = int(np.searchsorted(bars.minute_start, self._seconds(stop.submitted_at), side="left"))
        highest = max(int(bars.open[first]), int(bars.high[first:i].max(initial=0)))
        trailed = required(trail_stop(units_to_price(highest), intent.trail_percent, intent.trail_amount), "trail")
        return max(floor, price_to_units(trailed))

    def _session_end(self, changed: list[Order], new_fills: list[Fill]) -> None:
        for order in [o for book in self._working.values() for o in book.values()]:
            bars = self._bars_for(order.intent.symbol)
            if _at_market(order) and len(bars.close):  # the rest, uncapped: the closing print
                changed.append(self._fill(order, int(bars.close[-1]), self._close_s, new_fills, market=True))
            else:
                changed.append(self._finish(order, OrderStatus.EXPIRED, "day order expired at the close"))

    def _fill(
        self, order: Order, price_units: int, at_s: float, new_fills: list[Fill], *, market: bool, qty: int | None = None
    ) -> Order:
        """Execute `qty` shares of the order (all it has left when None) at the price: one fill."""
        intent, before = order.intent, order.filled_qty
        qty = intent.qty - before if qty is None else qty
        slippage = self._costs.slippage_bps if market else Decimal(0)
        price = with_slippage(units_to_price(price_units), intent.side, slippage)  # also rounds to the tick
        count = self._fill_counts.get(intent.client_order_id, 0) + 1
        self._fill_counts[intent.client_order_id] = count
        filled_qty = before + qty
        fill = Fill(
            fill_id=f"{order.broker_order_id}-{count}",
            client_order_id=intent.client_order_id,
            symbol=intent.symbol,
            side=intent.side,
            qty=qty,
            price=price,
            commission=self._costs.commission(filled_qty) - self._costs.commission(before),  # the order's, in parts
            ts=self._at(at_s),
        )
        self._fills.append(fill)
        new_fills.append(fill)
        average = price
        if before:
            earlier = required(order.avg_fill_price, "avg_fill_price")
            average = ((earlier * before + price * qty) / filled_qty).quantize(_UNIT)
        status = OrderStatus.FILLED if filled_qty >= intent.qty else working_status(filled_qty)
        filled = replace(order, status=status, filled_qty=filled_qty, avg_fill_price=average)
        self._put(filled)
        return filled

    def _share_cap(self, volume: int) -> int | None:
        """The most shares an order can fill in a bar of `volume` under the participation cap; None without a cap."""
        cap = self._costs.max_participation_pct
        return None if cap is None else int(volume * cap / 100)

    def _works_in(self, order: Order, bar_start: float) -> bool:
        """True when the order takes part in the bar starting at `bar_start`.

        Orders work from the bar they were sent in; a market-on-open order from the bar after the
        opening one, for what the auction left under the participation cap.
        """
        if order.intent.tif is TimeInForce.OPG:
            return bar_start > self._open_s
        return self._seconds(order.submitted_at) <= bar_start

    def _finish(self, order: Order, status: OrderStatus, reason: str) -> Order:
        done = replace(order, status=status, reason=reason)
        self._put(done)
        return done

    def _put(self, order: Order) -> None:
        symbol, order_id = order.intent.symbol, order.client_order_id
        self._orders[order_id] = order
        book = self._working.setdefault(symbol, {})
        if order.is_open():
            book[order_id] = order
        else:
            book.pop(order_id, None)
        if not book:
            del self._working[symbol]

    def _check_acceptable(self, intent: OrderIntent, now: datetime) -> None:
        if intent.tif is TimeInForce.OPG:
            check_market_on_open(intent, self.moo_window(self._date), now)
        elif now >= self._at(self._close_s):
            raise OrderRejected(intent.client_order_id, "the session has closed")
        if intent.side is Side.BUY and intent.order_type is not OrderType.MARKET:
            raise OrderRejected(intent.client_order_id, "the paper broker takes buy orders as market or market-on-open only")
        if intent.side is Side.BUY:
            self._check_buying_power(intent)

    def _check_buying_power(self, intent: OrderIntent) -> None:
        """Refuse a buy that the cash left after the working buys cannot pay for, priced as a broker prices it.

        A buy is priced at the symbol's last trade before now (today's last completed bar, else the
        previous session's close), as Alpaca prices a market order against buying power.
        """
        working = [o for book in self._working.values() for o in book.values() if o.intent.side is Side.BUY]
        committed = sum(((o.intent.qty - o.filled_qty) * self._last_price(o.intent.symbol) for o in working), Decimal(0))
        needed = intent.qty * self._last_price(intent.symbol)
        available = max(self._cash(), Decimal(0)) - committed
        if needed > available:
            raise OrderRejected(
                intent.client_order_id,
                f"insufficient buying power: {intent.qty} {intent.symbol} needs about ${needed:,.2f}, "
                f"${max(available, Decimal(0)):,.2f} available",
            )

    def _cash(self) -> Decimal:
        """Cash now, from the books in memory: the other days' fills are read once, today's are at hand."""
        if self._other_days_cash is None:
            ((moved,),) = self._store.query(
                "SELECT coalesce(sum(CASE side WHEN 'sell' THEN qty * price ELSE -qty * price END - commission), 0) "
                "FROM paper_fills WHERE trade_date <> ?",
                [self._date],
            )
            self._other_days_cash = Decimal(moved)
        today = sum(((f.qty if f.side is Side.SELL else -f.qty) * f.price - f.commission for f in self._fills), Decimal(0))
        return self._starting_cash + self._other_days_cash + today

    def _last_price(self, symbol: Symbol) -> Decimal:
        bars = self._bars_for(symbol)
        done = np.flatnonzero(bars.minute_start + 60 <= self._seconds(self._clock.now()))
        if len(done):
            return units_to_price(int(bars.close[done[-1]]))
        if symbol not in self._prior_close:
            prior = calendar.previous_session(self._date)
            daily = self._market_data().daily_bars(prior, prior, [symbol])
            self._prior_close[symbol] = Decimal(str(daily["close"].iloc[-1])) if len(daily) else Decimal(0)
        return self._prior_close[symbol]

    # --- bars and persistence --------------------------------------------------------------
    def _market_data(self) -> MarketData:
        if self._market is None:
            raise RuntimeError("this paper broker was opened to read its books only: it has no market data to price by")
        return self._market

    def _bars_for(self, symbol: Symbol) -> _SymbolBars:
        if symbol not in self._bars:
            frame = self._market_data().minute_bars(self._date, [symbol])
            minutes = frame["ts"].dt.hour.to_numpy() * 3600 + frame["ts"].dt.minute.to_numpy() * 60
            self._bars[symbol] = _SymbolBars(
                minute_start=minutes.astype(np.float64),
                open=to_units(frame["open"].to_numpy()),
                high=to_units(frame["high"].to_numpy()),
                low=to_units(frame["low"].to_numpy()),
                close=to_units(frame["close"].to_numpy()),
                volume=frame["volume"].to_numpy().astype(np.int64),
            )
        return self._bars[symbol]

    def _load(self) -> None:
        with self._store.snapshot():  # the three reads see the same books
            self._read_books()

    def _read_books(self) -> None:
        orders = self._store.query_df(
            "SELECT * FROM paper_orders WHERE trade_date = ? ORDER BY submitted_at, client_order_id", [self._date]
        )
        trails = self._store.query(
            "SELECT client_order_id, trail_percent, trail_amount FROM paper_trailing_stops WHERE trade_date = ?",
            [self._date],
        )
        by_order = {order_id: (percent, amount) for order_id, percent, amount in trails}
        for row in orders.itertuples(index=False):
            self._put(_order_from_row(row, by_order))
        fills = self._store.query_df("SELECT * FROM paper_fills WHERE trade_date = ? ORDER BY ts, fill_id", [self._date])
        self._fills = [_fill_from_row(row) for row in fills.itertuples(index=False)]
        for fill in self._fills:
            self._fill_counts[fill.client_order_id] = self._fill_counts.get(fill.client_order_id, 0) + 1
        synced = self._store.query("SELECT synced_until FROM paper_clock WHERE trade_date = ?", [self._date])
        if synced:
            self._synced_s = self._seconds(synced[0][0])

    def _save_orders(self, orders: list[Order], fills: Sequence[Fill] = ()) -> None:
        """Queue changed orders and new fills; they are written at the end of the store's batch (or now)."""
        self._unsaved_orders.update({o.client_order_id: o for o in orders})
        self._unsaved_fills.extend(fills)
        self._store.before_commit(self._flush)

    def _flush(self) -> None:
        orders, fills = list(self._unsaved_orders.values()), self._unsaved_fills
        self._unsaved_orders, self._unsaved_fills = {}, []
        if orders:
            self._store.upsert("paper_orders", [_order_row(o, self._date) for o in orders])
            trailing = [o.intent for o in orders if o.intent.order_type is OrderType.TRAILING_STOP]
            if trailing:
                self._store.upsert("paper_trailing_stops", [_trail_row(i, self._date) for i in trailing])
        if fills:
            self._store.upsert("paper_fills", [_fill_row(f, self._date) for f in fills])
        self._store.upsert("paper_clock", [{"trade_date": self._date, "synced_until": self._at(max(self._synced_s, 0))}])

    def _seconds(self, moment: datetime) -> float:
        return (moment - self._midnight).total_seconds()

    def _at(self, seconds: float) -> datetime:
        return self._midnight + timedelta(seconds=float(seconds))


def _fillable(order: Order, share_cap: int | None) -> int:
    """The shares the order can fill in a bar: what it has left, at most the bar's `share_cap` (None: no cap)."""
    left = order.intent.qty - order.filled_qty
    return left if share_cap is None else min(left, share_cap)


def _at_market(order: Order) -> bool:
    """True for an order that fills at the next price: a market order, or a stop that has begun to fill (triggered)."""
    return order.intent.order_type is OrderType.MARKET or (order.intent.order_type in _STOP_TYPES and order.filled_qty > 0)


def _broker_id(client_order_id: str) -> str:
    return "paper-" + hashlib.sha1(client_order_id.encode()).hexdigest()[:12]


def _fill_row(fill: Fill, trade_date: date) -> dict:
    return {
        "fill_id": fill.fill_id, "client_order_id": fill.client_order_id,
        "broker_order_id": _broker_id(fill.client_order_id), "trade_date": trade_date, "symbol": fill.symbol,
        "side": fill.side.value, "qty": fill.qty, "price": fill.price, "commission": fill.commission, "ts": fill.ts,
    }  # fmt: skip


def _oco_groups(orders: list[Order]) -> list[list[Order]]:
    groups: dict[str, list[Order]] = {}
    for order in orders:
        groups.setdefault(order.intent.oco_group or order.client_order_id, []).append(order)
    return list(groups.values())


def _order_row(order: Order, trade_date: date) -> dict:
    i = order.intent
    return {
        "client_order_id": i.client_order_id, "broker_order_id": order.broker_order_id, "trade_date": trade_date,
        "symbol": i.symbol, "side": i.side.value, "order_type": i.order_type.value, "tif": i.tif.value,
        "purpose": i.purpose.value, "qty": i.qty, "limit_price": i.limit_price, "stop_price": i.stop_price,
        "oco_group": i.oco_group, "status": order.status.value, "submitted_at": order.submitted_at,
        "updated_at": order.submitted_at, "filled_qty": order.filled_qty, "avg_fill_price": order.avg_fill_price,
        "reason": order.reason,
    }  # fmt: skip


def _trail_row(intent: OrderIntent, trade_date: date) -> dict:
    return {
        "client_order_id": intent.client_order_id, "trade_date": trade_date,
        "trail_percent": intent.trail_percent, "trail_amount": intent.trail_amount,
    }  # fmt: skip


def _dec(value) -> Decimal | None:
    return None if value is None or pd.isna(value) else Decimal(str(value))


def _order_from_row(row, trails: dict[str, tuple]) -> Order:
    trail = trails.get(row.client_order_id)  # (trail_percent, trail_amount) of a trailing stop
    intent = OrderIntent(
        client_order_id=ClientOrderId(row.client_order_id),
        symbol=Symbol(row.symbol),
        side=Side(row.side),
        qty=int(row.qty),
        order_type=OrderType(row.order_type),
        purpose=Purpose(row.purpose),
        tif=TimeInForce(row.tif),
        limit_price=_dec(row.limit_price),
        stop_price=_dec(row.stop_price),
        oco_group=None if pd.isna(row.oco_group) else row.oco_group,
        trail_percent=_dec(trail[0]) if trail else None,
        trail_amount=_dec(trail[1]) if trail else None,
    )
    return Order(
        intent=intent,
        status=OrderStatus(row.status),
        broker_order_id=row.broker_order_id,
        submitted_at=row.submitted_at.to_pydatetime().astimezone(NEW_YORK),
        filled_qty=int(row.filled_qty or 0),
        avg_fill_price=_dec(row.avg_fill_price),
        reason=None if pd.isna(row.reason) else row.reason,
    )


def _fill_from_row(row) -> Fill:
    return Fill(
        fill_id=row.fill_id,
        client_order_id=ClientOrderId(row.client_order_id),
        symbol=Symbol(row.symbol),
        side=Side(row.side),
        qty=int(row.qty),
        price=required(_dec(row.price), "price"),
        commission=required(_dec(row.commission), "commission"),
        ts=row.ts.to_pydatetime().astimezone(NEW_YORK),
    )
