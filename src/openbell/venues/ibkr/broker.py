"""The Interactive Brokers broker: the Broker protocol over ib_async, through an `IbSession`.

The flows call a broker synchronously, from threads with no event loop; ib_async is asyncio. The adapter's
`IbSession` runs ib_async on an event loop of its own and hands every call to it (see `session`).

Idempotency: our client order id travels as the IB `orderRef`. Before placing an order the adapter looks
for an order or an execution with that orderRef among what TWS reported (open orders of every client,
completed orders and the day's executions, synchronised at every connect). After an error, a timeout or
a lost connection during a submit it asks TWS again before deciding, so a retry never makes a second order.

Restart: a new adapter with the same client id rebuilds open, filled and cancelled orders from TWS and
matches them to our ids by orderRef. Orders without our `ob-YYYYMMDD-` orderRef are never adopted,
changed or cancelled; `positions()` reports the account as IB does, holdings the system did not open
included (the flows sell only what their own fills bought).

Connection: connect with a timeout, the configured client id and retries with backoff (the session's). When
the socket drops, reconnect in the background with backoff, re-qualify contracts and resynchronise; a call made
meanwhile waits for it up to the request timeout, then raises TransientError. So does a request the drop
cuts short, or one TWS leaves unanswered on an open socket: never ib_async's ConnectionError, never an old book.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from datetime import date, datetime
from time import monotonic
from typing import Any, TypeVar

from ib_async import IB, Contract, Trade
from ib_async import Fill as IbFill

from openbell import calendar
from openbell.clock import Clock
from openbell.config import Settings
from openbell.core.types import (
    MOO_CUTOFF,
    NEW_YORK,
    ClientOrderId,
    Fill,
    Order,
    OrderIntent,
    OrderStatus,
    Position,
    Symbol,
    TimeInForce,
    our_prefix,
)
from openbell.errors import ConfigError, OpenbellError, OrderRejected, TransientError
from openbell.venues.broker import Account, MooWindow, check_market_on_open
from openbell.venues.ibkr import mapping
from openbell.venues.ibkr.session import IbSession

log = logging.getLogger(__name__)

_POLL_S = 0.01
T = TypeVar("T")


class IbkrBroker:
    """Interactive Brokers through TWS or IB Gateway, for one trading day.

    Args:
        settings: broker.ibkr gives host, port, client id, account and connect timeout; trading_mode
            decides which ports are allowed.
        clock: stamps `submitted_at` and decides the market-on-open window.
        trade_date: the session traded; only orders with ids `ob-<trade_date>-...` are ours.
        request_timeout_s: longest wait for TWS to answer a request, or to come back after a disconnect.
        ack_timeout_s: longest wait for TWS to confirm a new order or a cancel.
        reconnect_delays_s: backoff between connection attempts (the last one repeats).
        connect_attempts: attempts when the adapter starts, before it gives up with TransientError.
        client_id_wait_s: how long a start keeps retrying while TWS says the client id is in use (an earlier
            run with the same id, still closing) before it gives up with ConfigError.
        commission_grace_s: a fill is reported once its commission is known, or after this long without.

    Raises:
        ConfigError: live ports without confirmation, the client id in use, a live account while trading
            paper, or an account the login does not manage.
        TransientError: TWS/IB Gateway could not be reached.
    """

    name = "ibkr"
    pairs_trailing_stops = True  # a TRAIL order in the OCA group

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        trade_date: date,
        *,
        request_timeout_s: float = 15.0,
        ack_timeout_s: float = 5.0,
        reconnect_delays_s: Sequence[float] = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0),
        connect_attempts: int = 3,
        client_id_wait_s: float = 30.0,
        commission_grace_s: float = 10.0,
    ) -> None:
        ibkr = settings.broker.ibkr
        self._session = session = IbSession(
            settings, ibkr.client_id, owner="IbkrBroker", request_timeout_s=request_timeout_s,
            reconnect_delays_s=reconnect_delays_s, after_drop="reconnecting in the background",
            thread_name=f"ibkr-client-{ibkr.client_id}",
        )  # fmt: skip
        self._loop = session.loop
        self._wanted_account = ibkr.account or ""
        self._paper = settings.trading_mode == "paper"
        self._clock, self._date = clock, trade_date
        self._prefix = our_prefix(trade_date)
        self._request_timeout, self._ack_timeout = request_timeout_s, ack_timeout_s
        self._commission_grace = commission_grace_s
        self._client_id_wait = client_id_wait_s
        self._call_budget = 6 * request_timeout_s + 2 * session.connect_timeout * len(session.ports)

        # Everything below is touched only by the event loop's thread.
        self._ib: IB = session.client()
        self._ib.disconnectedEvent += self._on_disconnected
        self._ib.errorEvent += self._on_error
        self._account = ""
        self._intents: dict[ClientOrderId, OrderIntent] = {}
        self._trades: dict[ClientOrderId, Trade] = {}
        self._submitted_at: dict[ClientOrderId, datetime] = {}
        self._fills: dict[str, IbFill] = {}  # our executions by exec id; kept across reconnects
        self._fill_seen: dict[str, float] = {}
        self._cancel_requested: set[ClientOrderId] = set()
        self._unresolved: set[ClientOrderId] = set()  # placed, but TWS's answer never came
        self._contracts: dict[Symbol, Contract] = {}
        self._link_up = True  # TWS's own link to IB's servers (errors 1100/1101/1102)
        self._ready = asyncio.Event()
        self._order_lock = asyncio.Lock()  # one submit or cancel at a time: a lookup and its placeOrder stay together
        self._fatal: OpenbellError | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._connecting = False
        self._generation = 0  # counts connections: an order id is only meaningful on the connection that sent it

        start_budget = (
            connect_attempts * (session.connect_timeout * len(session.ports) + max(session.delays))
            + client_id_wait_s
            + request_timeout_s
        )
        try:
            self._call(self._start(connect_attempts), timeout=start_budget)
        except BaseException:
            session.stop_loop()
            raise

    # --- the Broker protocol ---------------------------------------------------------------
    def moo_window(self, day: date) -> MooWindow:
        """From the previous session's close to 09:28 New York time."""
        opens = calendar.session_close(calendar.previous_session(day))
        return MooWindow(opens, datetime.combine(day, MOO_CUTOFF, tzinfo=NEW_YORK))

    def submit(self, intent: OrderIntent) -> Order:
        return self._call(self._submit(intent))

    def submit_oco(self, target: OrderIntent, stop: OrderIntent) -> tuple[Order, Order]:
        """The target limit and the stop as one IB OCA group (ocaType 1): the first to fill cancels the other."""
        if not target.oco_group or target.oco_group != stop.oco_group:
            raise OrderRejected(target.client_order_id, "a one-cancels-other pair needs one shared oco_group")
        return self.submit(target), self.submit(stop)

    def cancel(self, client_order_id: ClientOrderId) -> Order:
        """Cancel a working order and wait (up to the ack timeout) for TWS to confirm; done orders come back as they are."""
        return self._call(self._cancel(client_order_id))

    def order(self, client_order_id: ClientOrderId) -> Order | None:
        return self._call(self._read(lambda: self._view(client_order_id)))

    def open_orders(self) -> list[Order]:
        return self._call(self._read(lambda: [o for o in self._views() if o.is_open()]))

    def day_orders(self) -> list[Order]:
        """Our orders of the day from ib_async's book; no order request, only the round trip every read makes."""
        return self._call(self._read(self._views))

    def fills_since(self, since: datetime | None = None) -> list[Fill]:
        return self._call(self._read(lambda: self._our_fills(since)))

    def positions(self) -> dict[Symbol, Position]:
        """The account's stock positions as IB reports them (asked afresh), holdings from before included."""
        return self._call(self._positions())

    def account(self) -> Account:
        return self._call(self._account_now())

    def close(self) -> None:
        """Disconnect and stop the event loop. Orders stay at IB; a new adapter with the same client id finds them."""
        self._session.close()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return self._session.call(coro, timeout or self._call_budget)

    # --- connecting --------------------------------------------------------------------------
    async def _start(self, attempts: int) -> None:
        await self._session.connect_with_retries(self._connect_once, attempts, self._client_id_wait)

    async def _connect_once(self) -> None:
        """One connection with the startup sync, then our own: all open orders, contracts, our book."""
        self._connecting = True
        try:
            await self._session.connect(self._ib, self._client_id_in_use, account=self._wanted_account)
            try:
                self._account = self._pick_account(self._ib.managedAccounts())
                await self._synchronise()
            except BaseException:
                self._ib.disconnect()
                raise
        finally:
            self._connecting = False
        self._link_up = True
        self._generation += 1
        self._ready.set()
        log.info(
            "connected to TWS/IB Gateway at %s, client id %d, account %s",
            self._where(),
            self._session.client_id,
            self._account,
        )

    def _client_id_in_use(self, message: str) -> ConfigError:
        return mapping.client_id_in_use(message, self._session.client_id)

    def _pick_account(self, managed: list[str]) -> str:
        if self._wanted_account:
            if self._wanted_account not in managed:
                raise ConfigError(
                    f"account {self._wanted_account} is not among the accounts this login manages "
                    f"({', '.join(managed) or 'none'}): fix OPENBELL_BROKER__IBKR__ACCOUNT"
                )
            account = self._wanted_account
        elif len(managed) == 1:
            account = managed[0]
        else:
            raise ConfigError(
                f"this login manages several accounts ({', '.join(managed)}): choose one with OPENBELL_BROKER__IBKR__ACCOUNT"
            )
        if self._paper and not mapping.is_paper_account(account):
            raise ConfigError(
                f"account {account} is a live account but OPENBELL_TRADING_MODE is paper: log TWS/IB Gateway in "
                "to the paper account, or trade live deliberately with OPENBELL_TRADING_MODE=live and its confirmation"
            )
        return account

    async def _synchronise(self) -> None:
        """After ib_async's startup sync: open orders of every client (ours may carry another client id), contracts."""
        await asyncio.wait_for(self._ib.reqAllOpenOrdersAsync(), self._request_timeout)
        for symbol in list(self._contracts):  # conIds are re-read after every reconnect
            qualified = await self._qualify(symbol)
            if qualified is None:
                self._contracts.pop(symbol)
            else:
                self._contracts[symbol] = qualified
        self._absorb()

    def _on_disconnected(self) -> None:
        self._ready.clear()
        if self._session.closing or self._connecting:
            return
        log.warning("lost the connection to TWS/IB Gateway at %s; reconnecting", self._where())
        self._start_reconnecting()

    def _start_reconnecting(self) -> None:
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = self._loop.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        fatal = await self._session.reconnect(self._connect_once)
        if fatal is not None:  # the account changed under us: stop, say why
            self._fatal = fatal
            log.error("%s", fatal)

    async def _ensure_ready(self) -> None:
        if self._fatal is not None:
            raise self._fatal
        if self._ready.is_set() and self._ib.isConnected():
            return
        self._start_reconnecting()
        try:
            await asyncio.wait_for(self._ready.wait(), self._request_timeout)
        except TimeoutError:
            raise TransientError(
                f"not connected to TWS/IB Gateway at {self._where()} (client id {self._session.client_id}); "
                "reconnecting in the background: retry shortly"
            ) from None
        if self._fatal is not None:
            raise self._fatal

    def _on_error(self, req_id: int, code: int, message: str, contract: Contract | None) -> None:
        kind = mapping.error_kind(code)
        if kind is mapping.IbErrorKind.CLIENT_ID_IN_USE:
            pass  # the session watches for it: a refused connection, not a request's error
        elif kind is mapping.IbErrorKind.CONNECTIVITY_LOST:
            self._link_up = False
            log.warning("TWS lost its connection to Interactive Brokers (%d): %s", code, message)
        elif kind is mapping.IbErrorKind.CONNECTIVITY_RESTORED:
            self._link_up = True
            log.info("TWS is connected to Interactive Brokers again (%d): %s", code, message)
            if code == mapping.CONNECTIVITY_RESTORED_DATA_LOST:
                self._loop.create_task(self._look_again_quietly())
        elif kind in (mapping.IbErrorKind.INFORMATION, mapping.IbErrorKind.CANCELLED):
            log.debug("TWS says (%d, request %d): %s", code, req_id, message)
        else:
            log.info("TWS error %d for request %d: %s", code, req_id, message)

    # --- orders --------------------------------------------------------------------------------
    async def _submit(self, intent: OrderIntent) -> Order:
        cid = intent.client_order_id
        if not cid.startswith(self._prefix):
            raise OrderRejected(cid, f"this adapter trades {self._date}: its client order ids start with {self._prefix}")
        async with self._order_lock:
            await self._ensure_ready()
            if cid in self._unresolved:  # an earlier attempt got no answer: ask TWS before anything else
                await self._look_again()
                if not self._ib_knows(cid):
                    self._forget(cid)
                self._unresolved.discard(cid)
            self._absorb()
            known = self._view(cid)
            if known is not None:
                return self._same_order(intent, known)
            self._check_acceptable(intent)
            if not self._link_up:
                raise TransientError(f"TWS has lost its connection to Interactive Brokers; {cid} was not sent: retry later")
            contract = await self._contract(intent)
            generation = self._generation
            trade = self._ib.placeOrder(contract, mapping.to_ib_order(intent, self._account))
            self._intents[cid], self._trades[cid], self._submitted_at[cid] = intent, trade, self._clock.now()
            self._unresolved.add(cid)
            outcome = await self._acknowledgement(trade)
            if outcome == "acknowledged":
                self._unresolved.discard(cid)
                return self._known(cid)
            refusal = mapping.order_error(trade) if outcome == "refused" else None
            if refusal is not None:
                code, reason = refusal
                problem = mapping.error_for(code, reason, cid, self._session.client_id)
                if isinstance(problem, OrderRejected):
                    self._unresolved.discard(cid)
                    log.warning("IB rejected %s (%d): %s", cid, code, reason)
                    raise problem
            # No answer, a lost connection or a transient refusal: IB may still have the order. Ask before deciding.
            if not await self._look_again_quietly():
                raise TransientError(f"TWS did not confirm {cid} ({outcome}) and cannot be asked now; "
                                     "retrying is safe: submit asks TWS for this orderRef first")  # fmt: skip
            self._unresolved.discard(cid)
            if self._ib_knows(cid):
                log.info("%s: TWS's answer was lost (%s) but TWS has the order", cid, outcome)
                return self._known(cid)
            self._forget(cid)
            if generation == self._generation and self._ib.isConnected():
                # Same socket, same order id: should the lost request still reach TWS, this cancel follows it.
                self._ib.cancelOrder(trade.order)
            raise TransientError(
                f"TWS did not confirm {cid} ({outcome}) and reports no order or execution with that orderRef: it "
                "was not placed. Retrying is safe: submit asks TWS for this orderRef first"
            )

    async def _acknowledgement(self, trade: Trade) -> str:
        """How TWS answered a new order: acknowledged, refused, connection lost, or no answer within the ack timeout."""
        deadline = self._loop.time() + self._ack_timeout
        while True:
            if trade.isDone() and mapping.order_error(trade) is not None:
                return "refused"
            if trade.order.permId or trade.orderStatus.status not in mapping.NOT_ACKNOWLEDGED:
                return "acknowledged"
            if not self._ib.isConnected():
                return "connection lost"
            if self._loop.time() >= deadline:
                return f"no answer within {self._ack_timeout:g} s"
            await asyncio.sleep(_POLL_S)

    async def _cancel(self, cid: ClientOrderId) -> Order:
        async with self._order_lock:
            await self._ensure_ready()
            self._absorb()
            view = self._view(cid)
            if view is None:
                raise OrderRejected(cid, "TWS reports no order with this orderRef")
            if view.is_done():
                return view
            trade = self._trades[cid]
            self._cancel_requested.add(cid)
            self._ib.cancelOrder(trade.order)
            deadline = self._loop.time() + self._ack_timeout
            while not trade.isDone() and self._ib.isConnected() and self._loop.time() < deadline:
                await asyncio.sleep(_POLL_S)
            self._absorb()
            return self._known(cid)

    def _same_order(self, intent: OrderIntent, known: Order) -> Order:
        if known.status is OrderStatus.REJECTED:
            raise OrderRejected(intent.client_order_id, known.reason or "rejected by Interactive Brokers")
        changed = mapping.differences(intent, known.intent, prices=known.is_open())
        if changed:
            raise OrderRejected(
                intent.client_order_id,
                f"client order id already used at IB for a different order ({', '.join(changed)} differ)",
            )
        return known

    def _check_acceptable(self, intent: OrderIntent) -> None:
        now = self._clock.now()
        if intent.tif is TimeInForce.OPG:
            check_market_on_open(intent, self.moo_window(self._date), now)
        elif now >= calendar.session_close(self._date):  # IB would keep a DAY order for the next session
            raise OrderRejected(intent.client_order_id, f"the {self._date} session has closed")

    async def _contract(self, intent: OrderIntent) -> Contract:
        contract = self._contracts.get(intent.symbol)
        if contract is None:
            contract = await self._qualify(intent.symbol)
            if contract is None:
                raise OrderRejected(
                    intent.client_order_id,
                    f"Interactive Brokers knows no US stock {intent.symbol} on SMART (no contract details)",
                    mapping.NO_SECURITY_DEFINITION,
                )
            self._contracts[intent.symbol] = contract
        return contract

    async def _qualify(self, symbol: Symbol) -> Contract | None:
        (qualified,) = await asyncio.wait_for(
            self._ib.qualifyContractsAsync(mapping.to_contract(symbol)), self._request_timeout
        )
        return qualified if isinstance(qualified, Contract) else None

    # --- reading TWS's state -----------------------------------------------------------------
    async def _look_again(self) -> None:
        """Ask TWS for every open and completed order and the day's executions, then update our book."""
        await self._ensure_ready()
        await asyncio.wait_for(self._ib.reqAllOpenOrdersAsync(), self._request_timeout)
        await asyncio.wait_for(self._ib.reqCompletedOrdersAsync(False), self._request_timeout)
        await asyncio.wait_for(self._ib.reqExecutionsAsync(), self._request_timeout)
        self._absorb()

    async def _look_again_quietly(self) -> bool:
        try:
            await self._look_again()
            return True
        except (OpenbellError, OSError) as exc:
            log.warning("could not ask TWS for its orders: %r", exc)
            return False

    def _absorb(self) -> None:
        """Take ib_async's current trades and executions that carry our orderRef into our book."""
        trades = self._ib.trades()
        live = {id(t) for t in trades}
        for trade in trades:
            ref = trade.order.orderRef
            if not ref.startswith(self._prefix) or not _perm_id(trade):
                continue  # not ours, or only our own unanswered attempt
            cid = ClientOrderId(ref)
            current = self._trades.get(cid)
            if current is trade or (current is not None and self._preferred(current, trade, live) is current):
                continue
            if cid not in self._intents:
                intent = mapping.intent_from_ib(trade.contract, trade.order)
                if intent is None:
                    log.warning("not adopting IB order %s with orderRef %s: not an order openbell sends (%s %s)",
                                _perm_id(trade), ref, trade.order.orderType, trade.order.tif)  # fmt: skip
                    continue
                self._intents[cid], self._submitted_at[cid] = intent, self._clock.now()
                log.info("adopted %s from TWS (%s)", cid, trade.orderStatus.status)
            self._trades[cid] = trade
        for fill in self._ib.fills():
            if fill.execution.orderRef.startswith(self._prefix):
                exec_id = fill.execution.execId
                old = self._fills.get(exec_id)
                if old is None or mapping.has_commission(fill) or not mapping.has_commission(old):
                    self._fills[exec_id] = fill
                self._fill_seen.setdefault(exec_id, monotonic())

    def _preferred(self, current: Trade, candidate: Trade, live: set[int]) -> Trade:
        if id(current) not in live or not _perm_id(current):
            return candidate  # from before a reconnect, or our own attempt that TWS has now reported
        if _perm_id(current) != _perm_id(candidate):
            log.error("two orders at IB carry orderRef %s (permIds %s and %s)", current.order.orderRef,
                      _perm_id(current), _perm_id(candidate))  # fmt: skip
        if current.isDone() != candidate.isDone():
            return candidate if current.isDone() else current
        return max(current, candidate, key=_perm_id)

    def _ib_knows(self, cid: ClientOrderId) -> bool:
        trade = self._trades.get(cid)
        has_fills = any(f.execution.orderRef == cid for f in self._fills.values())
        return has_fills or (trade is not None and bool(_perm_id(trade)))

    def _forget(self, cid: ClientOrderId) -> None:
        for book in (self._intents, self._trades, self._submitted_at):
            book.pop(cid, None)

    def _view(self, cid: ClientOrderId) -> Order | None:
        if cid in self._unresolved and not self._ib_knows(cid):
            return None  # sent, unanswered: not an order until TWS says so
        fills = self._fills_of(cid)
        intent = self._intents.get(cid)
        if intent is None:
            intent = mapping.intent_from_fills(fills)
            return None if intent is None else mapping.to_order(intent, None, fills, fills[0].ts)
        return mapping.to_order(
            intent, self._trades.get(cid), fills, self._submitted_at[cid], cancel_requested=cid in self._cancel_requested
        )

    def _known(self, cid: ClientOrderId) -> Order:
        """The view of an order TWS has answered for: one in our book is never None."""
        view = self._view(cid)
        if view is None:
            raise OpenbellError(f"{cid} is missing from the IBKR adapter's book although TWS answered for it")
        return view

    def _views(self) -> list[Order]:
        ids = set(self._intents) | {ClientOrderId(f.execution.orderRef) for f in self._fills.values()}
        views = [v for v in (self._view(cid) for cid in ids) if v is not None]
        return sorted(views, key=lambda o: (o.submitted_at, o.client_order_id))

    def _fills_of(self, cid: ClientOrderId) -> list[Fill]:
        fills = [mapping.to_fill(f) for f in self._fills.values() if f.execution.orderRef == cid]
        return sorted(fills, key=lambda f: (f.ts, f.fill_id))

    def _our_fills(self, since: datetime | None) -> list[Fill]:
        """Our fills whose commission is known (or overdue), at or after `since`, in time order."""
        now = monotonic()
        fills = []
        for exec_id, fill in self._fills.items():
            if not mapping.has_commission(fill):
                if now - self._fill_seen[exec_id] < self._commission_grace:
                    continue
                log.warning("no commission report for execution %s after %g s: reporting commission 0", exec_id,
                            self._commission_grace)  # fmt: skip
            ours = mapping.to_fill(fill)
            if since is None or ours.ts >= since:
                fills.append(ours)
        return sorted(fills, key=lambda f: (f.ts, f.fill_id))

    async def _read(self, view: Callable[[], T]) -> T:
        """A view of the book after one round trip to TWS.

        ib_async applies TWS's messages in order, so once TWS answers, every fill and status it
        pushed before has been applied: a read never misses what already happened, even when a
        simulated clock moves faster than pushes travel. No answer on an open socket (TWS frozen, or a
        link cut without a reset) is a TransientError, never the book from before.
        """
        await self._ensure_ready()
        try:
            await asyncio.wait_for(self._ib.reqCurrentTimeAsync(), self._request_timeout)
        except ConnectionError:
            await self._ensure_ready()  # the link dropped under the read: the reconnect's resync rebuilds the book
        except TimeoutError:
            raise TransientError(
                f"TWS/IB Gateway at {self._where()} did not answer within {self._request_timeout:g} s (busy, frozen, "
                "or the network cut without closing the socket): retry shortly"
            ) from None
        self._absorb()
        return view()

    async def _positions(self) -> dict[Symbol, Position]:
        await self._ensure_ready()
        reported = await asyncio.wait_for(self._ib.reqPositionsAsync(), self._request_timeout)
        positions = [mapping.to_position(p) for p in reported if p.account == self._account]
        return {p.symbol: p for p in sorted((p for p in positions if p is not None), key=lambda p: p.symbol)}

    async def _account_now(self) -> Account:
        await self._ensure_ready()
        try:
            return mapping.to_account(self._ib.accountValues(self._account), self._account)
        except ValueError:
            pass  # account updates not in yet: ask for the summary
        summary = await asyncio.wait_for(self._ib.accountSummaryAsync(self._account), self._request_timeout)
        try:
            return mapping.to_account(summary, self._account)
        except ValueError as exc:
            raise TransientError(f"{exc}: TWS may still be loading the account, retry shortly") from None

    def _where(self) -> str:
        return self._session.where()


def _perm_id(trade: Trade) -> int:
    return trade.order.permId or trade.orderStatus.permId
