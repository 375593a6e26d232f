"""A fake Alpaca trading API on 127.0.0.1 that the real alpaca-py TradingClient talks to, with scripted trouble.

It speaks enough of Alpaca's v2 JSON for `TradingClient(url_override=fake.url)`: POST/GET/DELETE
/v2/orders, GET/DELETE /v2/orders/{id}, GET /v2/orders:by_client_order_id, GET /v2/account,
/v2/positions and /v2/clock. Like Alpaca it enforces one order per client order id forever (422),
keys on every request (401), shares held by open sell orders (403 "insufficient qty available"),
one-cancels-other orders as a limit parent with one stop leg ("held" while the parent works),
`nested=true` listings, `after`/`until`/`direction`/`limit`.

Nothing fills by itself: a test moves the market with `fill`, `fill_stop_leg`, `expire`. Trouble is
scripted for the next requests: `reject_next_order` (e.g. 403 with a reason), `refuse_orders` (every order
with one client order id, as a pattern-day-trader block does), `answer_next_order_late`
(accept, then answer after the client gave up; or accept only late), `gateway_timeout_next_order`
(accept, then 504), `rate_limit` (429s), and `stop`/`start` (the server goes away and comes back on
the same port with the same books). State lives in this object, not in the server thread.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

from openbell import calendar
from openbell.clock import Clock
from tests.fakes.loopback import LoopbackHttp, QuietHandler

OPEN = frozenset({"new", "accepted", "pending_new", "partially_filled", "held", "pending_cancel", "accepted_for_bidding"})
_NAMESPACE = uuid.UUID("6f1c2a8e-0b1d-4c9a-9a57-000000a1aca0")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _error(status: int, code: int, message: str) -> tuple[int, dict]:
    return status, {"code": code, "message": message}


@dataclass
class _Script:
    """What happens to the next POST /v2/orders."""

    kind: str  # "reject", "late", "late-accept", "504"
    status: int = 0
    code: int = 0
    message: str = ""
    seconds: float = 0.0


class FakeAlpaca(LoopbackHttp):
    """Alpaca's trading API in miniature; `start()` serves it, `url` is what `url_override` takes."""

    def __init__(
        self, clock: Clock, *, api_key: str = "PKFAKE0KEY", secret_key: str = "fake-secret", cash: Decimal = Decimal(100_000)
    ) -> None:
        self.clock = clock
        self.api_key, self.secret_key = api_key, secret_key
        self.cash = cash
        self.account_fields: dict = {}  # extra /v2/account fields (Alpaca dropped pattern_day_trader in 2026)
        self.requests: list[str] = []  # "METHOD /path" of every request, in order
        self._lock = threading.RLock()
        self._orders: dict[str, dict] = {}  # alpaca id -> order JSON (parents, simple orders and legs)
        self._legs: dict[str, list[str]] = {}  # parent id -> leg ids
        self._parent: dict[str, str] = {}  # leg id -> parent id
        self._by_client: dict[str, str] = {}  # client order id -> alpaca id
        self._positions: dict[str, tuple[Decimal, Decimal]] = {}  # symbol -> (qty, avg price)
        self._scripts: deque[_Script] = deque()
        self._refused_ids: dict[str, tuple[int, int, str]] = {}  # client order id -> every POST of it refused so
        self._rate_limits: dict[str | None, int] = {}
        self._cancel_delay = 0  # requests a cancel stays pending_cancel (0: cancels at once)
        self._pending_cancels: dict[str, int] = {}  # alpaca id -> requests left before it is canceled
        self._seq = 0

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> FakeAlpaca:
        """Serve on a free port the first time, on the same port after a `stop`."""
        self.serve(_Handler)
        return self

    def stop(self) -> None:
        """Go away: new connections are refused until `start` (the books are kept)."""
        self.shutdown()

    # --- scripted trouble -----------------------------------------------------------------
    def reject_next_order(self, status: int = 403, code: int = 40310100, message: str = "trade denied due to pattern day trading protection") -> None:  # fmt: skip
        self._scripts.append(_Script("reject", status, code, message))

    def refuse_orders(self, client_order_id: str, status: int = 403, code: int = 40310100, message: str = "trade denied due to pattern day trading protection") -> None:  # fmt: skip
        """Refuse every POST of an order with this client order id (a one-cancels-other pair by its target's id)."""
        self._refused_ids[client_order_id] = (status, code, message)

    def answer_next_order_late(self, seconds: float, *, accept_first: bool = True) -> None:
        """Hold the next order's answer `seconds`; the order is stored before the wait (or only after it)."""
        self._scripts.append(_Script("late" if accept_first else "late-accept", seconds=seconds))

    def gateway_timeout_next_order(self) -> None:
        """Store the next order, then answer 504 as a gateway that lost the answer would."""
        self._scripts.append(_Script("504"))

    def rate_limit(self, times: int = 1, method: str | None = None) -> None:
        """Answer the next `times` requests (of `method`, or any) with 429."""
        self._rate_limits[method] = self._rate_limits.get(method, 0) + times

    # --- the market -----------------------------------------------------------------------
    def hold(self, symbol: str, qty: int, avg_price: Decimal) -> None:
        """A position the account already has (bought outside openbell)."""
        with self._lock:
            self._positions[symbol] = (Decimal(qty), Decimal(avg_price))

    def place(self, body: dict) -> dict:
        """An order placed by someone else (another app, the web UI): the same rules as POST /v2/orders."""
        status, payload = self._create(body)
        assert status == 200, payload
        return payload

    def fill(self, client_order_id: str, price: Decimal | str, qty: int | None = None) -> None:
        """Execute `qty` (default: the rest) of an open order at `price`; a filled OCO half cancels the other."""
        with self._lock:
            self._execute(self._orders[self._by_client[client_order_id]], Decimal(str(price)), qty)

    def fill_stop_leg(self, parent_client_order_id: str, price: Decimal | str) -> None:
        with self._lock:
            parent_id = self._by_client[parent_client_order_id]
            (leg_id,) = self._legs[parent_id]
            self._execute(self._orders[leg_id], Decimal(str(price)), None)

    def expire(self, client_order_id: str) -> None:
        with self._lock:
            order = self._orders[self._by_client[client_order_id]]
            order.update(status="expired", expired_at=_iso(self.clock.now()), updated_at=_iso(self.clock.now()))

    # --- inspection -----------------------------------------------------------------------
    def orders_with_client_id(self, client_order_id: str) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(o) for o in self._orders.values() if o["client_order_id"] == client_order_id]

    def orders_with_client_id_prefix(self, prefix: str) -> list[dict]:
        """Every order (legs aside) whose client order id starts with `prefix`."""
        with self._lock:
            return [
                copy.deepcopy(o)
                for i, o in self._orders.items()
                if o["client_order_id"].startswith(prefix) and i not in self._parent
            ]

    def order_count(self) -> int:
        with self._lock:
            return sum(1 for order_id in self._orders if order_id not in self._parent)

    # --- the API --------------------------------------------------------------------------
    def slow_cancels(self, requests: int) -> None:
        """From now on a cancel leaves the order `pending_cancel` for this many later requests, as Alpaca's
        asynchronous cancels do (meanwhile its shares stay held: a sell of them is refused)."""
        with self._lock:
            self._cancel_delay = requests

    def respond(self, method: str, path: str, query: dict[str, str], body: dict | None) -> tuple[int, object]:
        with self._lock:
            self._advance_pending_cancels()
            if path == "/v2/orders" and method == "POST":
                return self._create(body or {})
            if path == "/v2/orders" and method == "GET":
                return 200, self._list(query)
            if path == "/v2/orders" and method == "DELETE":
                return 207, [{"id": i, "status": 200} for i in list(self._orders) if self._cancel(i)]
            if path == "/v2/orders:by_client_order_id" and method == "GET":
                order_id = self._by_client.get(query.get("client_order_id", ""))
                if order_id is None:
                    return _error(404, 40410000, "order not found")
                return 200, self._render(order_id, nested=False)
            if path.startswith("/v2/orders/"):
                order_id = path.removeprefix("/v2/orders/")
                if order_id not in self._orders:
                    return _error(404, 40410000, "order not found")
                if method == "GET":
                    return 200, self._render(order_id, nested=query.get("nested", "").lower() == "true")
                if method == "DELETE":
                    status = self._orders[order_id]["status"]
                    if status not in OPEN:
                        return _error(422, 42210000, f'order is already in "{status}" state')
                    self._cancel(order_id)
                    return 204, None
            if path == "/v2/account" and method == "GET":
                return 200, self._account()
            if path == "/v2/positions" and method == "GET":
                return 200, [self._position(s) for s in sorted(self._positions)]
            if path == "/v2/clock" and method == "GET":
                return 200, self._clock()
            return _error(404, 40410000, f"endpoint not found: {method} {path}")

    def _create(self, body: dict) -> tuple[int, object]:
        with self._lock:
            client_order_id = body.get("client_order_id") or str(self._new_id("client"))
            if client_order_id in self._by_client:
                return _error(422, 40010001, "client_order_id must be unique")
            problem = _invalid(body)
            if problem:
                return _error(422, 40010001, problem)
            symbol, side, qty = body["symbol"], body["side"], Decimal(str(body["qty"]))
            if side == "sell":
                available = self._positions.get(symbol, (Decimal(0), Decimal(0)))[0] - self._held_for_orders(symbol)
                if qty > available:
                    return _error(403, 40310000, f"insufficient qty available for order (requested: {qty}, available: {available})")  # fmt: skip
            oco = body.get("order_class") == "oco"
            limit = (body.get("take_profit") or {}).get("limit_price") if oco else body.get("limit_price")
            parent = self._new_order(
                client_order_id, body, "limit" if oco else body["type"], limit, None if oco else body.get("stop_price")
            )
            if oco:
                leg = self._new_order(str(self._new_id("leg")), body, "stop", None, body["stop_loss"]["stop_price"])
                leg["status"] = "held"
                self._legs[parent["id"]] = [leg["id"]]
                self._parent[leg["id"]] = parent["id"]
            return 200, self._render(parent["id"], nested=True)

    def _new_order(self, client_order_id: str, body: dict, type_: str, limit, stop) -> dict:
        now = _iso(self.clock.now())
        order_id = str(self._new_id("order"))
        order = {
            "id": order_id, "client_order_id": client_order_id, "created_at": now, "updated_at": now,
            "submitted_at": now, "filled_at": None, "expired_at": None, "expires_at": None, "canceled_at": None,
            "failed_at": None, "replaced_at": None, "replaced_by": None, "replaces": None,
            "asset_id": str(uuid.uuid5(_NAMESPACE, body["symbol"])), "symbol": body["symbol"], "asset_class": "us_equity",
            "notional": None, "qty": str(Decimal(str(body["qty"]))), "filled_qty": "0", "filled_avg_price": None,
            "order_class": body.get("order_class") or "simple", "order_type": type_, "type": type_, "side": body["side"],
            "position_intent": "buy_to_open" if body["side"] == "buy" else "sell_to_close",
            "time_in_force": body["time_in_force"], "limit_price": None if limit is None else str(limit),
            "stop_price": None if stop is None else str(stop),
            "status": "accepted" if body["time_in_force"] == "opg" else "new", "extended_hours": False, "legs": None,
            "trail_percent": _text(body.get("trail_percent")), "trail_price": _text(body.get("trail_price")),
            "hwm": None, "subtag": None, "source": None,
        }  # fmt: skip
        self._orders[order_id] = order
        self._by_client[client_order_id] = order_id
        return order

    def _new_id(self, kind: str) -> uuid.UUID:
        self._seq += 1
        return uuid.uuid5(_NAMESPACE, f"{kind}-{self._seq}")

    def _held_for_orders(self, symbol: str) -> Decimal:
        return sum(
            (
                Decimal(o["qty"]) - Decimal(o["filled_qty"])
                for i, o in self._orders.items()
                if o["symbol"] == symbol and o["side"] == "sell" and o["status"] in OPEN and i not in self._parent
            ),
            Decimal(0),
        )

    def _execute(self, order: dict, price: Decimal, qty: int | None) -> None:
        assert order["status"] in OPEN, f"{order['client_order_id']} is {order['status']}, it cannot fill"
        now = _iso(self.clock.now())
        done, total = Decimal(order["filled_qty"]), Decimal(order["qty"])
        shares = Decimal(qty) if qty is not None else total - done
        average = Decimal(order["filled_avg_price"] or 0)
        filled = done + shares
        order.update(
            filled_qty=str(filled),
            filled_avg_price=str((done * average + shares * price) / filled),
            updated_at=now,
            status="filled" if filled == total else "partially_filled",
        )
        if filled == total:
            order["filled_at"] = now
        held, cost = self._positions.get(order["symbol"], (Decimal(0), Decimal(0)))
        if order["side"] == "buy":
            self.cash -= shares * price
            new = held + shares
            self._positions[order["symbol"]] = (new, (held * cost + shares * price) / new)
        else:
            self.cash += shares * price
            if held - shares:
                self._positions[order["symbol"]] = (held - shares, cost)
            else:
                del self._positions[order["symbol"]]
        if filled == total:
            for partner in self._oco_partners(order["id"]):
                self._cancel_one(partner)

    def _oco_partners(self, order_id: str) -> list[str]:
        parent = self._parent.get(order_id, order_id)
        group = [parent, *self._legs.get(parent, [])]
        return [i for i in group if i != order_id] if len(group) > 1 else []

    def _cancel(self, order_id: str) -> bool:
        """Cancel an open order; either half of a one-cancels-other order cancels both."""
        if self._orders[order_id]["status"] not in OPEN:
            return False
        for i in [order_id, *self._oco_partners(order_id)]:
            self._cancel_one(i)
        return True

    def _cancel_one(self, order_id: str) -> None:
        order = self._orders[order_id]
        if order["status"] == "pending_cancel":
            return
        if order["status"] in OPEN and self._cancel_delay:
            order.update(status="pending_cancel", updated_at=_iso(self.clock.now()))
            self._pending_cancels[order_id] = self._cancel_delay
        elif order["status"] in OPEN:
            now = _iso(self.clock.now())
            order.update(status="canceled", canceled_at=now, updated_at=now)

    def _advance_pending_cancels(self) -> None:
        for order_id, left in list(self._pending_cancels.items()):
            if left > 1:
                self._pending_cancels[order_id] = left - 1
                continue
            del self._pending_cancels[order_id]
            now = _iso(self.clock.now())
            self._orders[order_id].update(status="canceled", canceled_at=now, updated_at=now)

    def _render(self, order_id: str, *, nested: bool) -> dict:
        order = copy.deepcopy(self._orders[order_id])
        if nested and order_id in self._legs:
            order["legs"] = [copy.deepcopy(self._orders[leg]) for leg in self._legs[order_id]]
        return order

    def _list(self, query: dict[str, str]) -> list[dict]:
        nested = query.get("nested", "").lower() == "true"
        status = query.get("status", "open")
        after = _when(query["after"]) if "after" in query else None
        until = _when(query["until"]) if "until" in query else None
        chosen = []
        for order_id, order in self._orders.items():
            submitted = _when(order["submitted_at"])
            if nested and order_id in self._parent:
                continue
            if (status == "open") != (order["status"] in OPEN) and status != "all":
                continue
            if (after and submitted <= after) or (until and submitted >= until):
                continue
            chosen.append(order_id)
        chosen.sort(key=lambda i: _when(self._orders[i]["submitted_at"]), reverse=query.get("direction", "desc") == "desc")
        return [self._render(i, nested=nested) for i in chosen[: min(int(query.get("limit", 50)), 500)]]

    def _account(self) -> dict:
        equity = self.cash + sum((q * p for q, p in self._positions.values()), Decimal(0))
        return {
            "id": str(uuid.uuid5(_NAMESPACE, "account")), "account_number": "PA3FAKE0001", "status": "ACTIVE",
            "currency": "USD", "cash": str(self.cash), "buying_power": str(max(self.cash, Decimal(0)) * 2),
            "regt_buying_power": str(max(self.cash, Decimal(0)) * 2), "non_marginable_buying_power": str(self.cash),
            "equity": str(equity), "last_equity": str(equity), "portfolio_value": str(equity), "multiplier": "2",
            "trading_blocked": False, "transfers_blocked": False, "account_blocked": False,
            "trade_suspended_by_user": False, "shorting_enabled": True, "created_at": "2024-01-02T15:00:00Z",
            **self.account_fields,
        }  # fmt: skip

    def _position(self, symbol: str) -> dict:
        qty, avg = self._positions[symbol]
        value = str(qty * avg)
        return {
            "asset_id": str(uuid.uuid5(_NAMESPACE, symbol)), "symbol": symbol, "exchange": "NASDAQ",
            "asset_class": "us_equity", "asset_marginable": True, "avg_entry_price": str(avg), "qty": str(qty),
            "side": "long" if qty > 0 else "short", "market_value": value, "cost_basis": value, "unrealized_pl": "0",
            "unrealized_plpc": "0", "current_price": str(avg), "lastday_price": str(avg), "change_today": "0",
            "qty_available": str(qty - self._held_for_orders(symbol)),
        }  # fmt: skip

    def _clock(self) -> dict:
        now = self.clock.now()
        day = now.astimezone(calendar.NEW_YORK).date()
        today = calendar.is_session(day)
        is_open = today and calendar.session_open(day) <= now < calendar.session_close(day)
        upcoming = day if today and now < calendar.session_open(day) else calendar.next_session(day)
        closing = day if today and now < calendar.session_close(day) else calendar.next_session(day)
        return {
            "timestamp": now.astimezone(calendar.NEW_YORK).isoformat(),
            "is_open": is_open,
            "next_open": calendar.session_open(upcoming).isoformat(),
            "next_close": calendar.session_close(closing).isoformat(),
        }

    def _authorised(self, headers) -> bool:
        return headers.get("APCA-API-KEY-ID") == self.api_key and headers.get("APCA-API-SECRET-KEY") == self.secret_key

    def _take_rate_limit(self, method: str) -> bool:
        with self._lock:
            for key in (method, None):
                if self._rate_limits.get(key, 0) > 0:
                    self._rate_limits[key] -= 1
                    return True
            return False

    def _take_script(self) -> _Script | None:
        with self._lock:
            return self._scripts.popleft() if self._scripts else None


