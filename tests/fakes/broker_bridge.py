"""Fake brokers that fill like an exchange: the fake Alpaca and the fake TWS with a paper broker as matching engine.

The fakes fill only when a test tells them to. For a whole replayed day through the flows, each fake
here mirrors every order it accepts (and every cancel) into a real `PaperBroker` that runs on the
replay's own timeline, and copies what that paper broker reports back into the fake's books through
the fake's scripting methods (`fill`, `expire`). The flows then trade the real alpaca-py or ib_async
client against a fake that fills exactly by the paper fill model, so a day through a fake can be
compared trade for trade with the same day on the paper broker.

    flows -- real SDK client -- socket -- Bridged fake --mirror--> PaperBroker (FollowingClock)
                                              ^                          |
                                              +------- catch_up ---------+  fills, expiries

The fake catches up before it answers any request, and in between on a short timer. A push-based
client (ib_async) learns about fills from messages the fake sends on its own; the IBKR adapter makes a
round trip to TWS before every read, so what the fake pushed before it answers is never missed. Fills
are applied with the clock pinned to the paper fill's time, so the fake stamps them as the paper broker did.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path

from openbell import calendar, wiring
from openbell.core.backtest import FillCosts
from openbell.core.types import ClientOrderId, Fill, OrderIntent, OrderStatus, OrderType, Purpose, Side, Symbol, TimeInForce
from openbell.errors import OrderRejected
from openbell.store import Store
from openbell.venues.paper import PaperBroker
from openbell.venues.replay import ParquetReplaySource
from tests.fakes.fake_alpaca import FakeAlpaca
from tests.fakes.fake_tws import FakeOrder, FakeTws, Holding, _order_status

__all__ = ["BridgedAlpaca", "BridgedTws", "FollowingClock", "Holding", "PaperExchange"]

FOLLOW_INTERVAL_S = 0.002  # how often a fake catches up with the replay between requests
_PLACE_ORDER, _CANCEL_ORDER = 3, 4  # IB API message ids


class FollowingClock:
    """The replay of `day` in this process as a fake exchange sees it: it follows, it never leads.

    `now()` is `wiring.replay_time(day)`, or `before_open` of the day until a replay begins. A replay of
    `day` that had already run when the clock was made (an earlier run in the same test session) is
    not followed: the clock waits until a new replay starts, which `replay_time` shows by going back.

    `source` replaces `wiring.replay_time(day)` as where the replay's time is read: a day replayed in
    another process publishes its timeline, and the fake in the test process follows that.
    """

    def __init__(
        self, day: date, before_open: time = time(8, 0), source: Callable[[], datetime | None] | None = None
    ) -> None:
        self._day = day
        self._start = datetime.combine(day, before_open, tzinfo=calendar.NEW_YORK)
        self._source = source or (lambda: wiring.replay_time(day))
        self._stale = self._source()
        self._pinned: datetime | None = None

    def now(self) -> datetime:
        if self._pinned is not None:
            return self._pinned
        moment = self._source()
        if moment is not None and self._stale is not None and moment < self._stale:
            self._stale = None  # a new replay of the day has started
        return self._start if moment is None or self._stale is not None else moment

    def sleep_until(self, moment: datetime) -> None:
        raise RuntimeError("a FollowingClock follows the replay's timeline; only the flows move it")

    @contextmanager
    def pinned(self, moment: datetime) -> Iterator[None]:
        """Read `moment` while the fake books something that happened then (a fill of an earlier bar)."""
        self._pinned = moment
        try:
            yield
        finally:
            self._pinned = None


class PaperExchange:
    """A PaperBroker on an in-memory store and the replay's timeline, used as a fake broker's matching engine."""

    def __init__(
        self,
        day: date,
        minute_bars: Path,
        daily_bars: Path,
        costs: FillCosts = FillCosts(),
        replay_time: Callable[[], datetime | None] | None = None,  # FollowingClock's `source`
    ) -> None:
        self.day = day
        self.clock = FollowingClock(day, source=replay_time)
        store = Store(":memory:")
        store.migrate()
        self.paper = PaperBroker(store, ParquetReplaySource(minute_bars, daily_bars), self.clock, day, costs)
        self.errors: list[str] = []  # what the fake could not mirror or apply; a test asserts it stays empty
        self._ids: list[ClientOrderId] = []
        self._applied: set[str] = set()  # fill ids and expired order ids already copied to the fake

    def accept(self, intent: OrderIntent) -> None:
        try:
            self.paper.submit(intent)
        except OrderRejected as rejected:
            self.errors.append(f"the paper engine refused an order the fake accepted: {rejected}")
            return
        self._ids.append(intent.client_order_id)

    def cancel(self, client_order_id: str) -> None:
        if client_order_id in self._ids:
            self.paper.cancel(ClientOrderId(client_order_id))

    def news(self) -> tuple[list[Fill], list[ClientOrderId]]:
        """Fills (in time order) and expiries that the paper engine has had since the last call."""
        fills = [f for f in self.paper.fills_since(None) if f.fill_id not in self._applied]
        expired = [i for i in self._ids if i not in self._applied and self.paper.order(i).status is OrderStatus.EXPIRED]
        self._applied.update([f.fill_id for f in fills] + expired)
        return fills, expired


class _Following:
    """What both bridged fakes share: catching up with the paper engine before every answer, and on a timer."""

    engine: PaperExchange
    _lock: threading.RLock  # the fake's own lock: catching up and answering never interleave

    def _follow(self) -> None:
        self._seen: datetime | None = None
        self._stopped = threading.Event()
        threading.Thread(target=self._follow_forever, name="bridge-follow", daemon=True).start()

    def _follow_forever(self) -> None:
        while not self._stopped.wait(FOLLOW_INTERVAL_S):
            self.catch_up()

    def stop_following(self) -> None:
        """Stop the timer; the fake still catches up before it answers a request."""
        self._stopped.set()

    def catch_up(self) -> bool:
        """Copy the paper engine's fills and expiries up to the replay's time into the fake's books.

        Returns True when something was copied (and pushed to connected clients).
        """
        with self._lock:
            now = self.engine.clock.now()
            if now == self._seen:
                return False
            self._seen = now
            fills, expired = self.engine.news()
            for fill in fills:
                with self.engine.clock.pinned(fill.ts):
                    self._guarded(self._apply_fill, fill)
            for order_id in expired:
                self._guarded(self._apply_expiry, order_id)
            return bool(fills or expired)

    def _guarded(self, act: Callable, *args) -> None:
        # A failure here must not take the fake's request handler down with it: record it for the test.
        try:
            act(*args)
        except Exception as exc:  # noqa: BLE001
            self.engine.errors.append(f"{act.__name__}{args}: {exc!r}")

    def _apply_fill(self, fill: Fill) -> None:
        raise NotImplementedError

    def _apply_expiry(self, order_id: ClientOrderId) -> None:
        raise NotImplementedError


class BridgedAlpaca(_Following, FakeAlpaca):
    """The fake Alpaca trading API, filling by the paper fill model. `start()` serves it, as FakeAlpaca's does."""

    def __init__(self, engine: PaperExchange, **keys) -> None:
        super().__init__(engine.clock, **keys)
        self.engine = engine
        self._follow()

    def stop(self) -> None:
        self.stop_following()
        super().stop()

    def respond(self, method: str, path: str, query: dict[str, str], body: dict | None) -> tuple[int, object]:
        with self._lock:
            self.catch_up()
            status, payload = super().respond(method, path, query, body)
            if (method, path) == ("POST", "/v2/orders") and status == 200:
                for intent in alpaca_intents(body):
                    self.engine.accept(intent)
            elif method == "DELETE" and path == "/v2/orders" and status == 207:
                for cancelled in payload:
                    self._cancel_in_engine(cancelled["id"])
            elif method == "DELETE" and path.startswith("/v2/orders/") and status == 204:
                self._cancel_in_engine(path.removeprefix("/v2/orders/"))
            return status, payload

    def _cancel_in_engine(self, alpaca_id: str) -> None:
        # Cancelling a one-cancels-other order at Alpaca cancels both halves; the paper engine holds them apart.
        _, order = FakeAlpaca.respond(self, "GET", f"/v2/orders/{alpaca_id}", {}, None)
        client_id = order["client_order_id"]
        self.engine.cancel(client_id)
        if order["order_class"] == "oco":
            self.engine.cancel(_sibling(client_id, Purpose.STOP))

    def _apply_fill(self, fill: Fill) -> None:
        if _purpose(fill.client_order_id) is Purpose.STOP:  # Alpaca names the stop leg itself: reach it by its parent
            self.fill_stop_leg(_sibling(fill.client_order_id, Purpose.TARGET), fill.price)
        else:
            self.fill(fill.client_order_id, fill.price, fill.qty)

    def _apply_expiry(self, order_id: ClientOrderId) -> None:
        if _purpose(order_id) is not Purpose.STOP:  # a stop leg has Alpaca's id, not ours: it stays with its parent
            self.expire(order_id)


