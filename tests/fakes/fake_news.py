"""A fake news API on 127.0.0.1 that speaks FMP's /stable/news/stock and Polygon's /v2/reference/news, with scripted trouble.

It answers with exactly the articles a test gives it and ignores the date window and the limit, as a careless
provider might: what the client returns is then the client's own filtering. FMP answers every request with
`fmp_articles` (all symbols, the way a mixed page looks); Polygon answers `polygon_articles[ticker]` for the `ticker`
asked. Keys are checked the way each provider takes them (FMP: `apikey` header; Polygon: `Authorization: Bearer`),
otherwise 401. Every request is recorded with its raw target, query and headers.

Trouble for the next requests: `fail_next(status, body)` (any status and body, e.g. 500, or 200 with garbage),
`answer_late(seconds, times)` (hold the answer past the client's timeout).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from tests.fakes.loopback import LoopbackHttp, QuietHandler


@dataclass(frozen=True)
class Request:
    """One request as the server saw it."""

    target: str  # path and query string exactly as sent: what an access log would show
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names


@dataclass
class _Script:
    status: int = 0
    body: str = ""
    seconds: float = 0.0


@dataclass
class FakeNews(LoopbackHttp):
    """FMP and Polygon news in miniature; `start()` serves them, `url` is what `url_override` takes."""

    api_key: str
    fmp_articles: list[object] = field(default_factory=list)
    polygon_articles: dict[str, list[object]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    _scripts: deque[_Script] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> FakeNews:
        self.serve(_Handler, poll_interval_s=0.01)
        return self

    def stop(self) -> None:
        self.shutdown()

    # --- scripted trouble -----------------------------------------------------------------
    def fail_next(self, status: int, body: str) -> None:
        """Answer the next request with `status` and this raw body instead of the articles."""
        self._scripts.append(_Script(status=status, body=body))

    def answer_late(self, seconds: float, times: int = 1) -> None:
        """Hold each of the next `times` answers for `seconds` before sending it."""
        self._scripts.extend(_Script(seconds=seconds) for _ in range(times))

    # --- serving --------------------------------------------------------------------------
    def _take_script(self) -> _Script | None:
        with self._lock:
            return self._scripts.popleft() if self._scripts else None

    def respond(self, path: str, query: dict[str, str], headers: dict[str, str]) -> tuple[int, object]:
        if path == "/stable/news/stock":
            if headers.get("apikey") != self.api_key:
                return 401, {"Error Message": "Invalid API KEY. Please retry or visit our documentation."}
            return 200, self.fmp_articles
        if path == "/v2/reference/news":
            if headers.get("authorization") != f"Bearer {self.api_key}":
                return 401, {"status": "ERROR", "request_id": "fake", "error": "Unknown API Key"}
            results = self.polygon_articles.get(query.get("ticker", ""), [])
            return 200, {"results": results, "status": "OK", "request_id": "fake", "count": len(results)}
        return 404, {"error": f"no route {path}"}


class _Handler(QuietHandler):
    fake: FakeNews  # set on the subclass `start` makes

    def do_GET(self) -> None:
        fake = self.fake
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        headers = {name.lower(): value for name, value in self.headers.items()}
        fake.requests.append(Request(self.path, parts.path, query, headers))
        script = fake._take_script()
        if script is not None and script.seconds:
            time.sleep(script.seconds)
        if script is not None and script.status:
            return self._answer(script.status, script.body)
        status, payload = fake.respond(parts.path, query, headers)
        self._answer(status, json.dumps(payload))

    def _answer(self, status: int, body: str) -> None:
        self.send(status, body.encode())
