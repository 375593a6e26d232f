"""The Interactive Brokers adapter: the Broker protocol over ib_async, talking to TWS or IB Gateway."""

from openbell.brokers.ibkr.broker import IbkrBroker, api_ports

__all__ = ["IbkrBroker", "api_ports"]