class BridgedTws(_Following, FakeTws):
    """The fake TWS, filling by the paper fill model. Takes FakeTws's keyword arguments except `now`."""

    def __init__(self, engine: PaperExchange, **kwargs) -> None:
        super().__init__(engine.clock.now, **kwargs)
        self.engine = engine
        self._handlers = {code: self._following(code, handler) for code, handler in self._handlers.items()}
        self._follow()

    def stop(self) -> None:
        self.stop_following()
        super().stop()

    def _following(self, code: int, handler: Callable) -> Callable:
        """The handler of one request type, after a catch-up; new orders and cancels also go to the engine."""

        def handle(session, fields: list[str]) -> None:
            self.catch_up()
            known = len(self.orders)
            cancelling = self._working_order(session.client_id, int(fields[2])) if code == _CANCEL_ORDER else None
            handler(session, fields)
            if code == _PLACE_ORDER:
                for order in self.orders[known:]:
                    if order.status != "Inactive":  # a scripted rejection never reaches the exchange
                        self.engine.accept(tws_intent(order))
            if cancelling is not None and cancelling.status == "Cancelled":
                self.engine.cancel(cancelling.order_ref)

        return handle

    def _working_order(self, client_id: int, order_id: int) -> FakeOrder | None:
        return next((o for o in self.orders if (o.client_id, o.order_id) == (client_id, order_id) and o.is_open), None)

    def _apply_fill(self, fill: Fill) -> None:
        self.fill(fill.client_order_id, fill.price, fill.qty)

    def _apply_expiry(self, order_id: ClientOrderId) -> None:
        """A market-on-open order with no opening print: IB cancels it (the adapter reads that as expired)."""
        (order,) = [o for o in self.orders if o.order_ref == order_id and o.is_open]
        self._finish(order, "Cancelled")
        session = self._session_of(order.client_id)
        if session is not None:
            session.send(*_order_status(order))


