"""Venues: where orders go and market data comes from, one package per venue.

A venue is a place openbell trades with or reads from. Each package holds everything about it: its
`Broker` adapter, its `MarketData` source, the pure mapping between its values and openbell's, and (for
a venue reached over a connection) the one session that owns that connection.

    broker.py       the Broker protocol every broker adapter meets
    marketdata.py   the MarketData protocol every source meets, and the checks on the bars they give
    paper/          PaperBroker: simulated fills against a MarketData source
    replay/         ParquetReplaySource: recorded bars from Parquet files
    synthetic/      SyntheticMarket: a generated market for tests and demos
    alpaca/         Alpaca: AlpacaBroker and AlpacaMarketData over alpaca-py
    ibkr/           Interactive Brokers: IbkrBroker and IbkrMarketData over ib_async, sharing IbSession

Nothing is imported here: `openbell.venues.paper` loads neither alpaca-py nor ib_async, and a venue's SDK
loads only when its package is imported.
"""
