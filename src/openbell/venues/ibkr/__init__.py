"""The Interactive Brokers venue over ib_async, talking to TWS or IB Gateway.

`IbkrBroker` (orders) and `IbkrMarketData` (bars, snapshots, movers) each hold an `IbSession`, the one
module that runs the event loop, the blocking calls, connecting, reconnecting and closing; `mapping` is
the pure translation between IB's values and openbell's.
"""

from openbell.venues.ibkr.broker import IbkrBroker
from openbell.venues.ibkr.session import api_ports

__all__ = ["IbkrBroker", "api_ports"]
