"""The LLM audit trail in DuckDB: every call to the model, its recorded replies, and the headlines it was shown."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime

from openbell.llm.prompt import Headline
from openbell.llm.ranker import CachedReply, LlmCall
from openbell.store import Store


def record_calls(store: Store, calls: Sequence[LlmCall]) -> None:
    """Write the calls to llm_calls; writing the same calls again (a retried task) changes nothing."""
    if calls:
        store.upsert("llm_calls", [dataclasses.asdict(call) for call in calls])


def cached_reply(store: Store, request_key: str) -> CachedReply | None:
    """The newest successful reply recorded for this request key, or None."""
    rows = store.query(
        "SELECT call_id, raw_reply FROM llm_calls WHERE request_key = ? AND status = 'ok' AND raw_reply IS NOT NULL "
        "ORDER BY requested_at DESC, call_id LIMIT 1",
        [request_key],
    )
    return CachedReply(call_id=rows[0][0], raw_reply=rows[0][1]) if rows else None


def record_headlines(
    store: Store,
    trade_date: date,
    headlines: Mapping[str, Sequence[Headline]],
    provider: str | None,
    fetched_at: datetime,
) -> None:
    """Keep the day's headlines (replacing any recorded before) so a replay shows the model the same news."""
    rows = [
        {
            "trade_date": trade_date,
            "symbol": h.symbol,
            "published_at": h.published_at,
            "title": h.title,
            "source": h.source,
            "url": h.url,
            "provider": provider,
            "fetched_at": fetched_at,
        }
        for items in headlines.values()
        for h in items
    ]
    store.replace("news_headlines", rows, {"trade_date": trade_date})


def recorded_headlines(store: Store, trade_date: date) -> dict[str, list[Headline]] | None:
    """The day's recorded headlines by symbol, newest first; None when none were recorded."""
    rows = store.query(
        "SELECT symbol, published_at, title, source, url FROM news_headlines WHERE trade_date = ? "
        "ORDER BY symbol, published_at DESC, title",
        [trade_date],
    )
    if not rows:
        return None
    found: dict[str, list[Headline]] = {}
    for symbol, published_at, title, source, url in rows:
        found.setdefault(symbol, []).append(Headline(symbol, published_at.astimezone(UTC), title, source, url))
    return found