# --- what an order on the wire asks for, read by the exchange itself ---------------------------------
def alpaca_intents(body: dict) -> list[OrderIntent]:
    """The intents of a POST /v2/orders body; a one-cancels-other order is a target and its stop."""
    client_id, symbol = ClientOrderId(body["client_order_id"]), Symbol(body["symbol"])
    side, qty = Side(body["side"]), int(Decimal(str(body["qty"])))
    if body.get("order_class") == "oco":
        group = _stem(client_id) + "exit"
        return [
            OrderIntent(client_id, symbol, side, qty, OrderType.LIMIT, Purpose.TARGET,
                        limit_price=_price(body["take_profit"]["limit_price"]), oco_group=group),
            OrderIntent(_sibling(client_id, Purpose.STOP), symbol, side, qty, OrderType.STOP, Purpose.STOP,
                        stop_price=_price(body["stop_loss"]["stop_price"]), oco_group=group),
        ]  # fmt: skip
    return [
        OrderIntent(client_id, symbol, side, qty, OrderType(body["type"]), _purpose(client_id),
                    TimeInForce(body["time_in_force"]), _price(body.get("limit_price")), _price(body.get("stop_price")))
    ]  # fmt: skip


_IB_TYPES = {"MKT": OrderType.MARKET, "LMT": OrderType.LIMIT, "STP": OrderType.STOP}


def tws_intent(order: FakeOrder) -> OrderIntent:
    """The intent of an order placed at the fake TWS (its orderRef is the client order id)."""
    order_type = _IB_TYPES[order.order_type]
    return OrderIntent(
        client_order_id=ClientOrderId(order.order_ref),
        symbol=Symbol(order.symbol),
        side=Side.BUY if order.action == "BUY" else Side.SELL,
        qty=int(order.qty),
        order_type=order_type,
        purpose=_purpose(order.order_ref),
        tif=TimeInForce.OPG if order.tif == "OPG" else TimeInForce.DAY,
        limit_price=_price(order.lmt_price) if order_type is OrderType.LIMIT else None,
        stop_price=_price(order.aux_price) if order_type is OrderType.STOP else None,
        oco_group=order.oca_group or None,
    )


def _price(value) -> Decimal | None:
    return None if value in (None, "") else Decimal(str(value))


def _purpose(client_order_id: str) -> Purpose:
    return Purpose(client_order_id.rsplit("-", 1)[-1])


def _stem(client_order_id: str) -> str:
    return client_order_id.rsplit("-", 1)[0] + "-"


def _sibling(client_order_id: str, purpose: Purpose) -> ClientOrderId:
    """`ob-YYYYMMDD-SYM-target` -> `ob-YYYYMMDD-SYM-stop` and back."""
    return ClientOrderId(_stem(client_order_id) + purpose.value)
