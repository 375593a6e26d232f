"""The Alpaca adapter: the Broker protocol over alpaca-py's REST TradingClient, with idempotent submits.

Idempotency rests on Alpaca's rule that a client order id is unique in an account forever:
- before every submit the id is looked up; an order already there is returned (or, when it is a
  different order, refused with OrderRejected), never sent twice;
- after an error or a timeout during a submit the id is looked up again: found, the order is
  returned; not found, TransientError says a retry is safe (it goes through the same lookup).
alpaca-py retries HTTP 429 and 504 itself, POSTs included (a retried POST that Alpaca had in fact
accepted comes back as "client_order_id must be unique", which the lookup then resolves).

Errors: connection refused, dropped or timed out -> TransientError; 403 and 422 on an order ->
OrderRejected with Alpaca's code and message; 401 (or 403 on a read) -> ConfigError about the keys.
Alpaca's exceptions are not chained: their request objects carry the API keys in their headers.

Prefect runs these calls in sync tasks; nothing here starts an event loop or a TradingStream.
"""

from __future__ import annotations

import logging
import time as wall
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from typing import Any, TypeVar

import requests
from alpaca.common.enums import BaseURL, Sort
from alpaca.common.exceptions import APIError
from alpaca.common.types import RawData
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass, QueryOrderStatus
from alpaca.trading.models import Order as AlpacaOrder
from alpaca.trading.requests import GetOrderByIdRequest, GetOrdersRequest, OrderRequest

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
    Position,
    Symbol,
    TimeInForce,
    is_ours,
    our_prefix,
)
from openbell.errors import ConfigError, OpenbellError, OrderRejected, TransientError
from openbell.venues.alpaca import mapping
from openbell.venues.alpaca.mapping import Placed
from openbell.venues.alpaca.rest import KEY_ENV, SECRET_ENV, Failure, api_failure, secret, transport_failure, tuned
from openbell.venues.broker import Account, MooWindow, check_market_on_open

log = logging.getLogger(__name__)

OPG_OPENS = time(19, 0)  # Alpaca takes opening-auction orders from 19:00 New York the session before
PAGE = 500  # Alpaca's largest page of orders
T = TypeVar("T")


def require_keys(settings: Settings) -> None:
    """Refuse Alpaca settings without both API keys (checked before the first flow starts, and here)."""
    keys = settings.broker.alpaca
    missing = [env for env, value in ((KEY_ENV, keys.api_key), (SECRET_ENV, keys.secret_key)) if not secret(value)]
    if missing:
        raise ConfigError(
            f"the Alpaca broker needs API keys: set {' and '.join(missing)} "
            f"(paper keys for trading_mode=paper, live keys for trading_mode=live)"
        )


