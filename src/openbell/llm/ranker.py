"""The LLM ranker: an LLM orders the scan's candidates, validated and audited, with the quant ranker as fallback.

Whatever the model does (no answer, slow answers, malformed or manipulated replies, symbols it made
up), `LlmRanker.rank` returns a valid ranking of candidates: the model's, checked by
`openbell.llm.reply`, or the fallback ranker's. The model can only choose and order candidates; how
many are traded (top_n) and how they are sized stay outside its reach. Every request and reply is
described by an `LlmCall` (one row of the `llm_calls` table, written by `openbell.llm.audit`), so a
day's ranking can be explained and a replay can reuse a recorded reply instead of calling again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import pandas as pd

from openbell.config import LlmSettings
from openbell.core.ranking import RankedPick, Ranker
from openbell.llm.client import Attempt, ChatClient, ChatFailed, redact
from openbell.llm.prompt import TEMPLATE_VERSION, Headline, build_messages, prompt_candidates, prompt_hash, request_key
from openbell.llm.reply import ParsedReply, ReplyError, parse_reply

logger = logging.getLogger(__name__)

NOT_CONFIGURED = "no LLM configured (set OPENBELL_LLM__MODEL)"
NOT_CHOSEN = "not chosen by the LLM"
NOT_RECORDED = "no recorded LLM reply to this prompt (a backtest asks the model only when told to: --fresh-llm)"
MOO_MARGIN = timedelta(minutes=2)  # the LLM must be done this long before the MOO orders go out
MIN_LLM_BUDGET_S = 5.0  # with less time left, the LLM is not asked


def llm_time_budget(now: datetime, moo: datetime, budget_s: float) -> float | None:
    """Seconds the LLM may take at `now`: `budget_s`, cut so it is done MOO_MARGIN before the market-on-open
    orders at `moo`; None when less than MIN_LLM_BUDGET_S would be left (the quant ranker then trades)."""
    left = _seconds_left(now, moo)
    return None if left < MIN_LLM_BUDGET_S else min(budget_s, left)


def too_close_to_moo(now: datetime, moo: datetime) -> str:
    """The fallback reason when `llm_time_budget` leaves the LLM no time."""
    left = _seconds_left(now, moo)
    return f"too close to the market-on-open orders at {moo:%H:%M} to ask the LLM ({max(left, 0):.0f} s left)"


def _seconds_left(now: datetime, moo: datetime) -> float:
    return (moo - MOO_MARGIN - now).total_seconds()


@dataclass(frozen=True, slots=True)
class LlmCall:
    """One row of llm_calls (see the migration): field names = column names, JSON columns as Python
    lists/dicts."""

    call_id: str
    request_key: str
    prompt_hash: str
    trade_date: date
    run_id: str | None
    attempt: int
    requested_at: datetime
    base_url: str
    model: str
    params: dict
    response_format: str
    template_version: str
    messages: list
    inputs: dict
    raw_reply: str | None
    status: str  # "ok", "invalid", "error" or "cached"
    error: str | None
    parsed: list | None
    dropped: list | None
    latency_ms: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    est_cost_usd: float | None
    cached_from: str | None


@dataclass(frozen=True, slots=True)
class CachedReply:
    """A recorded reply to the same prompt, and the call that got it."""

    call_id: str
    raw_reply: str


@dataclass
class LlmOutcome:
    """What the last `rank` did: every call made or reused, and why it fell back, if it did."""

    request_key: str | None
    calls: list[LlmCall] = field(default_factory=list)
    fallback_reason: str | None = None  # None when the LLM's ranking is used
    scores: dict[str, float] = field(default_factory=dict)  # per candidate shown: its score, 0.0 if not picked

    @property
    def used_scores(self) -> dict[str, float] | None:
        """The scores of a ranking that was used; None when it fell back (its picks are then the fallback's)."""
        return None if self.fallback_reason else self.scores


class _Fallback(Exception):
    """Internal: the LLM's ranking cannot be used; the message is the fallback reason."""


class LlmRanker:
    """Ranks with an LLM; falls back to `fallback` (the quant ranker) when the LLM gives nothing usable."""

    name = "llm"

    def __init__(
        self,
        settings: LlmSettings,
        *,
        trade_date: date,
        run_id: str | None,
        fallback: Ranker,
        headlines: Mapping[str, Sequence[Headline]] | None = None,
        cached: Callable[[str], CachedReply | None] = lambda key: None,
        budget_s: float | None = None,
        client: ChatClient | None = None,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        recorded_only: bool = False,
    ) -> None:
        self.settings = settings
        self.trade_date = trade_date
        self.run_id = run_id
        self.fallback = fallback
        self.headlines = headlines if headlines is not None else {}
        self.cached = cached
        self.budget_s = budget_s if budget_s is not None else settings.budget_s
        self.wall_clock = wall_clock
        self.outcome: LlmOutcome | None = None
        self.recorded_only = recorded_only  # a backtest: a recorded reply or the fallback, never a request
        self._client = client
        self._secret = settings.api_key.get_secret_value() if settings.api_key is not None else None

    def rank(self, candidates: pd.DataFrame, top_n: int) -> list[RankedPick]:
        """The LLM's ranking of the passing candidates, or the fallback's; never raises for anything the LLM does.

        The LLM's picks come first (rank 1..n, selected when rank <= top_n), then every other passing
        candidate in the fallback's order, not selected. `outcome` says what happened.
        """
        rows = prompt_candidates(candidates, self.settings.max_candidates)
        if not rows:
            self.outcome = LlmOutcome(request_key=None)
            return []
        if not self.settings.configured:
            self.outcome = LlmOutcome(request_key=None, fallback_reason=NOT_CONFIGURED)
            return self.fallback.rank(candidates, top_n)
        run = _Run(self, rows, top_n)
        try:
            parsed = run.ranking()
        except _Fallback as fallback:
            return self._fall_back(run, str(fallback), candidates, top_n)
        except Exception as exc:  # the ranker must not take the trading day down with it
            logger.exception("the LLM ranker failed unexpectedly; using the %s ranker", self.fallback.name)
            reason = redact(f"LLM ranking failed unexpectedly: {type(exc).__name__}: {exc}", self._secret)
            return self._fall_back(run, reason, candidates, top_n)
        finally:
            run.close()
        shown = [row["symbol"] for row in rows]
        scores = dict.fromkeys(shown, 0.0) | {p.symbol: float(p.score) for p in parsed.picks}
        self.outcome = LlmOutcome(request_key=run.key, calls=run.calls, scores=scores)
        return _merged(parsed, self.fallback.rank(candidates, top_n), top_n)

    def _fall_back(self, run: _Run, reason: str, candidates: pd.DataFrame, top_n: int) -> list[RankedPick]:
        logger.warning("LLM ranking not used, falling back to the %s ranker: %s", self.fallback.name, reason)
        self.outcome = LlmOutcome(request_key=run.key, calls=run.calls, fallback_reason=reason)
        return self.fallback.rank(candidates, top_n)


class _Run:
    """One `rank` call's conversation with the model and the LlmCall rows it produced."""

    def __init__(self, ranker: LlmRanker, rows: list[dict], top_n: int) -> None:
        self.ranker = ranker
        self.settings = ranker.settings
        self.rows = rows
        self.top_n = top_n
        self.shown = [str(row["symbol"]) for row in rows]
        self.calls: list[LlmCall] = []
        self.key: str | None = None
        self.client: ChatClient | None = None
        self.messages: list[dict] = []
        self.inputs: dict = {}
        self._last_attempt: Attempt | None = None

    def close(self) -> None:
        """Close the chat client if this run made it (a client passed to the ranker belongs to the caller)."""
        if self.client is not None and self.client is not self.ranker._client:
            try:
                self.client.close()
            except Exception as exc:  # closing a pool must not undo a ranking
                logger.warning("could not close the LLM client: %s: %s", type(exc).__name__, exc)

    def ranking(self) -> ParsedReply:
        """The model's validated picks (recorded or fresh); raises _Fallback with the reason otherwise."""
        ranker = self.ranker
        self.client = ranker._client or ChatClient(self.settings, wall_clock=ranker.wall_clock)
        deadline = self.client.monotonic() + ranker.budget_s  # the budget covers the cache lookup too
        self.messages = build_messages(ranker.trade_date, self.rows, ranker.headlines, self.top_n)
        self.inputs = _inputs(ranker.trade_date, self.top_n, self.rows, ranker.headlines)
        self.key = request_key(self.settings.model or "", self.client.params, self.messages)
        if not self.settings.fresh and (reused := self._recorded()) is not None:
            return reused
        if ranker.recorded_only:
            raise _Fallback(NOT_RECORDED)
        raw = self._ask(self.messages, deadline, None)
        try:
            return self._accept(raw, self.messages)
        except ReplyError as err:
            first_error = str(err)
        retry = self.messages + [
            {"role": "assistant", "content": raw},
            {
                "role": "user",
                "content": f"Your reply was not valid: {first_error}. Reply again with only the JSON object, "
                "choosing only symbols from the candidate list.",
            },
        ]
        raw = self._ask(retry, deadline, first_error)
        try:
            return self._accept(raw, retry)
        except ReplyError as err:
            raise _Fallback(f"LLM reply invalid twice: {err}") from None

    def _recorded(self) -> ParsedReply | None:
        """The recorded reply to this very prompt, as a "cached" call; None when there is none (or it is unusable)."""
        assert self.key is not None
        try:
            cached = self.ranker.cached(self.key)
        except Exception as exc:  # a locked or missing database must not stop a fresh call
            logger.warning("could not look up a recorded LLM reply (%s: %s); calling the model", type(exc).__name__, exc)
            return None
        if cached is None:
            return None
        try:
            parsed = parse_reply(cached.raw_reply, self.shown)
        except ReplyError as err:
            logger.warning("the recorded LLM reply %s is not valid any more (%s); calling the model", cached.call_id, err)
            return None
        self.calls.append(
            self._call(
                self.messages,
                response_format="none",
                requested_at=self.ranker.wall_clock(),
                raw_reply=cached.raw_reply,
                status="cached",
                parsed=parsed,
                latency_ms=0.0,
                cached_from=cached.call_id,
            )
        )
        return parsed

    def _ask(self, messages: list[dict], deadline: float, earlier: str | None) -> str:
        """The model's raw reply; every failed attempt is recorded as an "error" call.

        `earlier` is the validation error of a previous reply, for the fallback reason.
        """
        assert self.client is not None
        try:
            raw, attempts = self.client.complete(messages, deadline)
        except ChatFailed as failed:
            self._record_errors(messages, failed.attempts)
            after = f" (after an invalid reply: {earlier})" if earlier else ""
            raise _Fallback(f"LLM unavailable: {failed}{after}") from None
        self._record_errors(messages, attempts[:-1])
        self._last_attempt = attempts[-1]
        return raw

    def _record_errors(self, messages: list[dict], attempts: Sequence[Attempt]) -> None:
        for attempt in attempts:
            self.calls.append(self._from_attempt(messages, attempt, status="error", error=attempt.error))

    def _accept(self, raw: str, messages: list[dict]) -> ParsedReply:
        """Validate the reply of the last attempt and record it as "ok" or (raising ReplyError) "invalid"."""
        attempt = self._last_attempt
        assert attempt is not None
        try:
            parsed = parse_reply(raw, self.shown)
        except ReplyError as err:
            self.calls.append(self._from_attempt(messages, attempt, status="invalid", error=str(err), raw_reply=raw))
            raise
        self.calls.append(self._from_attempt(messages, attempt, status="ok", raw_reply=raw, parsed=parsed))
        return parsed

    def _from_attempt(
        self,
        messages: list[dict],
        attempt: Attempt,
        *,
        status: str,
        error: str | None = None,
        raw_reply: str | None = None,
        parsed: ParsedReply | None = None,
    ) -> LlmCall:
        return self._call(
            messages,
            response_format=attempt.response_format,
            requested_at=attempt.requested_at,
            raw_reply=raw_reply if raw_reply is not None else attempt.text,
            status=status,
            error=error,
            parsed=parsed,
            latency_ms=attempt.latency_ms,
            prompt_tokens=attempt.prompt_tokens,
            completion_tokens=attempt.completion_tokens,
        )

    def _call(
        self,
        messages: list[dict],
        *,
        response_format: str,
        requested_at: datetime,
        raw_reply: str | None,
        status: str,
        error: str | None = None,
        parsed: ParsedReply | None = None,
        latency_ms: float | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        cached_from: str | None = None,
    ) -> LlmCall:
        assert self.key is not None and self.client is not None
        settings = self.settings
        cost = None
        if prompt_tokens is not None and completion_tokens is not None:
            cost = (prompt_tokens * settings.input_cost_per_mtok + completion_tokens * settings.output_cost_per_mtok) / 1e6
        return LlmCall(
            call_id=uuid.uuid4().hex,
            request_key=self.key,
            prompt_hash=prompt_hash(messages),
            trade_date=self.ranker.trade_date,
            run_id=self.ranker.run_id,
            attempt=len(self.calls) + 1,
            requested_at=requested_at,
            base_url=self.client.base_url,
            model=settings.model or "",
            params=dict(self.client.params),
            response_format=response_format,
            template_version=TEMPLATE_VERSION,
            messages=[dict(m) for m in messages],
            inputs=self.inputs,
            raw_reply=raw_reply,
            status=status,
            error=error,
            parsed=[p.model_dump() for p in parsed.picks] if parsed is not None else None,
            dropped=[{"symbol": d.symbol, "why": d.why} for d in parsed.dropped] if parsed is not None else None,
            latency_ms=latency_ms,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            est_cost_usd=cost,
            cached_from=cached_from,
        )


def _inputs(trade_date: date, top_n: int, rows: list[dict], headlines: Mapping[str, Sequence[Headline]]) -> dict:
    shown = {str(row["symbol"]) for row in rows}
    news = {
        symbol: [
            {
                "published_at": h.published_at.astimezone(UTC).isoformat(),
                "title": h.title,
                "source": h.source,
                "url": h.url,
            }
            for h in sorted(items, key=lambda h: h.published_at, reverse=True)
        ]
        for symbol, items in sorted(headlines.items())
        if symbol in shown and items
    }
    return {
        "trade_date": trade_date.isoformat(),
        "top_n": top_n,
        "candidates": rows,
        "headlines": news,
        "template_version": TEMPLATE_VERSION,
    }


def _merged(parsed: ParsedReply, fallback: list[RankedPick], top_n: int) -> list[RankedPick]:
    """The LLM's picks first, then every other passing candidate in the fallback's order, not selected."""
    picks = [
        RankedPick(
            symbol=p.symbol,
            rank=p.rank,
            score=float(p.score),
            reason=p.rationale,
            selected=p.rank <= top_n,
            confidence=float(p.confidence),
            risk=p.main_risk,
        )
        for p in parsed.picks
    ]
    chosen = {p.symbol for p in picks}
    rest = [p for p in fallback if p.symbol not in chosen]
    picks += [
        RankedPick(symbol=p.symbol, rank=len(picks) + i, score=0.0, reason=NOT_CHOSEN, selected=False)
        for i, p in enumerate(rest, start=1)
    ]
    return picks