def _text(value: object) -> str | None:
    return None if value is None else str(Decimal(str(value)))


def _invalid(body: dict) -> str | None:
    """Alpaca's validation of a new order, the parts openbell can run into."""
    for field in ("symbol", "side", "type", "time_in_force", "qty"):
        if not body.get(field):
            return f"{field} is required"
    qty = Decimal(str(body["qty"]))
    if qty <= 0:
        return "qty must be > 0"
    order_type, tif, order_class = body["type"], body["time_in_force"], body.get("order_class") or "simple"
    if tif == "opg" and order_type not in ("market", "limit"):
        return "opg orders must be market or limit orders"
    if order_class == "oco":
        take = (body.get("take_profit") or {}).get("limit_price")
        stop = (body.get("stop_loss") or {}).get("stop_price")
        if order_type != "limit":
            return "oco orders must be limit orders"
        if take is None or stop is None:
            return "oco orders require take_profit.limit_price and stop_loss.stop_price"
        if tif not in ("day", "gtc"):
            return "oco orders must be day or gtc orders"
        if body["side"] == "sell" and Decimal(str(take)) <= Decimal(str(stop)):
            return "take_profit.limit_price must be > stop_loss.stop_price"
        prices = {"take_profit.limit_price": take, "stop_loss.stop_price": stop}
    elif order_class != "simple":
        return f"order_class {order_class} is not supported by this fake"
    elif order_type == "limit":
        if body.get("limit_price") is None:
            return "limit_price is required for limit orders"
        prices = {"limit_price": body["limit_price"]}
    elif order_type == "stop":
        if body.get("stop_price") is None:
            return "stop_price is required for stop orders"
        prices = {"stop_price": body["stop_price"]}
    elif order_type == "market":
        prices = {}
    elif order_type == "trailing_stop":
        if (body.get("trail_percent") is None) == (body.get("trail_price") is None):
            return "trailing stop orders require exactly one of trail_percent and trail_price"
        if tif not in ("day", "gtc"):
            return "trailing stop orders must be day or gtc orders"
        prices = {} if body.get("trail_price") is None else {"trail_price": body["trail_price"]}
    else:
        return f"order type {order_type} is not supported by this fake"
    for name, value in prices.items():
        price = Decimal(str(value))
        places = Decimal("0.01") if price >= 1 else Decimal("0.0001")
        if price != price.quantize(places):
            return f"invalid {name} {price}. sub-penny increment does not fulfill minimum pricing criteria"
    return None


