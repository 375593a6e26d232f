"""A fake TWS on 127.0.0.1 that speaks the IB API wire protocol, so the real ib_async client can connect to it.

Framing: the client opens with b"API\\0" and a length-prefixed version range ("v157..178"); the fake answers
with server version 157 (old enough to keep messages short, new enough for ib_async 2.1) and a connection
time. From then on every message, both ways, is a 4-byte big-endian length followed by NUL-terminated
text fields, the first being the message id. Field orders follow ib_async's client.py (what it sends) and
decoder.py (what it reads) at server version 157.

Requests answered (id: request -> reply ids):
    71 startApi          -> 15 managedAccounts, 9 nextValidId, 4 error 2104 (farm OK); or 4 error 326 + close
    61 reqPositions      -> 61 position per holding, 62 positionEnd
     5 reqOpenOrders     -> 5 openOrder + 3 orderStatus per open order of this client, 53 openOrderEnd
    16 reqAllOpenOrders  -> the same for every client's open orders
    15 reqAutoOpenOrders -> nothing
    99 reqCompletedOrders-> 101 completedOrder per filled/cancelled/inactive order, 102 completedOrdersEnd
     6 reqAccountUpdates -> 6 updateAccountValue per value, 8 updateAccountTime, 54 accountDownloadEnd
    76 reqAccountUpdatesMulti -> 73 accountUpdateMulti per value, 74 accountUpdateMultiEnd
    62 reqAccountSummary -> 63 accountSummary per requested tag, 64 accountSummaryEnd
     7 reqExecutions     -> 11 execDetails + 59 commissionReport per execution, 55 execDetailsEnd
     9 reqContractDetails-> 10 contractDetails + 52 contractDetailsEnd; or 4 error 200 (unknown symbol)
     3 placeOrder        -> 5 openOrder + 3 orderStatus (PreSubmitted for OPG and STP, else Submitted);
                            (+ 4 warning 399 first for an OPG order); scripted: 4 error 201 + 3 orderStatus
                            Inactive, 4 error 100 (message dropped), no answer (order kept or lost), or every
                            socket dropped before answering
     4 cancelOrder       -> 3 orderStatus Cancelled + 4 error 202; 4 error 10148 when already done, 135 unknown
     8 reqIds, 49 reqCurrentTime, 17 reqManagedAccts -> 9, 49, 15
    20 reqHistoricalData -> 17 historicalData with the scripted bars in the window (end - duration, end], regular
                            hours only with useRTH; 4 error 162 "HMDS query returned no data" when there are none;
                            scripted: one 4 error instead (162 pacing violation, 162 no permissions, ...)
     1 reqMktData (snapshot) -> 4 error first when refused (354, 10168, ...; 10167 goes on with delayed data),
                            58 marketDataType when delayed, 1 tickPrice bid/ask/last/close, 2 tickSize volume,
                            46 tickString last timestamp (delayed tick ids 66-68, 75, 74, 88), 57 tickSnapshotEnd
    22 reqScannerSubscription -> 20 scannerData: the scripted symbols in rank order, numberOfRows at most
    59 reqMarketDataType -> nothing (the type is remembered: 3 and 4 make snapshots delayed)
     2 cancelMktData, 23 cancelScannerSubscription, 25 cancelHistoricalData -> nothing (recorded)
Anything else is recorded in `unhandled` and ignored.

Scripted by the test: `fill(order_ref, price)` executes an order (11 execDetails with reqId -1, 59
commissionReport, 3 orderStatus) and cancels the rest of its OCA group (3 orderStatus Cancelled);
`reject_next`, `silence_next_order`, `lose_next_order`, `drop_after_next_order`, `drop_connections`,
`notify` (errors such as 1100/1102 pushed to every client), `add_order` (orders that were there before),
`go_away` and `come_back` (TWS down, connects refused, then up again on the same port), `hang` and `resume`
(sockets open, requests unanswered until resumed).
Market data: `add_daily_bar`, `add_minute_bar` (pre- and post-market bars too: useRTH filters them), `set_quote`,
`set_scanner`, `fail_next_history` (once), `refuse_market_data` (every snapshot until cleared).
State (orders, executions, holdings) survives dropped connections, like a real TWS, so a reconnecting
client finds it.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

SERVER_VERSION = 157
NEW_YORK = ZoneInfo("America/New_York")
PACING_VIOLATION = "Historical Market Data Service error message:Historical data request pacing violation"
NOT_SUBSCRIBED = "Requested market data is not subscribed. Check API status by selecting the Account menu then under Management choose Market Data Subscription Manager"
_LIVE_TICKS = {"bid": 1, "ask": 2, "last": 4, "close": 9, "volume": 8, "last_time": 45}
_DELAYED_TICKS = {"bid": 66, "ask": 67, "last": 68, "close": 75, "volume": 74, "last_time": 88}
_DURATION_UNITS = {"S": timedelta(seconds=1), "D": timedelta(days=1), "W": timedelta(weeks=1), "M": timedelta(days=30),
                   "Y": timedelta(days=365)}  # fmt: skip
DONE = frozenset({"Filled", "Cancelled", "Inactive"})
DEFAULT_SYMBOLS = {"ABC": 1001, "XYZ": 1002, "IBM": 8314}
DEFAULT_ACCOUNT_VALUES = {
    "NetLiquidation": ("100000.00", "USD"),
    "TotalCashValue": ("100000.00", "USD"),
    "BuyingPower": ("400000.00", "USD"),
    "DayTradesRemaining": ("3", ""),
    "AccountType": ("INDIVIDUAL", ""),
}


@dataclass
class FakeOrder:
    order_id: int
    client_id: int
    perm_id: int
    account: str
    symbol: str
    con_id: int
    action: str
    qty: Decimal
    order_type: str
    lmt_price: str
    aux_price: str
    tif: str
    oca_group: str
    oca_type: int
    order_ref: str
    status: str = "Submitted"
    filled: Decimal = Decimal(0)
    avg_price: Decimal = Decimal(0)
    last_price: Decimal = Decimal(0)
    completed_time: str = ""
    completed_status: str = ""

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.filled

    @property
    def is_open(self) -> bool:
        return self.status not in DONE


@dataclass
class FakeExecution:
    exec_id: str
    order: FakeOrder
    shares: Decimal
    price: Decimal
    time: datetime
    commission: Decimal
    cum_qty: Decimal
    avg_price: Decimal


@dataclass
class Holding:
    symbol: str
    qty: Decimal
    avg_cost: Decimal


@dataclass(frozen=True)
class Quote:
    """What a market-data snapshot of one symbol carries; None: TWS sends no tick for it."""

    last: float | None = None
    bid: float | None = None
    ask: float | None = None
    close: float | None = None  # tick 9: the previous session's close
    volume: int | None = None
    last_time: datetime | None = None  # tick 45: when the last trade happened


@dataclass(frozen=True)
class HistoryRequest:
    """One reqHistoricalData as received (the wire's text fields)."""

    symbol: str
    end: str
    duration: str
    bar_size: str
    what_to_show: str
    use_rth: bool
    format_date: int


@dataclass
class _Session:
    sock: socket.socket
    client_id: int | None = None
    alive: bool = True
    write_lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, *fields) -> None:
        payload = "".join(f"{_text(f)}\0" for f in fields).encode()
        with self.write_lock:
            try:
                self.sock.sendall(struct.pack(">I", len(payload)) + payload)
            except OSError:
                self.alive = False

    def close(self) -> None:
        self.alive = False
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class FakeTws:
    """A scripted TWS for one trading day. `now` stamps executions (New York time, tz-aware)."""

    def __init__(
        self,
        now: Callable[[], datetime],
        *,
        accounts: tuple[str, ...] = ("DU1234567",),
        holdings: tuple[Holding, ...] = (),
        symbols: dict[str, int] | None = None,
        account_values: dict[str, tuple[str, str]] | None = None,
        account_updates: bool = True,
    ) -> None:
        self._now = now
        self.accounts = accounts
        self.holdings = {h.symbol: h for h in holdings}
        self.symbols = dict(symbols or DEFAULT_SYMBOLS)
        self.account_values = dict(account_values or DEFAULT_ACCOUNT_VALUES)
        self._push_account_values = account_updates  # False: account values only through reqAccountSummary
        self.orders: list[FakeOrder] = []
        self.executions: list[FakeExecution] = []
        self.place_requests: list[str] = []  # the orderRef of every placeOrder received, in order
        self.contract_requests: list[str] = []  # the symbol of every reqContractDetails received
        self.cancel_requests: list[tuple[int, int]] = []  # (client id, order id) of every cancelOrder received
        self.unhandled: list[list[str]] = []
        self.daily_bars: dict[str, list[tuple]] = {}  # symbol -> (date, open, high, low, close, volume)
        self.minute_bars: dict[str, list[tuple]] = {}  # symbol -> (New York minute start, open, high, low, close, volume)
        self.quotes: dict[str, Quote] = {}
        self.scanner_symbols: list[str] = []
        self.history_requests: list[HistoryRequest] = []
        self.snapshot_requests: list[str] = []  # the symbol of every reqMktData received
        self.scanner_requests: list[tuple[str, str, str, int]] = []  # (instrument, locationCode, scanCode, rows)
        self.cancelled: list[tuple[str, int]] = []  # ("scanner" | "market data" | "history", request id)
        self.market_data_type = 1  # 1 live; 3 delayed (reqMarketDataType)
        self._history_failure: tuple[int, str] | None = None
        self._market_data_refusal: tuple[int, str] | None = None
        self.errors: list[str] = []  # the fake's own failures (a handler that raised), for the test to assert on
        self.connections = 0
        self._lock = threading.RLock()
        self._sessions: list[_Session] = []
        self._rejections: dict[str, tuple[int, str]] = {}
        self._silence_next = False
        self._drop_next = False
        self._lose_next = False
        self._hung = False
        self._held: list[tuple[_Session, list[str]]] = []  # requests received while hung, answered at `resume`
        self._next_perm_id = 900_000_001
        self._next_exec = 1
        self._server: socket.socket | None = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._acceptor: threading.Thread | None = None
        self._running = False
        self._handlers = {
            71: self._start_api, 61: self._positions, 5: self._open_orders, 16: self._all_open_orders,
            15: self._ignore, 99: self._completed_orders, 6: self._account_updates, 76: self._account_updates_multi,
            62: self._account_summary, 7: self._executions, 9: self._contract_details, 3: self._place_order,
            4: self._cancel_order, 8: self._req_ids, 49: self._current_time, 17: self._managed_accounts,
            63: self._ignore, 64: self._ignore, 59: self._market_data_type, 14: self._ignore,
            20: self._historical_data, 1: self._market_data, 22: self._scanner_subscription,
            2: self._cancel("market data"), 23: self._cancel("scanner"), 25: self._cancel("history"),
        }  # fmt: skip

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeTws:
        """Listen on `port` (the same port again after `stop` or `go_away`)."""
        with self._lock:
            if self._running:
                return self
            if self._server is None:
                self._server = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR: rebinds at once
            self._running = True
            self._acceptor = threading.Thread(target=self._accept, args=(self._server,), name="fake-tws", daemon=True)
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Stop listening (connects are refused) and close every client socket; orders, executions and holdings stay."""
        with self._lock:
            self._running, self._hung, self._held = False, False, []  # a restarted TWS answers again
            server, self._server = self._server, None
        if server is not None:
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone would not on Linux
            server.close()
        if self._acceptor is not None and self._acceptor is not threading.current_thread():
            self._acceptor.join(timeout=5)
        self.drop_connections()

    def hang(self) -> None:
        """TWS stops answering but keeps the sockets open (frozen, or a link that died without a reset): requests are
        held, unanswered, until `resume`."""
        with self._lock:
            self._hung = True

    def resume(self) -> None:
        """Answer the requests held since `hang`, in order, then everything as usual."""
        with self._lock:
            self._hung = False
            held, self._held = self._held, []
            for session, fields in held:
                if session.alive:
                    self._dispatch(session, fields)

    def go_away(self) -> None:
        """TWS/IB Gateway goes down (a restart, a network cut): every client socket is closed and connects to
        `port` are refused until `come_back`. Orders, executions and holdings are kept, as IB keeps them."""
        self.stop()

    def come_back(self) -> None:
        """TWS/IB Gateway is up again on the same port: clients handshake anew, and their requests for open
        orders, completed orders, executions and positions report what happened before and meanwhile."""
        self.start()

    # --- scripting ---------------------------------------------------------------------------
    def fill(self, order_ref: str, price: float | str | Decimal, qty: int | None = None) -> FakeExecution:
        """Execute an open order with this orderRef (all of what remains by default); OCA siblings are cancelled."""
        with self._lock:
            order = self._open_order_with_ref(order_ref)
            shares = Decimal(qty) if qty is not None else order.remaining
            price = Decimal(str(price))
            order.avg_price = (order.avg_price * order.filled + price * shares) / (order.filled + shares)
            order.filled += shares
            order.last_price = price
            if not order.remaining:
                self._finish(order, "Filled")
            execution = FakeExecution(
                exec_id=f"0000e0d5.{self._next_exec:08x}.01.01", order=order, shares=shares, price=price,
                time=self._now(), commission=max(Decimal("1.00"), Decimal("0.005") * shares),
                cum_qty=order.filled, avg_price=order.avg_price,
            )  # fmt: skip
            self._next_exec += 1
            self.executions.append(execution)
            self._book(order.symbol, shares if order.action == "BUY" else -shares, price)
            session = self._session_of(order.client_id)
            if session:
                session.send(*_exec_details(-1, execution))
                session.send(*_commission_report(execution))
                session.send(*_order_status(order))
            if order.status == "Filled" and order.oca_group:
                for sibling in [o for o in self.orders if o.oca_group == order.oca_group and o.is_open]:
                    self._finish(sibling, "Cancelled")
                    sibling_session = self._session_of(sibling.client_id)
                    if sibling_session:
                        sibling_session.send(*_order_status(sibling))
            return execution

    def reject_next(self, symbol: str, reason: str, code: int = 201) -> None:
        """The next order for `symbol` is refused with this error: 201 keeps it as an Inactive order (a rejection);
        other codes (say 100, pacing) drop the message, as TWS does."""
        with self._lock:
            self._rejections[symbol] = (code, reason)

    def notify(self, code: int, message: str) -> None:
        """Send every client an error not tied to a request, e.g. 1100 (TWS lost IB's servers) or 1102 (back)."""
        with self._lock:
            for session in self._sessions:
                session.send(4, 2, -1, code, message)

    def silence_next_order(self) -> None:
        """Accept the next order but send no answer at all (it shows up in later open-order requests)."""
        with self._lock:
            self._silence_next = True

    def lose_next_order(self) -> None:
        """The next placeOrder never arrives: no order, no answer (as if lost on the way)."""
        with self._lock:
            self._lose_next = True

    def drop_after_next_order(self) -> None:
        """Accept the next order, then drop every connection before answering."""
        with self._lock:
            self._drop_next = True

    def drop_connections(self) -> None:
        """Close every client socket, as a TWS restart or a network cut would; state is kept."""
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()

    def add_order(
        self,
        *,
        client_id: int,
        symbol: str,
        action: str,
        qty: int,
        order_type: str = "LMT",
        lmt_price: str = "",
        aux_price: str = "",
        order_ref: str = "",
        tif: str = "DAY",
    ) -> FakeOrder:
        """An order that was already working before the test (placed by another client or by hand)."""
        with self._lock:
            ids = [o.order_id for o in self.orders if o.client_id == client_id]
            order = FakeOrder(
                order_id=max(ids, default=0) + 1, client_id=client_id, perm_id=self._perm_id(), account=self.accounts[0],
                symbol=symbol, con_id=self.symbols[symbol], action=action, qty=Decimal(qty), order_type=order_type,
                lmt_price=lmt_price, aux_price=aux_price, tif=tif, oca_group="", oca_type=0, order_ref=order_ref,
            )  # fmt: skip
            self.orders.append(order)
            return order

    def add_daily_bar(self, symbol: str, day: date, open_: float, high: float, low: float, close: float,
                      volume: int) -> None:  # fmt: skip
        with self._lock:
            self.daily_bars.setdefault(symbol, []).append((day, open_, high, low, close, volume))

    def add_minute_bar(self, symbol: str, start: datetime, open_: float, high: float, low: float, close: float,
                       volume: int) -> None:  # fmt: skip
        """A 1-minute bar starting at `start` (tz-aware); bars outside 09:30-16:00 New York are extended hours."""
        with self._lock:
            self.minute_bars.setdefault(symbol, []).append((start.astimezone(NEW_YORK), open_, high, low, close, volume))

    def set_quote(self, symbol: str, **fields) -> None:
        """What a snapshot of `symbol` sends (Quote's fields); a symbol without a quote gets only tickSnapshotEnd."""
        with self._lock:
            self.quotes[symbol] = Quote(**fields)

    def set_scanner(self, symbols: list[str]) -> None:
        """The scanner's answer, best first (every scan code gets the same list)."""
        with self._lock:
            self.scanner_symbols = list(symbols)

    def fail_next_history(self, code: int = 162, message: str = PACING_VIOLATION) -> None:
        """Answer the next reqHistoricalData with this error instead of bars (by default IB's pacing violation)."""
        with self._lock:
            self._history_failure = (code, message)

    def refuse_market_data(self, code: int | None = 354, message: str = NOT_SUBSCRIBED) -> None:
        """Send this error for every snapshot from now on (None: stop); 10167 is followed by delayed data, as TWS does."""
        with self._lock:
            self._market_data_refusal = None if code is None else (code, message)

    def orders_with_ref(self, order_ref: str) -> list[FakeOrder]:
        with self._lock:
            return [o for o in self.orders if o.order_ref == order_ref]

    def clients(self) -> list[int]:
        """Client ids of the sessions connected now."""
        with self._lock:
            return [s.client_id for s in self._sessions if s.alive and s.client_id is not None]

    # --- sockets -----------------------------------------------------------------------------
    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                sock, _ = server.accept()
            except OSError:  # stopped: the listening socket was shut down
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            session = _Session(sock)
            with self._lock:
                if server is not self._server:  # accepted while going away: as if refused
                    session.close()
                    return
                self.connections += 1
                self._sessions.append(session)
            threading.Thread(target=self._serve, args=(session,), name="fake-tws-session", daemon=True).start()

    def _serve(self, session: _Session) -> None:
        try:
            if _recv_exact(session.sock, 4) != b"API\0":
                return
            versions = _recv_frame(session.sock).decode()  # "v157..178", maybe followed by connect options
            low, high = (int(v) for v in versions[1:].split(" ")[0].split(".."))
            if not low <= SERVER_VERSION <= high:
                return
            session.send(SERVER_VERSION, f"{self._now():%Y%m%d %H:%M:%S} EST")
            while session.alive:
                fields = _recv_frame(session.sock).decode().split("\0")[:-1]
                with self._lock:
                    if self._hung:
                        self._held.append((session, fields))
                    else:
                        self._dispatch(session, fields)
        except OSError:  # the client went away, or the test dropped it
            pass
        except Exception:
            self.errors.append(traceback.format_exc())
        finally:
            with self._lock:
                if session in self._sessions:
                    self._sessions.remove(session)
            session.close()

    def _dispatch(self, session: _Session, fields: list[str]) -> None:
        handler = self._handlers.get(int(fields[0]))
        if handler is None:
            self.unhandled.append(fields)
        else:
            handler(session, fields)

    def _session_of(self, client_id: int) -> _Session | None:
        return next((s for s in self._sessions if s.alive and s.client_id == client_id), None)

    # --- handlers (called with the lock held) ------------------------------------------------------
    def _start_api(self, session: _Session, fields: list[str]) -> None:
        client_id = int(fields[2])
        if any(s.client_id == client_id and s.alive for s in self._sessions if s is not session):
            session.send(
                4, 2, -1, 326, "Unable to connect as the client id is already in use. Retry with a unique client id."
            )
            session.close()
            return
        session.client_id = client_id
        session.send(15, 1, ",".join(self.accounts))
        session.send(9, 1, self._next_order_id(client_id))
        session.send(4, 2, -1, 2104, "Market data farm connection is OK:usfarm")

    def _positions(self, session: _Session, fields: list[str]) -> None:
        for h in self.holdings.values():
            if h.qty:
                session.send(61, 3, self.accounts[0], self.symbols[h.symbol], h.symbol, "STK", "", 0.0, "", "", "", "USD",
                             h.symbol, "NMS", h.qty, h.avg_cost)  # fmt: skip
        session.send(62, 1)

    def _open_orders(self, session: _Session, fields: list[str], everyone: bool = False) -> None:
        for order in self.orders:
            if order.is_open and (everyone or order.client_id == session.client_id):
                session.send(*_open_order(order))
                session.send(*_order_status(order))
        session.send(53, 1)

    def _all_open_orders(self, session: _Session, fields: list[str]) -> None:
        self._open_orders(session, fields, everyone=True)

    def _completed_orders(self, session: _Session, fields: list[str]) -> None:
        for order in self.orders:
            if not order.is_open:
                session.send(*_completed_order(order))
        session.send(102)

    def _account_updates(self, session: _Session, fields: list[str]) -> None:
        _, _, subscribe, account = fields
        if subscribe != "1":
            return
        for tag, (value, currency) in self.account_values.items() if self._push_account_values else ():
            session.send(6, 2, tag, value, currency, account)
        session.send(8, 1, f"{self._now():%H:%M}")
        session.send(54, 1, account)

    def _account_updates_multi(self, session: _Session, fields: list[str]) -> None:
        req_id, account = fields[2], fields[3]
        for tag, (value, currency) in self.account_values.items() if self._push_account_values else ():
            session.send(73, 1, req_id, account, "", tag, value, currency)
        session.send(74, 1, req_id)

    def _account_summary(self, session: _Session, fields: list[str]) -> None:
        req_id, tags = fields[2], set(fields[4].split(","))
        for tag, (value, currency) in self.account_values.items():
            if tag in tags:
                session.send(63, 1, req_id, self.accounts[0], tag, value, currency)
        session.send(64, 1, req_id)

    def _executions(self, session: _Session, fields: list[str]) -> None:
        req_id, client_filter = int(fields[2]), int(fields[3] or 0)
        for execution in self.executions:
            if not client_filter or execution.order.client_id == client_filter:
                session.send(*_exec_details(req_id, execution))
                session.send(*_commission_report(execution))
        session.send(55, 1, req_id)

    def _contract_details(self, session: _Session, fields: list[str]) -> None:
        req_id, symbol = int(fields[2]), fields[4]
        self.contract_requests.append(symbol)
        if symbol not in self.symbols:
            session.send(4, 2, req_id, 200, "No security definition has been found for the request")
            return
        session.send(*_contract_details(req_id, symbol, self.symbols[symbol]))
        session.send(52, 1, req_id)

    def _place_order(self, session: _Session, f: list[str]) -> None:
        # placeOrder at v157: 3, orderId, 12 contract fields (conId symbol secType ... tradingClass), secIdType,
        # secId, action, totalQuantity, orderType, lmtPrice, auxPrice, tif, ocaGroup, account, openClose, origin,
        # orderRef, ... and ocaType at index 47 (after the FA fields and faProfile, sent below v177).
        order_id, symbol, order_ref = int(f[1]), f[3], f[26]
        self.place_requests.append(order_ref)
        if self._lose_next:
            self._lose_next = False
            return
        existing = next((o for o in self.orders if o.client_id == session.client_id and o.order_id == order_id), None)
        if existing is not None and existing.is_open:  # a modification
            existing.qty, existing.lmt_price, existing.aux_price = Decimal(f[17]), f[19], f[20]
            session.send(*_open_order(existing))
            session.send(*_order_status(existing))
            return
        refusal = self._rejections.pop(symbol, None)
        if refusal is not None and refusal[0] != 201:
            session.send(4, 2, order_id, *refusal)
            return
        order = FakeOrder(
            order_id=order_id, client_id=session.client_id, perm_id=self._perm_id(), account=f[23] or self.accounts[0],
            symbol=symbol, con_id=int(f[2] or 0), action=f[16], qty=Decimal(f[17]), order_type=f[18], lmt_price=f[19],
            aux_price=f[20], tif=f[21], oca_group=f[22], oca_type=int(f[47] or 0), order_ref=order_ref,
            status="PreSubmitted" if f[21] == "OPG" or f[18] == "STP" else "Submitted",
        )  # fmt: skip
        self.orders.append(order)
        if refusal is not None:
            self._finish(order, "Inactive", f"Rejected: {refusal[1]}")
            session.send(4, 2, order_id, 201, f"Order rejected - reason:{refusal[1]}")
            session.send(*_order_status(order))
        elif self._silence_next:
            self._silence_next = False
        elif self._drop_next:
            self._drop_next = False
            self.drop_connections()
        else:
            if order.tif == "OPG":  # placed before the open, as TWS warns (a warning: the order stays live)
                session.send(4, 2, order_id, 399, f"Order Message:\n{order.action} {order.qty} {symbol} NASDAQ.NMS\n"
                             f"Warning: your order will not be placed at the exchange until {self._now():%Y-%m-%d} "
                             "09:30:00 US/Eastern")  # fmt: skip
            session.send(*_open_order(order))
            session.send(*_order_status(order))

    def _cancel_order(self, session: _Session, fields: list[str]) -> None:
        order_id = int(fields[2])
        self.cancel_requests.append((session.client_id, order_id))
        order = next((o for o in self.orders if o.client_id == session.client_id and o.order_id == order_id), None)
        if order is None:
            session.send(4, 2, order_id, 135, f"Can't find order with id = {order_id}")
        elif not order.is_open:
            session.send(4, 2, order_id, 10148,
                         f"OrderId {order_id} that needs to be cancelled cannot be cancelled, state: {order.status}.")  # fmt: skip
        else:
            self._finish(order, "Cancelled")
            session.send(*_order_status(order))
            session.send(4, 2, order_id, 202, "Order Canceled - reason:")

    def _req_ids(self, session: _Session, fields: list[str]) -> None:
        session.send(9, 1, self._next_order_id(session.client_id))

    def _current_time(self, session: _Session, fields: list[str]) -> None:
        session.send(49, 1, int(self._now().timestamp()))

    def _managed_accounts(self, session: _Session, fields: list[str]) -> None:
        session.send(15, 1, ",".join(self.accounts))

    def _ignore(self, session: _Session, fields: list[str]) -> None:
        pass

    def _market_data_type(self, session: _Session, fields: list[str]) -> None:
        self.market_data_type = int(fields[2])

    def _cancel(self, kind: str) -> Callable[[_Session, list[str]], None]:
        def cancel(session: _Session, fields: list[str]) -> None:
            self.cancelled.append((kind, int(fields[2])))

        return cancel

    def _historical_data(self, session: _Session, f: list[str]) -> None:
        # reqHistoricalData at v157 (no version field): 20, reqId, 12 contract fields, includeExpired, endDateTime,
        # barSizeSetting, durationStr, useRTH, whatToShow, formatDate, keepUpToDate, chartOptions.
        req_id, symbol = int(f[1]), f[3]
        request = HistoryRequest(symbol, f[15], f[17], f[16], f[19], f[18] == "1", int(f[20]))
        self.history_requests.append(request)
        if self._history_failure is not None:
            code, message = self._history_failure
            self._history_failure = None
            session.send(4, 2, req_id, code, message)
            return
        end = _parse_end(request.end) or self._now()
        start = end - _parse_duration(request.duration)
        if request.bar_size == "1 day":
            last_day, first_day = end.astimezone(NEW_YORK).date(), start.astimezone(NEW_YORK).date()
            bars = [b for b in self.daily_bars.get(symbol, []) if first_day < b[0] <= last_day]
            stamps = [f"{b[0]:%Y%m%d}" for b in bars]
        elif request.bar_size == "1 min":
            bars = [
                b for b in self.minute_bars.get(symbol, [])
                if start <= b[0] < end and (not request.use_rth or time(9, 30) <= b[0].time() < time(16))
            ]  # fmt: skip
            stamps = [_bar_time(b[0], request.format_date) for b in bars]
        else:
            self.unhandled.append(f)
            return
        if not bars:
            session.send(4, 2, req_id, 162,
                         f"Historical Market Data Service error message:HMDS query returned no data: {symbol}@SMART Trades")  # fmt: skip
            return
        fields: list = [17, req_id, f"{start:%Y%m%d %H:%M:%S}", f"{end:%Y%m%d %H:%M:%S}", len(bars)]
        for stamp, (_, open_, high, low, close, volume) in sorted(zip(stamps, bars, strict=True), key=lambda p: p[1][0]):
            fields += [stamp, open_, high, low, close, volume, round((high + low + close) / 3, 4), max(1, volume // 100)]
        session.send(*fields)

    def _market_data(self, session: _Session, f: list[str]) -> None:
        # reqMktData at v157: 1, 11, reqId, 12 contract fields, deltaNeutralContract flag (+ 3 fields when set),
        # genericTickList, snapshot, regulatorySnapshot, mktDataOptions.
        req_id, symbol = int(f[2]), f[4]
        snapshot = f[17 + (3 if f[15] == "1" else 0)] == "1"
        self.snapshot_requests.append(symbol)
        if not snapshot:  # the fake only answers snapshots
            self.unhandled.append(f)
            return
        delayed = self.market_data_type in (3, 4)
        if self._market_data_refusal is not None:
            code, message = self._market_data_refusal
            session.send(4, 2, req_id, code, message)
            if code != 10167:
                return
            delayed = True  # "Displaying delayed market data"
        ticks = _DELAYED_TICKS if delayed else _LIVE_TICKS
        if delayed:
            session.send(58, 1, req_id, 3)
        quote = self.quotes.get(symbol, Quote())
        for name in ("bid", "ask", "last", "close"):
            price = getattr(quote, name)
            if price is not None:  # tickPrice: 1, version, reqId, tickType, price, size, attrMask
                session.send(1, 6, req_id, ticks[name], price, 0 if name == "close" else 100, 0)
        if quote.volume is not None:  # tickSize: 2, version, reqId, tickType, size
            session.send(2, 6, req_id, ticks["volume"], quote.volume)
        if quote.last_time is not None:  # tickString: 46, version, reqId, tickType, value (epoch seconds)
            session.send(46, 6, req_id, ticks["last_time"], int(quote.last_time.timestamp()))
        session.send(57, 1, req_id)

    def _scanner_subscription(self, session: _Session, f: list[str]) -> None:
        # reqScannerSubscription at v157 (no version field): 22, reqId, numberOfRows, instrument, locationCode, scanCode, ...
        req_id, rows = int(f[1]), int(f[2] or -1)
        self.scanner_requests.append((f[3], f[4], f[5], rows))
        symbols = self.scanner_symbols[: rows if rows > 0 else 50]
        fields: list = [20, 3, req_id, len(symbols)]
        for rank, symbol in enumerate(symbols):
            # rank conId symbol secType lastTradeDate strike right exchange currency localSymbol marketName
            # tradingClass distance benchmark projection legsStr
            fields += [rank, self.symbols[symbol], symbol, "STK", "", "", "", "SMART", "USD", symbol, "NMS", "NMS",
                       "", "", "", ""]  # fmt: skip
        session.send(*fields)

    # --- state -------------------------------------------------------------------------------
    def _open_order_with_ref(self, order_ref: str) -> FakeOrder:
        matches = [o for o in self.orders if o.order_ref == order_ref and o.is_open]
        if len(matches) != 1:
            raise AssertionError(f"expected one open order with orderRef {order_ref}, found {len(matches)}")
        return matches[0]

    def _finish(self, order: FakeOrder, status: str, completed_status: str = "") -> None:
        order.status = status
        order.completed_time = f"{self._now():%Y%m%d %H:%M:%S} America/New_York"
        order.completed_status = completed_status or status

    def _book(self, symbol: str, shares: Decimal, price: Decimal) -> None:
        holding = self.holdings.setdefault(symbol, Holding(symbol, Decimal(0), Decimal(0)))
        total = holding.qty + shares
        if shares > 0 and total:
            holding.avg_cost = (holding.avg_cost * holding.qty + price * shares) / total
        holding.qty = total
        if not total:
            holding.avg_cost = Decimal(0)

    def _perm_id(self) -> int:
        self._next_perm_id += 1
        return self._next_perm_id - 1

    def _next_order_id(self, client_id: int | None) -> int:
        return max((o.order_id for o in self.orders if o.client_id == client_id), default=0) + 1


# --- wire encoding: field lists in ib_async's decoder order at server version 157 ---------------------
def _contract(order: FakeOrder) -> list:
    """conId, symbol, secType, lastTradeDate, strike, right, multiplier, exchange, currency, localSymbol, tradingClass."""
    return [order.con_id, order.symbol, "STK", "", 0.0, "", "", "SMART", "USD", order.symbol, "NMS"]


def _order_status(o: FakeOrder) -> list:
    # 3: orderId status filled remaining avgFillPrice permId parentId lastFillPrice clientId whyHeld mktCapPrice
    return [3, o.order_id, o.status, o.filled, o.remaining, o.avg_price, o.perm_id, 0, o.last_price, o.client_id, "", 0]


def _open_order(o: FakeOrder) -> list:
    return [
        5, o.order_id, *_contract(o),
        o.action, o.qty, o.order_type, o.lmt_price, o.aux_price, o.tif, o.oca_group, o.account, "", 0, o.order_ref,
        o.client_id, o.perm_id, 0, 0, 0, "",  # outsideRth hidden discretionaryAmt goodAfterTime
        "", "", "", "", "",  # sharesAllocation (skipped), faGroup faMethod faPercentage, faProfile (below v177)
        "", "", "", "", "", 0, "", -1,  # modelCode goodTillDate rule80A percentOffset settlingFirm shortSaleSlot designatedLocation exemptCode
        0, "", "", "", "", "",  # auctionStrategy startingPrice stockRefPrice delta stockRangeLower stockRangeUpper
        0, 0, 0, 0, "", o.oca_type,  # displaySize blockOrder sweepToFill allOrNone minQty ocaType
        0, 0, "", 0, 0, "", 0, "", "",  # eTradeOnly firmQuoteOnly nbboPriceCap parentId triggerMethod volatility volatilityType dnOrderType dnAuxPrice
        0, 0, "", "", "", "", "",  # continuousUpdate referencePriceType trailStopPrice trailingPercent basisPoints basisPointsType comboLegsDescrip
        0, 0, 0,  # combo legs, order combo legs, smart combo routing params
        "", "", "",  # scaleInitLevelSize scaleSubsLevelSize scalePriceIncrement
        "",  # hedgeType
        0, "", "", 0, 0,  # optOutSmartRouting clearingAccount clearingIntent notHeld deltaNeutralContract present
        "",  # algoStrategy
        0, 0, o.status, *[""] * 12, "", "", 0, 0,  # solicited whatIf status, 9 margins + 3 commissions, currency, warning, randomize x2
        0,  # conditions
        "", "", "", "", "", "", "", 0,  # adjustedOrderType triggerPrice trailStopPrice lmtPriceOffset adjustedStop(Limit)Price adjustedTrailingAmount adjustableTrailingUnit
        "", "", "", "", 0, 0, 0, 0,  # softDollarTier name val displayName, cashQty, dontUseAutoPriceForHedge isOmsContainer discretionaryUpToLimitPrice usePriceMgmtAlgo
    ]  # fmt: skip


def _completed_order(o: FakeOrder) -> list:
    return [
        101, *_contract(o),
        o.action, o.qty, o.order_type, o.lmt_price, o.aux_price, o.tif, o.oca_group, o.account, "", 0, o.order_ref,
        o.perm_id, 0, 0, 0, "",  # permId outsideRth hidden discretionaryAmt goodAfterTime
        "", "", "", "",  # faGroup faMethod faPercentage, faProfile (below v177)
        "", "", "", "", "", 0, "", -1,  # modelCode goodTillDate rule80A percentOffset settlingFirm shortSaleSlot designatedLocation exemptCode
        "", "", "", "", "",  # startingPrice stockRefPrice delta stockRangeLower stockRangeUpper
        0, 0, 0, "", o.oca_type, 0, "", 0, "", "",  # displaySize sweepToFill allOrNone minQty ocaType triggerMethod volatility volatilityType dnOrderType dnAuxPrice
        0, 0, "", "", "",  # continuousUpdate referencePriceType trailStopPrice trailingPercent comboLegsDescrip
        0, 0, 0,  # combo legs, order combo legs, smart combo routing params
        "", "", "",  # scaleInitLevelSize scaleSubsLevelSize scalePriceIncrement
        "",  # hedgeType
        "", "", 0, 0,  # clearingAccount clearingIntent notHeld deltaNeutralContract present
        "",  # algoStrategy
        0, o.status, 0, 0,  # solicited status randomizeSize randomizePrice
        0,  # conditions
        "", "", "", 0, 0, "", o.filled, 0, 0, "", 0, 0, 0,  # trailStopPrice lmtPriceOffset cashQty dontUseAutoPrice isOms autoCancelDate filledQuantity refFuturesConId autoCancelParent shareholder imbalanceOnly routeMarketableToBbo parentPermId
        o.completed_time, o.completed_status,
    ]  # fmt: skip


def _exec_details(req_id: int, e: FakeExecution) -> list:
    o = e.order
    return [
        11, req_id, o.order_id, *_contract(o),
        e.exec_id, f"{e.time:%Y%m%d %H:%M:%S} America/New_York", o.account, "ISLAND",
        "BOT" if o.action == "BUY" else "SLD", e.shares, e.price, o.perm_id, o.client_id, 0, e.cum_qty, e.avg_price,
        o.order_ref, "", "", "", 1,  # evRule evMultiplier modelCode lastLiquidity
    ]  # fmt: skip


def _commission_report(e: FakeExecution) -> list:
    # 59: version execId commission currency realizedPNL yield yieldRedemptionDate
    return [59, 1, e.exec_id, e.commission, "USD", "", "", ""]


def _contract_details(req_id: int, symbol: str, con_id: int) -> list:
    return [
        10, 8, req_id, symbol, "STK", "", 0.0, "", "SMART", "USD", symbol, "NMS", "NMS", con_id, 0.01,
        1,  # mdSizeMultiplier (dropped by ib_async below v164)
        "", "ACTIVETIM,LMT,MKT,MOC,MOO,OCA,STP", "SMART,NASDAQ,NYSE", 1, 0, f"{symbol} INC", "NASDAQ", "",
        "Technology", "Software", "Applications", "US/Eastern", "", "", "", "",  # ... timeZoneId tradingHours liquidHours evRule evMultiplier
        0,  # secIdList
        1, "", "", "26", "", "COMMON",  # aggGroup underSymbol underSecType marketRuleIds realExpirationDate stockType
    ]  # fmt: skip


def _parse_end(text: str) -> datetime | None:
    """reqHistoricalData's endDateTime: "" (now) or "yyyymmdd hh:mm:ss <zone>" (ib_async sends UTC)."""
    if not text:
        return None
    day, clock, zone = text.split(" ", 2)
    moment = datetime.strptime(f"{day} {clock}", "%Y%m%d %H:%M:%S")
    return moment.replace(tzinfo=UTC if zone == "UTC" else ZoneInfo(zone))


def _parse_duration(text: str) -> timedelta:
    count, unit = text.split(" ")
    return int(count) * _DURATION_UNITS[unit]


def _bar_time(start: datetime, format_date: int) -> str:
    """An intraday bar's time as TWS sends it: epoch seconds (formatDate 2) or New York time with its zone (1)."""
    if format_date == 2:
        return str(int(start.timestamp()))
    return f"{start.astimezone(NEW_YORK):%Y%m%d %H:%M:%S} America/New_York"


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value else "0"
    return str(value)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("client closed the connection")
        data += chunk
    return data


def _recv_frame(sock: socket.socket) -> bytes:
    (size,) = struct.unpack(">I", _recv_exact(sock, 4))
    return _recv_exact(sock, size)
