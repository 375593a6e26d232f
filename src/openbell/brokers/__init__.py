"""Brokers: one protocol, several adapters (paper today; Alpaca and Interactive Brokers next)."""

from openbell.brokers.base import Account, Broker, MooWindow
from openbell.brokers.paper import PaperBroker

__all__ = ["Account", "Broker", "MooWindow", "PaperBroker"]
