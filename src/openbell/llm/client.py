"""The network edge of LLM ranking: one chat request at a time, retried within a deadline."""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from openbell.config import LlmSettings
from openbell.errors import OpenbellError
from openbell.llm.prompt import REPLY_SCHEMA

if TYPE_CHECKING:
    import openai

logger = logging.getLogger(__name__)

FORMATS = ("json_schema", "json_object", "none")  # the order "auto" tries them in
RETRYABLE_STATUS = frozenset({408, 409, 429})  # and every 5xx, as the OpenAI SDK's own retries do
UNSUPPORTED_STATUS = frozenset({400, 422})  # the answer of a server that lacks a response_format
MIN_REQUEST_S = 1.0  # a retry is only sent with at least this long (or timeout_s, if shorter) left
HARD_LIMIT_GRACE_S = 0.05  # past its timeout, a request still receiving a reply is abandoned after this
_MAX_ERROR_CHARS = 300


@dataclass(frozen=True, slots=True)
class Attempt:
    """One HTTP request to the chat endpoint and what came of it."""

    requested_at: datetime  # wall clock, tz-aware UTC
    response_format: str  # "json_schema", "json_object" or "none"
    latency_ms: float
    text: str | None  # the reply's message content, when one came back
    error: str | None  # e.g. "timeout after 2.0 s", "429 rate limited: ...", "503 server error: ..."
    prompt_tokens: int | None
    completion_tokens: int | None


class ChatFailed(OpenbellError):
    """No reply within the budget; .attempts holds every try, str() says why in one line."""

    def __init__(self, message: str, attempts: list[Attempt]) -> None:
        super().__init__(message)
        self.attempts = attempts


@dataclass(frozen=True, slots=True)
class _Failure:
    """How one request failed: the Attempt's error text and what to do next."""

    error: str
    action: str  # "retry", "downgrade" or "stop"
    retry_after_s: float | None = None


