"""Brokers: one protocol, several adapters (paper today; Alpaca and Interactive Brokers next)."""

from openbell.brokers.base import Account, Broker
from openbell.brokers.paper import PaperBroker

__all__ = ["Account", "Broker", "PaperBroker"]
