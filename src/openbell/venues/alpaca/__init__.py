"""The Alpaca venue: `AlpacaBroker` (REST over alpaca-py), `AlpacaMarketData` and their pure `mapping`."""

from openbell.venues.alpaca.broker import AlpacaBroker

__all__ = ["AlpacaBroker"]
