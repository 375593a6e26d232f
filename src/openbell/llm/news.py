"""Recent headlines per symbol from a news API (Financial Modeling Prep or Polygon), for the LLM ranker's prompt.

News is optional: `fetch_headlines` never raises. Any failure (timeout, refused connection, non-2xx answer, a body
that is not JSON or not the expected shape) gives no headlines and a one-line reason that names the status and never
the API key. The key travels in a header only (FMP `apikey`, Polygon `Authorization: Bearer`), so it never appears in
a URL that httpx or a proxy might log. A replay must not see the future: only headlines published in
[until - lookback_hours, until] are kept, whatever the provider sends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from openbell.config import NewsSettings
from openbell.core.types import NEW_YORK  # FMP's publishedDate is New York wall time without an offset
from openbell.llm.prompt import Headline

FMP_URL = "https://financialmodelingprep.com"
POLYGON_URL = "https://api.polygon.io"
FMP_PATH = "/stable/news/stock"
POLYGON_PATH = "/v2/reference/news"

_FMP_MAX_LIMIT = 250  # one page of /stable/news/stock; shared by all symbols of the request
_SNIPPET_CHARS = 120

log = logging.getLogger(__name__)


class _NewsFailed(Exception):
    """The provider's answer cannot be used; str() is the one-line reason (without the provider's name)."""


# --- provider payloads: lenient about extra fields (providers add them), strict about the ones we use ---------------
class _Row(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)


class FmpArticle(_Row):
    """One row of FMP's /stable/news/stock list."""

    symbol: str = Field(min_length=1)
    published_date: datetime = Field(alias="publishedDate")
    title: str = Field(min_length=1)
    site: str | None = None
    publisher: str | None = None
    url: str | None = None

    @field_validator("symbol")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @field_validator("published_date", mode="before")
    @classmethod
    def _new_york_time(cls, value: object) -> datetime:
        if not isinstance(value, str):
            raise ValueError("publishedDate must be a 'YYYY-MM-DD HH:MM:SS' string")
        moment = datetime.fromisoformat(value.strip())
        return moment.replace(tzinfo=NEW_YORK) if moment.tzinfo is None else moment

    def headline(self) -> Headline:
        return Headline(
            symbol=self.symbol,
            published_at=self.published_date.astimezone(UTC),
            title=self.title,
            source=self.publisher or self.site or None,
            url=self.url or None,
        )


class PolygonPublisher(_Row):
    name: str | None = None


class PolygonArticle(_Row):
    """One entry of the `results` of Polygon's /v2/reference/news."""

    title: str = Field(min_length=1)
    published_utc: AwareDatetime
    publisher: PolygonPublisher | None = None
    article_url: str | None = None
    tickers: list[str] = Field(default_factory=list)

    def headline(self, symbol: str) -> Headline:
        source = self.publisher.name if self.publisher is not None else None
        return Headline(
            symbol=symbol,
            published_at=self.published_utc.astimezone(UTC),
            title=self.title,
            source=source or None,
            url=self.article_url or None,
        )


