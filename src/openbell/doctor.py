"""`openbell doctor`: connect to the configured broker and say what it sees, or what is wrong."""

from __future__ import annotations

from datetime import datetime

from openbell import calendar, wiring
from openbell.clock import SimClock
from openbell.config import Settings
from openbell.core.types import NEW_YORK
from openbell.venues.broker import Broker


def examine(settings: Settings, now: datetime) -> list[str]:
    """Lines describing the broker account, its positions and the market day at `now` (New York).

    Raises an OpenbellError with one clear sentence when the broker cannot be reached or refuses.
    """
    settings.require_live_confirmed()
    day = now.astimezone(NEW_YORK).date()
    broker = _connect(settings, now)
    try:
        account, positions = broker.account(), broker.positions()
    finally:
        broker.close()
    lines = [
        f"broker     {broker.name}, {'paper account' if account.paper else 'LIVE account: real money'}",
        f"equity     ${account.equity:,.2f}   cash ${account.cash:,.2f}   buying power ${account.buying_power:,.2f}",
    ]
    if account.pattern_day_trader is not None or account.day_trade_count is not None:
        lines.append(f"PDT        flagged: {account.pattern_day_trader}   day trades (5 days): {account.day_trade_count}")
    held = ", ".join(f"{p.symbol} {p.qty} @ {p.avg_price}" for p in positions.values()) or "none"
    lines.append(f"positions  {held}")
    closed = calendar.closed_reason(day)
    market = f"the exchange is closed ({closed})" if closed else (
        f"a half day, closing {calendar.session_close(day):%H:%M}" if calendar.is_half_day(day) else "a session"
    )  # fmt: skip
    lines.append(f"clock      {now.astimezone(NEW_YORK):%Y-%m-%d %H:%M %Z}: {market}")
    return lines


def _connect(settings: Settings, now: datetime) -> Broker:
    day = now.astimezone(NEW_YORK).date()
    if not calendar.is_session(day):
        day = calendar.previous_session(day)  # a broker is opened for a trading day; its books span them all
    if settings.broker.kind == "paper":
        store = wiring.store_for(settings)
        return wiring.broker_for(settings, store, None, SimClock(now), day)  # no bars needed to read the books
    return wiring.broker_for(settings, None, None, SimClock(now), day)