class AlpacaBroker:
    """Alpaca's trading API for one trading day; acts only on client order ids `ob-YYYYMMDD-` of that day.

    Args:
        settings: `broker.alpaca` (keys, url_override) and `trading_mode` (paper unless "live",
            which also needs the live confirmation).
        clock: decides whether a market-on-open order is still inside Alpaca's window.
        trade_date: the session whose orders this adapter sends and reads.
        timeout_s: longest wait for one HTTP answer.
        retry_wait_s: alpaca-py's pause before retrying a 429 or 504 (up to 3 times).
        cancel_wait_s: how long `cancel` waits for Alpaca to confirm (a cancel is asynchronous there).

    Raises:
        ConfigError: live trading not confirmed, or API keys missing.
    """

    name = "alpaca"
    pairs_trailing_stops = False  # Alpaca's one-cancels-other orders take a fixed stop leg only

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        trade_date: date,
        *,
        timeout_s: float = 10.0,
        retry_wait_s: float = 3.0,
        cancel_wait_s: float = 2.0,
    ) -> None:
        settings.require_live_confirmed()
        require_keys(settings)
        keys = settings.broker.alpaca
        self._paper = settings.trading_mode != "live"
        self._base_url = keys.url_override or (BaseURL.TRADING_PAPER if self._paper else BaseURL.TRADING_LIVE).value
        self._clock = clock
        self._date = trade_date
        self._timeout_s = timeout_s
        self._cancel_wait_s = cancel_wait_s
        self._client = tuned(
            TradingClient(
                api_key=secret(keys.api_key),
                secret_key=secret(keys.secret_key),
                paper=self._paper,
                url_override=keys.url_override,
            ),
            timeout_s,
            retry_wait_s,
        )

    def __repr__(self) -> str:
        return f"AlpacaBroker({self._date}, {'paper' if self._paper else 'LIVE'}, {self._base_url})"

    # --- the Broker protocol ---------------------------------------------------------------
    def moo_window(self, day: date) -> MooWindow:
        """From 19:00 New York on the previous session's day to 09:28 on `day`."""
        opens = datetime.combine(calendar.previous_session(day), OPG_OPENS, tzinfo=NEW_YORK)
        return MooWindow(opens, datetime.combine(day, MOO_CUTOFF, tzinfo=NEW_YORK))

    def submit(self, intent: OrderIntent) -> Order:
        client_order_id = intent.client_order_id
        self._require_ours(client_order_id)
        try:
            request = mapping.order_request(intent)
        except ValueError as problem:
            raise OrderRejected(client_order_id, str(problem)) from None
        placed = self._lookup(client_order_id)
        if placed is None:
            self._require_in_time(intent)  # only for a send: an order already there is returned at any time
            placed = self._send(client_order_id, request)
        return self._adopt(intent, mapping.to_order(placed))

    def submit_oco(self, target: OrderIntent, stop: OrderIntent) -> tuple[Order, Order]:
        """One Alpaca `oco` order: the target limit as the parent (with the target's id), the stop as its leg."""
        target_id = target.client_order_id
        self._require_ours(target_id)
        try:
            request = mapping.oco_request(target, stop)
        except ValueError as problem:
            raise OrderRejected(target_id, str(problem)) from None
        placed = self._lookup(target_id)
        if placed is None:
            self._require_in_time(target)
            placed = self._send(target_id, request)
        if placed.raw.order_class != OrderClass.OCO:
            raise OrderRejected(
                target_id, "client order id already used at Alpaca for an order that is not one-cancels-other"
            )
        target_order, stop_order = mapping.oco_pair(self._with_legs(placed.raw))
        return self._adopt(target, target_order), self._adopt(stop, stop_order)

    def cancel(self, client_order_id: ClientOrderId) -> Order:
        """Cancel a working order of ours and wait briefly for Alpaca to confirm; a done order comes back as it is.

        Either half of a one-cancels-other pair cancels the pair: the request goes to the parent (the
        target), whose legs Alpaca cancels with it.
        """
        self._require_ours(client_order_id)
        placed = self._lookup(client_order_id)
        if placed is None:
            raise OrderRejected(client_order_id, "no such order at Alpaca")
        order = mapping.to_order(placed)
        if order.is_done():
            return order
        _, failure = self._call(self._client.cancel_order_by_id, (placed.parent or placed.raw).id)
        if failure is not None and failure.status not in (404, 422):  # 422: no longer cancelable (filled meanwhile)
            raise self._read_error(failure, f"cancelling {client_order_id}")
        return self._settled(client_order_id, order)

    def order(self, client_order_id: ClientOrderId) -> Order | None:
        if not is_ours(client_order_id, self._date):
            return None
        placed = self._lookup(client_order_id)
        return mapping.to_order(placed) if placed is not None else None

    def open_orders(self) -> list[Order]:
        """Our working orders of the trade date (orders of other days and of anyone else are not ours)."""
        raws = self._orders("listing open orders", status=QueryOrderStatus.OPEN)
        orders = [mapping.to_order(p) for p in mapping.placed_orders(raws, self._date)]
        return [o for o in orders if o.is_open()]

    def day_orders(self) -> list[Order]:
        """Our orders of the trade date, stop legs included, oldest first: one GET /v2/orders per 500 orders."""
        return [mapping.to_order(p) for p in self._day_placed()]

    def fills_since(self, since: datetime | None = None) -> list[Fill]:
        """Fills of our orders of the trade date, derived from the orders (final fills only; see mapping)."""
        fills = [f for f in map(mapping.to_fill, self._day_placed()) if f is not None]
        return sorted((f for f in fills if since is None or f.ts >= since), key=lambda f: f.ts)  # ties: sent first

    def positions(self) -> dict[Symbol, Position]:
        """The account's positions as they are, including holdings openbell did not open."""
        raws = self._read("reading positions", self._client.get_all_positions)
        found = [p for p in map(mapping.to_position, raws) if p is not None]
        return {p.symbol: p for p in sorted(found, key=lambda p: p.symbol)}

    def account(self) -> Account:
        return mapping.to_account(self._read("reading the account", self._client.get_account), paper=self._paper)

    def close(self) -> None:
        self._client._session.close()  # our own TimeoutSession

    # --- guards ----------------------------------------------------------------------------
    def _require_ours(self, client_order_id: str) -> None:
        if not is_ours(client_order_id, self._date):
            raise OrderRejected(
                client_order_id,
                f"not an openbell order of {self._date} (ids start with {our_prefix(self._date)}); "
                "this adapter acts only on its own orders",
            )

    def _require_in_time(self, intent: OrderIntent) -> None:
        """Refuse locally what Alpaca would take for another session than the trade date."""
        now = self._clock.now()
        if intent.tif is TimeInForce.OPG:
            check_market_on_open(intent, self.moo_window(self._date), now)
        elif now >= calendar.session_close(self._date):
            raise OrderRejected(
                intent.client_order_id,
                f"the {self._date} session has closed; Alpaca would keep a day order for the next session",
            )

    def _adopt(self, intent: OrderIntent, order: Order) -> Order:
        if not mapping.same_order(intent, order):
            have = order.intent
            raise OrderRejected(
                intent.client_order_id,
                "client order id already used at Alpaca for a different order "
                f"({have.side} {have.qty} {have.symbol} {have.order_type} {have.tif}, "
                f"limit {have.limit_price}, stop {have.stop_price})",
            )
        return replace(order, intent=intent)

    # --- calls -----------------------------------------------------------------------------
    def _send(self, client_order_id: ClientOrderId, request: OrderRequest) -> Placed:
        """POST the order; after any failure, look the id up before deciding what happened."""
        raw, failure = self._call(self._client.submit_order, request)
        if failure is None:
            return Placed(client_order_id, _order(raw))
        log.warning("submitting %s failed (%s); looking it up before deciding", client_order_id, failure)
        found, unknown = None, None
        try:
            found = self._lookup(client_order_id)
        except TransientError as lookup_failed:
            unknown = str(lookup_failed)
        if found is not None:
            log.info("%s is at Alpaca despite the failure: taking that order", client_order_id)
            return found
        if unknown is not None:
            raise TransientError(
                f"{client_order_id}: submitting failed ({failure}) and whether Alpaca accepted it cannot be told "
                f"now ({unknown}); retrying is safe: the same client order id never creates a second order"
            )
        raise self._submit_error(client_order_id, failure)

    def _lookup(self, client_order_id: ClientOrderId) -> Placed | None:
        """Our order by its client order id; a stop is found as the leg of its one-cancels-other parent."""
        if mapping.is_stop_leg(client_order_id):
            parent = self._by_client_id(mapping.target_id_for(client_order_id))
            if parent is not None and parent.order_class == OrderClass.OCO:
                parent = self._with_legs(parent)
                leg = mapping.stop_leg_of(parent)
                if leg is not None:
                    return Placed(client_order_id, leg, parent)
        raw = self._by_client_id(client_order_id)
        if raw is None:
            return None
        return Placed(client_order_id, self._with_legs(raw) if raw.order_class == OrderClass.OCO else raw)

    def _by_client_id(self, client_order_id: str) -> AlpacaOrder | None:
        raw, failure = self._call(self._client.get_order_by_client_id, client_order_id)
        if failure is not None and failure.status == 404:
            return None
        if failure is not None:
            raise self._read_error(failure, f"looking up order {client_order_id}")
        return _order(raw)

    def _day_placed(self) -> list[Placed]:
        """Our orders of the trade date, listed with their legs (status all, from the previous session's day on).

        Market-on-open entries go in from 19:00 the evening before, so the listing starts on the previous
        session's day; ids of other days are left out by `placed_orders`.
        """
        after = datetime.combine(calendar.previous_session(self._date), time(0), tzinfo=NEW_YORK)
        until = datetime.combine(self._date + timedelta(days=1), time(0), tzinfo=NEW_YORK)
        raws = self._orders("listing the day's orders", status=QueryOrderStatus.ALL, after=after, until=until)
        return mapping.placed_orders(raws, self._date)

    def _with_legs(self, raw: AlpacaOrder) -> AlpacaOrder:
        if raw.legs or raw.order_class != OrderClass.OCO:
            return raw
        nested = GetOrderByIdRequest(nested=True)
        return self._read(f"reading the legs of {raw.client_order_id}", self._client.get_order_by_id, raw.id, nested)

    def _settled(self, client_order_id: ClientOrderId, last: Order) -> Order:
        """The order once Alpaca reports it done, or as it stands after `cancel_wait_s`."""
        deadline = wall.monotonic() + self._cancel_wait_s
        while True:
            placed = self._lookup(client_order_id)
            last = mapping.to_order(placed) if placed is not None else last
            if last.is_done() or wall.monotonic() >= deadline:
                return last
            wall.sleep(0.2)

    def _orders(self, what: str, *, status: QueryOrderStatus, after: datetime | None = None, **filters) -> list[AlpacaOrder]:
        """Every order matching the filters, oldest first, legs nested under their parents (all pages)."""
        seen: set = set()
        found: list[AlpacaOrder] = []
        while True:
            request = GetOrdersRequest(status=status, limit=PAGE, direction=Sort.ASC, nested=True, after=after, **filters)
            page = self._read(what, self._client.get_orders, request)
            fresh = [o for o in page if o.id not in seen]
            seen.update(o.id for o in fresh)
            found.extend(fresh)
            if len(page) < PAGE or not fresh:
                return found
            after = page[-1].submitted_at - timedelta(microseconds=1)  # `after` is exclusive; ties are deduplicated

    def _read(self, what: str, call, *args):
        result, failure = self._call(call, *args)
        if failure is not None:
            raise self._read_error(failure, what)
        return result

    def _call(self, call: Callable[..., T], *args: Any) -> tuple[T | None, Failure | None]:
        """Run one alpaca-py call; its exception is reduced to a Failure so that nothing chains to it."""
        try:
            return call(*args), None
        except APIError as error:
            return None, api_failure(error, with_code=True)
        except requests.RequestException as error:
            return None, transport_failure(error, self._timeout_s)

    # --- errors ----------------------------------------------------------------------------
    def _read_error(self, failure: Failure, what: str) -> OpenbellError:
        if failure.transport:
            return TransientError(f"Alpaca at {self._base_url} did not answer while {what}: {failure}; retry later")
        if failure.status == 401 or failure.status == 403:
            return self._keys_refused(failure, what)
        if failure.status is not None and (failure.status == 429 or failure.status >= 500):
            return TransientError(f"Alpaca is busy ({what}): {failure}, still after alpaca-py's retries; retry later")
        return OpenbellError(f"Alpaca refused {what}: {failure}")

    def _submit_error(self, client_order_id: ClientOrderId, failure: Failure) -> OpenbellError:
        if failure.transport:
            return TransientError(
                f"{client_order_id}: Alpaca at {self._base_url} did not answer ({failure}) and has no such order; "
                "retrying is safe: the same client order id never creates a second order"
            )
        if failure.status == 401:
            return self._keys_refused(failure, f"submitting {client_order_id}")
        if failure.status is not None and (failure.status == 429 or failure.status >= 500):
            return TransientError(f"{client_order_id}: Alpaca is busy ({failure}) and has no such order; retrying is safe")
        return OrderRejected(client_order_id, failure.message, failure.code)

    def _keys_refused(self, failure: Failure, what: str) -> ConfigError:
        mode = "paper" if self._paper else "live"
        return ConfigError(
            f"Alpaca refused the API keys while {what} ({failure}): check {KEY_ENV} and {SECRET_ENV}, "
            f"and that they are {mode} keys (trading_mode={mode})"
        )


def _order(raw: AlpacaOrder | RawData | None) -> AlpacaOrder:
    """alpaca-py's answer as an Order (this adapter's client never asks for raw data)."""
    if not isinstance(raw, AlpacaOrder):
        raise OpenbellError(f"Alpaca answered {type(raw).__name__} where alpaca-py gives an Order")
    return raw