class PolygonPage(BaseModel):
    """The envelope of Polygon's /v2/reference/news; rows are validated one by one."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    results: list[Any] = Field(default_factory=list)


# --- the public entry point -------------------------------------------------------------------------------------------
def fetch_headlines(
    settings: NewsSettings, symbols: Sequence[str], until: datetime, *, transport: httpx.BaseTransport | None = None
) -> tuple[dict[str, list[Headline]], str | None]:
    """Headlines published in [until - lookback_hours, until] per requested symbol, newest first, at most
    `per_symbol` each (symbols without any are left out), and None; or ({}, "why") on any failure.

    Never raises. Not configured (no provider or no key) or no symbols: ({}, None) without a request.
    `settings.timeout_s` bounds the whole fetch, however many requests it takes (Polygon: one per symbol).
    `transport` replaces httpx's network transport (tests).
    """
    wanted = tuple(dict.fromkeys(s.strip().upper() for s in symbols if s and s.strip()))
    if not settings.configured or not wanted:
        return {}, None
    provider = settings.provider
    if until.tzinfo is None or until.utcoffset() is None:
        return {}, f"{provider} news not fetched: the scan time {until.isoformat()} has no time zone (pass an aware one)"
    key = settings.api_key.get_secret_value() if settings.api_key is not None else ""
    since = until - timedelta(hours=settings.lookback_hours)
    try:
        headlines = _fetch(settings, key, wanted, since, until, transport)
    except _NewsFailed as exc:
        return {}, _redact(f"{provider} news: {exc}", key)
    except httpx.TimeoutException:
        return {}, f"{provider} news: no answer within {settings.timeout_s:g} s (timeout_s)"
    except httpx.HTTPError as exc:
        return {}, _redact(f"{provider} news: request failed: {type(exc).__name__}: {_one_line(str(exc))}", key)
    except Exception as exc:  # news is optional: whatever went wrong, rank without it
        return {}, _redact(f"{provider} news: unexpected {type(exc).__name__}: {_one_line(str(exc))}", key)
    return _select(headlines, wanted, since, until, settings.per_symbol), None


def _fetch(
    settings: NewsSettings,
    key: str,
    wanted: tuple[str, ...],
    since: datetime,
    until: datetime,
    transport: httpx.BaseTransport | None,
) -> list[Headline]:
    if settings.provider == "fmp":
        base, headers = settings.url_override or FMP_URL, {"apikey": key}
    else:
        base, headers = settings.url_override or POLYGON_URL, {"Authorization": f"Bearer {key}"}
    deadline = time.monotonic() + settings.timeout_s
    with httpx.Client(
        base_url=base.rstrip("/"),
        headers={**headers, "Accept": "application/json"},
        timeout=settings.timeout_s,
        transport=transport,
        follow_redirects=False,  # a redirect could carry the key's header elsewhere
    ) as client:

        def get(path: str, params: dict[str, str | int]) -> Any:
            return _get_json(client, path, params, deadline, settings.timeout_s)

        if settings.provider == "fmp":
            return _fmp(get, wanted, since, until, settings.per_symbol)
        return _polygon(get, wanted, since, until, settings.per_symbol)


def _get_json(client: httpx.Client, path: str, params: dict[str, str | int], deadline: float, timeout_s: float) -> Any:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _NewsFailed(f"no answer within {timeout_s:g} s (timeout_s) for all the requests")
    response = client.get(path, params=params, timeout=min(timeout_s, left))
    if not response.is_success:
        hint = " (check OPENBELL_NEWS__API_KEY and the plan's access)" if response.status_code in (401, 403) else ""
        raise _NewsFailed(f"HTTP {response.status_code} {response.reason_phrase}{hint}: {_one_line(response.text)}")
    try:
        return response.json()
    except ValueError:
        raise _NewsFailed(f"HTTP {response.status_code} but the body is not JSON: {_one_line(response.text)}") from None


# --- providers --------------------------------------------------------------------------------------------------------
_Get = Callable[[str, dict[str, str | int]], Any]


def _fmp(get: _Get, wanted: tuple[str, ...], since: datetime, until: datetime, per_symbol: int) -> list[Headline]:
    params: dict[str, str | int] = {
        "symbols": ",".join(wanted),
        "from": since.astimezone(NEW_YORK).date().isoformat(),
        "to": until.astimezone(NEW_YORK).date().isoformat(),
        # the page is shared: leave room for busy symbols, rows outside the window and malformed rows
        "limit": min(_FMP_MAX_LIMIT, max(50, per_symbol * len(wanted) * 4)),
    }
    payload = get(FMP_PATH, params)
    if not isinstance(payload, list):
        raise _NewsFailed(f"expected a JSON list of articles, got {type(payload).__name__}: {_one_line(str(payload))}")
    return _rows(payload, "fmp", lambda row: FmpArticle.model_validate(row).headline())


def _polygon(get: _Get, wanted: tuple[str, ...], since: datetime, until: datetime, per_symbol: int) -> list[Headline]:
    headlines: list[Headline] = []
    for symbol in wanted:  # the endpoint filters one ticker per request
        params: dict[str, str | int] = {
            "ticker": symbol,
            "published_utc.gte": _utc_iso(since),
            "published_utc.lte": _utc_iso(until),
            "order": "desc",
            "sort": "published_utc",
            "limit": per_symbol * 2,  # room for rows that fail validation
        }
        payload = get(POLYGON_PATH, params)
        if not isinstance(payload, dict):
            raise _NewsFailed(f"expected a JSON object, got {type(payload).__name__}: {_one_line(str(payload))}")
        try:
            page = PolygonPage.model_validate(payload)
        except ValidationError as exc:
            raise _NewsFailed(f"unexpected reply shape for {symbol}: {_first_error(exc)}") from None

        def convert(row: object, symbol: str = symbol) -> Headline | None:
            article = PolygonArticle.model_validate(row)
            if article.tickers and symbol not in {t.strip().upper() for t in article.tickers}:
                return None  # about other tickers only
            return article.headline(symbol)

        headlines += _rows(page.results, "polygon", convert)
    return headlines


def _rows(rows: Iterable[object], provider: str, convert: Callable[[object], Headline | None]) -> list[Headline]:
    """Convert rows one by one: a row that fails validation is skipped (and logged), not the whole batch."""
    kept: list[Headline] = []
    skipped: list[str] = []
    for row in rows:
        try:
            headline = convert(row)
        except (ValidationError, ValueError, TypeError) as exc:
            skipped.append(_first_error(exc) if isinstance(exc, ValidationError) else _one_line(str(exc)))
            continue
        if headline is not None:
            kept.append(headline)
    if skipped:
        log.warning("%s news: skipped %d malformed row(s), first: %s", provider, len(skipped), skipped[0])
    return kept


def _select(
    headlines: Iterable[Headline], wanted: tuple[str, ...], since: datetime, until: datetime, per_symbol: int
) -> dict[str, list[Headline]]:
    """The requested symbols' headlines inside the window, without repeats, newest first (ties by title), capped."""
    by_symbol: dict[str, dict[tuple[datetime, str], Headline]] = {symbol: {} for symbol in wanted}
    for headline in headlines:
        kept = by_symbol.get(headline.symbol)
        if kept is None or not since <= headline.published_at <= until:
            continue
        kept.setdefault((headline.published_at, headline.title), headline)
    chosen: dict[str, list[Headline]] = {}
    for symbol, kept in by_symbol.items():
        ordered = sorted(sorted(kept.values(), key=lambda h: h.title), key=lambda h: h.published_at, reverse=True)
        if ordered:
            chosen[symbol] = ordered[:per_symbol]
    return chosen


# --- small helpers ----------------------------------------------------------------------------------------------------
def _utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _SNIPPET_CHARS else flat[: _SNIPPET_CHARS - 1] + "…"


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "row"
    return f"{where}: {error['msg']}"


def _redact(text: str, key: str) -> str:
    return text.replace(key, "***") if key else text