class ChatClient:
    """An OpenAI-compatible chat client that never retries on its own and never shows its key.

    The openai SDK's own retries are off (max_retries=0) so that every request is counted, timed and
    bounded by the caller's deadline here.
    """

    def __init__(
        self,
        settings: LlmSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.sleep = sleep
        self.monotonic = monotonic
        self.wall_clock = wall_clock
        self.params: dict = {"temperature": settings.temperature, "max_tokens": settings.max_tokens}
        import openai  # loaded by the days that use an LLM only (half a second of start-up)

        self._secret = settings.api_key.get_secret_value() if settings.api_key is not None else None
        self._openai = openai.OpenAI(
            base_url=settings.base_url or None,
            api_key=self._secret or "not-needed",
            max_retries=0,
            timeout=settings.timeout_s,
        )
        self.base_url = _public_url(str(self._openai.base_url))
        if settings.structured_output == "auto":
            self._formats: tuple[str, ...] = FORMATS
        else:
            self._formats = (settings.structured_output,)

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self._openai.close()

    @property
    def response_format(self) -> str:
        """The response format the next request asks for ("auto" may have downgraded it)."""
        return self._formats[0]

    def complete(self, messages: list[dict], deadline: float) -> tuple[str, list[Attempt]]:
        """The reply text and every attempt made (the last one succeeded).

        `deadline` is a `monotonic()` value. Each request's timeout is min(timeout_s, time left).
        Timeouts, dropped connections, 429 and 5xx are retried with exponential backoff starting at
        retry_backoff_s (a Retry-After header is honoured when it fits in the time left) while at least
        MIN_REQUEST_S (or timeout_s, if shorter) is left after the wait. A refused connection is not
        retried: nothing listens at the base URL, and waiting will not start a server. With
        structured_output "auto", a 400/422 answer to a json_schema request is taken as "not
        supported": the same request goes out as json_object, then with no response_format, and the
        downgrade is kept for later calls.

        Raises:
            ChatFailed: no reply before the deadline, or an answer that retrying cannot fix (a refused
                connection, 401, 403, 404, an unsupported format with nothing left to fall back to).
        """
        started = self.monotonic()
        attempts: list[Attempt] = []
        backoff = self.settings.retry_backoff_s
        while True:
            left = deadline - self.monotonic()
            if left <= 0:
                raise self._failed("no time left for a request", attempts, started)
            attempt, failure = self._request(messages, min(self.settings.timeout_s, left))
            attempts.append(attempt)
            if failure is None:
                return attempt.text or "", attempts
            if failure.action == "stop":
                raise self._failed(failure.error, attempts, started)
            if failure.action == "downgrade":
                if len(self._formats) > 1:
                    dropped, self._formats = self._formats[0], self._formats[1:]
                    logger.warning("the LLM server refused response_format %s; asking for %s", dropped, self._formats[0])
                    continue
                raise self._failed(failure.error, attempts, started)
            wait = max(backoff, failure.retry_after_s or 0.0)
            backoff *= 2
            left = deadline - self.monotonic()
            if left - wait < min(MIN_REQUEST_S, self.settings.timeout_s):
                raise self._failed(failure.error, attempts, started)
            logger.warning("LLM request failed (%s); retrying in %.2f s", failure.error, wait)
            self.sleep(wait)

    def _request(self, messages: list[dict], timeout: float) -> tuple[Attempt, _Failure | None]:
        import openai

        response_format = self._formats[0]
        extra: dict = {}
        if response_format == "json_schema":
            extra["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "ranking", "strict": True, "schema": REPLY_SCHEMA},
            }
        elif response_format == "json_object":
            extra["response_format"] = {"type": "json_object"}
        requested_at = self.wall_clock()
        began = self.monotonic()
        text = prompt_tokens = completion_tokens = None
        failure: _Failure | None = None
        try:
            completion = _within(
                timeout + HARD_LIMIT_GRACE_S,
                lambda: self._openai.chat.completions.create(
                    model=self.settings.model or "",
                    messages=messages,  # type: ignore[arg-type]  # plain role/content dicts, which the SDK's TypedDicts describe
                    timeout=timeout,
                    **self.params,
                    **extra,
                ),
            )
            text, prompt_tokens, completion_tokens = _content(completion)
        except (openai.APITimeoutError, _TooLong):
            failure = _Failure(f"timeout after {timeout:.1f} s", "retry")
        except openai.APIConnectionError as exc:
            if _refused(exc):
                failure = _Failure(
                    f"connection refused: no LLM server listens at {self.base_url} "
                    "(start it, or check OPENBELL_LLM__BASE_URL)",
                    "stop",
                )
            else:
                failure = _Failure(self._redact(f"connection failed: {_cause(exc)}"), "retry")
        except openai.APIStatusError as exc:
            failure = self._status_failure(exc, response_format)
        except (openai.OpenAIError, ValueError, TypeError, AttributeError, IndexError) as exc:
            failure = _Failure(self._redact(f"unusable response: {type(exc).__name__}: {exc}"), "stop")
        attempt = Attempt(
            requested_at=requested_at,
            response_format=response_format,
            latency_ms=(self.monotonic() - began) * 1000.0,
            text=text,
            error=failure.error if failure else None,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )
        return attempt, failure

    def _status_failure(self, exc: openai.APIStatusError, response_format: str) -> _Failure:
        status = exc.status_code
        message = self._redact(_server_message(exc))
        if status == 429:
            return _Failure(f"429 rate limited: {message}", "retry", _retry_after(exc.response.headers))
        if status >= 500 or status in RETRYABLE_STATUS:
            return _Failure(f"{status} server error: {message}", "retry", _retry_after(exc.response.headers))
        if status in UNSUPPORTED_STATUS and response_format != "none":
            return _Failure(f"{status} response_format {response_format} not supported: {message}", "downgrade")
        if status == 401:
            return _Failure(f"401 unauthorized: {message} (check OPENBELL_LLM__API_KEY)", "stop")
        if status == 403:
            return _Failure(f"403 forbidden: {message} (check the key's access to the model)", "stop")
        if status == 404:
            return _Failure(f"404 not found: {message} (check OPENBELL_LLM__BASE_URL and OPENBELL_LLM__MODEL)", "stop")
        return _Failure(f"{status} refused: {message}", "stop")

    def _failed(self, why: str, attempts: list[Attempt], started: float) -> ChatFailed:
        n = len(attempts)
        spent = self.monotonic() - started
        return ChatFailed(f"{why} ({n} attempt{'s' if n != 1 else ''} in {spent:.1f} s)", attempts)

    def _redact(self, text: str) -> str:
        """`text` without the API key and cut to a length fit for a log line or a database column."""
        return redact(text, self._secret)


class _TooLong(Exception):
    """A request still running at its hard limit: a reply trickling in, whose reads each arrive in time."""


def _within(limit_s: float, request: Callable[[], object]) -> object:
    """`request()`'s result, or _TooLong once `limit_s` has passed.

    The HTTP read timeout bounds the wait between two bytes, not the whole reply, so a server that
    answers a byte at a time could hold a request far past its timeout and the MOO time with it. The
    request runs on a daemon thread instead; one still running at the limit is abandoned (closing the
    client ends it).
    """
    done = threading.Event()
    value: list[object] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            value.append(request())
        except BaseException as exc:  # handed to the caller's thread below
            error.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name="openbell-llm-request", daemon=True).start()
    if not done.wait(limit_s):
        raise _TooLong
    if error:
        raise error[0]
    return value[0]


def redact(text: str, secret: str | None) -> str:
    """`text` with every occurrence of `secret` masked, on one line and at most a few hundred characters."""
    if secret:
        text = text.replace(secret, "***")
    text = " ".join(text.split())
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"


def _content(completion: object) -> tuple[str, int | None, int | None]:
    """The message text and token counts of a chat completion; ValueError when it has no choice."""
    choices = getattr(completion, "choices", None)
    if not choices:
        raise ValueError("the response has no choices")
    message = choices[0].message
    text = message.content
    if text is None:
        refusal = getattr(message, "refusal", None)
        text = f"(no content; the model refused: {refusal})" if refusal else ""
    usage = getattr(completion, "usage", None)
    prompt_tokens = getattr(usage, "prompt_tokens", None) if usage is not None else None
    completion_tokens = getattr(usage, "completion_tokens", None) if usage is not None else None
    return text, prompt_tokens, completion_tokens


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    if isinstance(body, str) and body.strip():
        return body
    try:
        return exc.response.text or exc.response.reason_phrase
    except Exception:  # a streamed or closed body: the status says enough
        return "no message"


def _cause(exc: openai.APIConnectionError) -> str:
    cause = exc.__cause__
    return f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)


def _refused(exc: BaseException) -> bool:
    """Whether the connection was refused: a ConnectionRefusedError anywhere in the chain httpx and openai wrap it in."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        if isinstance(link, ConnectionRefusedError):
            return True
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    return False


def _retry_after(headers) -> float | None:
    """Seconds a Retry-After (or OpenAI's retry-after-ms) header asks for, when it is readable."""
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return max(0.0, float(ms) / 1000.0)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, (when - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError, OverflowError):
        return None


def _public_url(url: str) -> str:
    """The API root without user info, query or fragment (where a key could hide), and no trailing slash."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))
