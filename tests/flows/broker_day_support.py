"""The recorded day traded through the bridged fakes, shared by tests/flows/test_broker_days.py and tests/faults.

The day, its symbols and the holding from before, a fake of each kind wired to a paper exchange and chosen
as the broker by environment variables as a user would, a real SDK client to ask the broker afterwards, and
the day's trades and orders as the store has them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from pydantic import SecretStr

from openbell import calendar
from openbell.clock import SimClock
from openbell.config import AlpacaSettings, BrokerSettings, IbkrSettings, Settings
from openbell.core.types import Order, Position, Symbol
from openbell.store import Store
from openbell.venues.broker import Broker
from tests.fakes.broker_bridge import BridgedAlpaca, BridgedTws, Holding, PaperExchange

DAY = date(2018, 3, 1)
# Stops early (NVAX at 09:31) and late (AAL, AAPL), targets (CLF, SIRI), held to the liquidation (KO, XOM),
# and two entries without an opening print (BA and F open after 09:30): they expire unfilled.
SYMBOLS = ["AAL", "AAPL", "BA", "CLF", "F", "KO", "NVAX", "SIRI", "XOM"]
HELD = Position(Symbol("IBM"), 100, Decimal("140.00"))  # bought before openbell ran
API_KEY, SECRET_KEY = "PKBRIDGE0KEY0ID", "bridge-secret"
CLIENT_ID = 17

Fake = BridgedAlpaca | BridgedTws


@dataclass
class BridgedBroker:
    """A started fake of `kind` holding 100 IBM, the environment that makes it the day's broker, and settings
    for a client of its own (another client id at TWS) to ask it afterwards."""

    kind: str
    fake: Fake
    env: dict[str, str]  # OPENBELL_BROKER__* variables
    settings: Settings

    def broker(self) -> Broker:
        """The real SDK client on the fake, its clock after the close."""
        clock = SimClock(datetime(DAY.year, DAY.month, DAY.day, 17, tzinfo=calendar.NEW_YORK))
        if self.kind == "alpaca":
            from openbell.venues.alpaca import AlpacaBroker

            return AlpacaBroker(self.settings, clock, DAY)
        from openbell.venues.ibkr import IbkrBroker

        return IbkrBroker(self.settings, clock, DAY)

    def account(self) -> tuple[dict[Symbol, Position], list[Order]]:
        """The broker's positions and working orders, asked through a client of its own."""
        broker = self.broker()
        try:
            return broker.positions(), broker.open_orders()
        finally:
            broker.close()


def start_bridged_broker(kind: str, engine: PaperExchange) -> BridgedBroker:
    """A fake of `kind` ("alpaca" or "ibkr") filling through `engine`, started, with 100 IBM already held."""
    if kind == "alpaca":
        fake: Fake = BridgedAlpaca(engine, api_key=API_KEY, secret_key=SECRET_KEY).start()
        fake.hold(HELD.symbol, HELD.qty, HELD.avg_price)
        env = {"KIND": "alpaca", "ALPACA__API_KEY": API_KEY, "ALPACA__SECRET_KEY": SECRET_KEY,
               "ALPACA__URL_OVERRIDE": fake.url}  # fmt: skip
        alpaca = AlpacaSettings(api_key=SecretStr(API_KEY), secret_key=SecretStr(SECRET_KEY), url_override=fake.url)
        settings = Settings(broker=BrokerSettings(kind="alpaca", alpaca=alpaca))
    else:
        symbols = {s: 1000 + i for i, s in enumerate([*SYMBOLS, HELD.symbol])}
        fake = BridgedTws(engine, symbols=symbols, holdings=(Holding(HELD.symbol, Decimal(HELD.qty), HELD.avg_price),))
        fake.start()
        env = {"KIND": "ibkr", "IBKR__PORT": str(fake.port), "IBKR__CLIENT_ID": str(CLIENT_ID),
               "IBKR__CONNECT_TIMEOUT_S": "5"}  # fmt: skip
        settings = Settings(broker=BrokerSettings(kind="ibkr", ibkr=IbkrSettings(port=fake.port, client_id=CLIENT_ID + 1)))
    return BridgedBroker(kind, fake, {f"OPENBELL_BROKER__{k}": v for k, v in env.items()}, settings)


def trades(store: Store) -> dict[str, tuple]:
    """Each trade of the day as (shares, entry time and price, exit time and price, exit reason, gross P&L)."""
    rows = store.query(
        "SELECT symbol, shares, entry_ts, entry_price, exit_ts, exit_price, exit_reason, pnl + commission "
        "FROM trades WHERE trade_date = ? ORDER BY symbol",
        [DAY],
    )
    return {symbol: tuple(rest) for symbol, *rest in rows}


def orders(store: Store) -> dict[str, tuple]:
    """Each order of the day by client order id: (status, qty, filled qty, average fill, limit, stop)."""
    rows = store.query(
        "SELECT client_order_id, status, qty, filled_qty, avg_fill_price, limit_price, stop_price FROM orders "
        "WHERE trade_date = ? ORDER BY client_order_id",
        [DAY],
    )
    return {cid: tuple(rest) for cid, *rest in rows}
