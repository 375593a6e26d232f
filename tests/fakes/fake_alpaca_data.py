"""A fake Alpaca market-data API on 127.0.0.1 that alpaca-py's real data clients talk to, with scripted trouble.

It serves what `StockHistoricalDataClient` and `ScreenerClient` with `url_override=fake.url` ask for:
GET /v2/stocks/bars (timeframes 1Day and 1Min; `start`/`end` inclusive like Alpaca's; bars sorted by
symbol then time and cut into pages of `page_size`, continued with `next_page_token`), GET
/v2/stocks/snapshots and GET /v1beta1/screener/stocks/movers. Every request must carry the keys in
APCA-API-KEY-ID / APCA-API-SECRET-KEY (401 otherwise).

Data is whatever a test puts in: `add_bar`, `set_snapshot`, `set_movers`, in Alpaca's own JSON
(RFC 3339 UTC times, one-letter bar fields). Trouble: `rate_limit(times)` answers 429; `plan="free"`
refuses real-time SIP like Alpaca's free plan (403 "subscription does not permit querying recent
SIP data" for feed=sip snapshots and for feed=sip bars reaching into the last 15 minutes);
`delay_s` holds every answer; `stop`/`start` make the server go away and come back on the same port.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from openbell.clock import Clock
from tests.fakes.loopback import LoopbackHttp, QuietHandler

SIP_DELAY = timedelta(minutes=15)  # the free plan may query SIP data older than this
_TIMEFRAMES = ("1Day", "1Min")


def iso(moment: datetime) -> str:
    """Alpaca's time format: RFC 3339 in UTC with a Z."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def bar(moment: datetime, o: float, h: float, l: float, c: float, v: int) -> dict:
    """One bar as Alpaca sends it (trade count and VWAP filled in plausibly)."""
    return {"t": iso(moment), "o": o, "h": h, "l": l, "c": c, "v": v, "n": max(1, v // 100), "vw": round((h + l + c) / 3, 4)}


def trade(moment: datetime | str, price: float, size: int = 100) -> dict:
    """A latest trade as Alpaca sends it; `moment` may be Alpaca's own text (nanoseconds included)."""
    t = moment if isinstance(moment, str) else iso(moment)
    return {"t": t, "x": "V", "p": price, "s": size, "c": ["@", "T"], "i": 52983525029461, "z": "C"}


def quote(moment: datetime, bid: float, ask: float) -> dict:
    """A latest quote as Alpaca sends it; a price of 0 is an empty side of the book."""
    return {"t": iso(moment), "ax": "V", "ap": ask, "as": 2 if ask else 0, "bx": "V", "bp": bid, "bs": 3 if bid else 0,
            "c": ["R"], "z": "C"}  # fmt: skip


class FakeAlpacaData(LoopbackHttp):
    """Alpaca's market-data API in miniature; `start()` serves it, `url` is what `data_url_override` takes."""

    def __init__(
        self,
        clock: Clock,
        *,
        api_key: str = "PKFAKE0KEY",
        secret_key: str = "fake-secret",
        page_size: int = 1000,
        plan: Literal["free", "unlimited"] = "unlimited",
    ) -> None:
        self.clock = clock
        self.api_key, self.secret_key = api_key, secret_key
        self.page_size = page_size  # the most bars in one page, whatever `limit` asks (alpaca-py asks 10,000)
        self.plan = plan
        self.delay_s = 0.0
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, query) of every request, in order
        self._lock = threading.Lock()
        self._bars: dict[str, dict[str, list[dict]]] = {tf: {} for tf in _TIMEFRAMES}  # timeframe -> symbol -> bars
        self._snapshots: dict[str, dict] = {}
        self._movers: dict = {"gainers": [], "losers": [], "market_type": "stocks", "last_updated": iso(clock.now())}
        self._rate_limits = 0

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> FakeAlpacaData:
        """Serve on a free port the first time, on the same port after a `stop`."""
        self.serve(_Handler)
        return self

    def stop(self) -> None:
        """Go away: new connections are refused until `start`."""
        self.shutdown()

    # --- data -----------------------------------------------------------------------------
    def add_bar(self, timeframe: str, symbol: str, moment: datetime, o: float, h: float, l: float, c: float, v: int) -> None:
        """One bar of `timeframe` ("1Day", stamped at midnight New York, or "1Min", at the minute's start)."""
        bars = self._bars[timeframe].setdefault(symbol, [])
        bars.append(bar(moment, o, h, l, c, v))
        bars.sort(key=lambda b: _when(b["t"]))

    def add_raw_bar(self, timeframe: str, symbol: str, raw: dict) -> None:
        """A bar exactly as given, e.g. a broken one."""
        self._bars[timeframe].setdefault(symbol, []).append(raw)

    def set_snapshot(self, symbol: str, **parts: dict | None) -> None:
        """Parts by Alpaca's names: latestTrade, latestQuote, minuteBar, dailyBar, prevDailyBar."""
        self._snapshots[symbol] = dict(parts)

    def set_movers(self, gainers: list[dict], losers: list[dict] | None = None, *, last_updated: datetime) -> None:
        self._movers = {"gainers": gainers, "losers": losers or [], "market_type": "stocks"}
        self._movers["last_updated"] = iso(last_updated)

    # --- scripted trouble -----------------------------------------------------------------
    def rate_limit(self, times: int = 1) -> None:
        """Answer the next `times` requests with 429."""
        with self._lock:
            self._rate_limits += times

    def bar_requests(self) -> list[dict[str, str]]:
        return [query for path, query in self.requests if path == "/v2/stocks/bars"]

    # --- serving --------------------------------------------------------------------------
    def respond(self, path: str, query: dict[str, str]) -> tuple[int, dict]:
        if path == "/v2/stocks/bars":
            return self._serve_bars(query)
        if path == "/v2/stocks/snapshots":
            if self._refuses_sip(query, reaching=self.clock.now()):
                return _sip_refused()
            wanted = _symbols(query)
            return 200, {s: self._snapshots[s] for s in wanted if s in self._snapshots}
        if path == "/v1beta1/screener/stocks/movers":
            top = int(query.get("top", 10))
            if not 1 <= top <= 50:
                return 400, {"code": 40010001, "message": "top must be between 1 and 50"}
            movers = self._movers
            return 200, {**movers, "gainers": movers["gainers"][:top], "losers": movers["losers"][:top]}
        return 404, {"code": 40410000, "message": "endpoint not found"}

    def _serve_bars(self, query: dict[str, str]) -> tuple[int, dict]:
        timeframe = query.get("timeframe")
        if timeframe not in _TIMEFRAMES:
            return 400, {"code": 40010001, "message": f"invalid timeframe: {timeframe} (this fake knows {_TIMEFRAMES})"}
        if "symbols" not in query:
            return 400, {"code": 40010001, "message": "symbols is required"}
        start = _when(query["start"]) if "start" in query else None
        end = _when(query["end"]) if "end" in query else self.clock.now()
        if self._refuses_sip(query, reaching=end):
            return _sip_refused()
        chosen = [
            (symbol, b)
            for symbol in sorted(_symbols(query))
            for b in self._bars[timeframe].get(symbol, [])
            if (start is None or _when(b["t"]) >= start) and _when(b["t"]) <= end
        ]
        offset = int(base64.b64decode(query["page_token"]).decode()) if query.get("page_token") else 0
        size = min(int(query.get("limit", 1000)), 10_000, self.page_size)
        page = chosen[offset : offset + size]
        following = offset + size
        bars: dict[str, list[dict]] = {}
        for symbol, b in page:
            bars.setdefault(symbol, []).append(b)
        token = base64.b64encode(str(following).encode()).decode() if following < len(chosen) else None
        return 200, {"bars": bars, "next_page_token": token}

    def _refuses_sip(self, query: dict[str, str], *, reaching: datetime) -> bool:
        feed = query.get("feed", "iex" if self.plan == "free" else "sip")
        return self.plan == "free" and feed == "sip" and reaching > self.clock.now() - SIP_DELAY

    def _authorised(self, headers) -> bool:
        return headers.get("APCA-API-KEY-ID") == self.api_key and headers.get("APCA-API-SECRET-KEY") == self.secret_key

    def _take_rate_limit(self) -> bool:
        with self._lock:
            if self._rate_limits > 0:
                self._rate_limits -= 1
                return True
            return False


def _symbols(query: dict[str, str]) -> list[str]:
    return [s for s in query.get("symbols", "").split(",") if s]


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _sip_refused() -> tuple[int, dict]:
    return 403, {"message": "subscription does not permit querying recent SIP data"}


class _Handler(QuietHandler):
    fake: FakeAlpacaData  # set on the subclass `start` makes

    def do_GET(self) -> None:
        fake = self.fake
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        fake.requests.append((parts.path, query))
        if fake.delay_s:
            time.sleep(fake.delay_s)
        if not fake._authorised(self.headers):
            return self._answer(401, {"message": "unauthorized."})
        if fake._take_rate_limit():
            return self._answer(429, {"message": "too many requests."})
        self._answer(*fake.respond(parts.path, query))

    def _answer(self, status: int, payload: dict) -> None:
        self.send(status, json.dumps(payload).encode())