class _Handler(QuietHandler):
    fake: FakeAlpaca  # set on the subclass `start` makes

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        fake = self.fake
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        fake.requests.append(f"{method} {parts.path}")
        if not fake._authorised(self.headers):
            return self._answer(*_error(401, 40110000, "request is not authorized"))
        if fake._take_rate_limit(method):
            return self._answer(*_error(429, 42910000, "rate limit exceeded"))
        posting = (method, parts.path) == ("POST", "/v2/orders")
        refused = fake._refused_ids.get((body or {}).get("client_order_id", "")) if posting else None
        if refused is not None:
            return self._answer(*_error(*refused))
        script = fake._take_script() if posting else None
        if script is not None and script.kind == "reject":
            return self._answer(*_error(script.status, script.code, script.message))
        if script is not None and script.kind == "late-accept":
            time.sleep(script.seconds)
        status, payload = fake.respond(method, parts.path, query, body)
        if script is not None and script.kind == "late":
            time.sleep(script.seconds)
        if script is not None and script.kind == "504" and status == 200:
            status, payload = 504, "<html><body><h1>504 Gateway Time-out</h1></body></html>"
        self._answer(status, payload)

    def _answer(self, status: int, payload: object) -> None:
        if payload is None:
            data, kind = b"", "application/json"
        elif isinstance(payload, str):
            data, kind = payload.encode(), "text/html"
        else:
            data, kind = json.dumps(payload).encode(), "application/json"
        self.send(status, data, kind)
