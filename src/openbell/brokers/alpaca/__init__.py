"""The Alpaca adapter: `AlpacaBroker` (REST over alpaca-py) and its pure `mapping` to openbell's types."""

from openbell.brokers.alpaca.broker import AlpacaBroker

__all__ = ["AlpacaBroker"]
