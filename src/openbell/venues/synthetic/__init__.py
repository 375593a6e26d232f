"""The synthetic venue: a generated market (`generate_synthetic_market`) for tests, demos and benchmarks."""

from openbell.venues.synthetic.market import SyntheticMarket, generate_synthetic_market

__all__ = ["SyntheticMarket", "generate_synthetic_market"]
