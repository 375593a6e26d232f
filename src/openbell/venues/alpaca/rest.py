"""What openbell's Alpaca clients share: request timeouts, retries, and failures kept without secrets."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from alpaca.common.exceptions import APIError
from alpaca.common.rest import RESTClient

KEY_ENV = "OPENBELL_BROKER__ALPACA__API_KEY"
SECRET_ENV = "OPENBELL_BROKER__ALPACA__SECRET_KEY"

Client = TypeVar("Client", bound=RESTClient)


class TimeoutSession(requests.Session):
    """A requests session with a default timeout: alpaca-py sets none, so a silent server would hang a flow."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self.timeout_s = timeout_s

    def request(self, method: str, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout_s)
        return super().request(method, url, *args, **kwargs)


def tuned(client: Client, timeout_s: float, retry_wait_s: float) -> Client:
    """Give an alpaca-py client a request timeout and a chosen pause between its own 429/504 retries.

    Both are RESTClient attributes that the trading and data clients' constructors do not pass through.
    """
    client._session = TimeoutSession(timeout_s)
    client._retry_wait = retry_wait_s  # type: ignore[assignment]  # alpaca-py annotates int; it only goes to time.sleep
    return client


@dataclass(frozen=True, slots=True)
class Failure:
    """What went wrong in one call to Alpaca, kept without the request (its headers carry the keys)."""

    status: int | None  # None: no readable HTTP answer (refused, dropped, timed out, unreadable)
    code: int | str | None  # Alpaca's error code, where the caller reads one
    message: str
    unreadable: bool = False  # an answer came, but alpaca-py could not make sense of it

    @property
    def transport(self) -> bool:
        """No HTTP answer at all: the connection was refused, dropped or timed out."""
        return self.status is None and not self.unreadable

    def __str__(self) -> str:
        if self.status is None:
            return self.message
        code = f", code {self.code}" if self.code is not None else ""
        return f"HTTP {self.status}{code}: {self.message}"


def secret(value) -> str | None:
    """The plain text of a SecretStr, or None; for handing to alpaca-py only, never for a message."""
    return value.get_secret_value() if value is not None else None


def api_failure(error: APIError, *, with_code: bool) -> Failure:
    """Alpaca's refusal as a Failure: its HTTP status and what its body says.

    Args:
        with_code: read Alpaca's error code too (the trading API): a JSON body gives its "code" and its
            "message", or the whole body when it has no message. Without (market data): only a JSON
            "message" is taken, otherwise the body cut to 300 characters.
    """
    body = str(error)
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and with_code:
        return Failure(error.status_code, payload.get("code"), str(payload.get("message") or body))
    if isinstance(payload, dict) and payload.get("message"):
        return Failure(error.status_code, None, str(payload["message"]))
    return Failure(error.status_code, None, body.strip()[:300] or "no message")


def transport_failure(error: requests.RequestException, timeout_s: float) -> Failure:
    """Why a request got no readable HTTP answer, in a few words and without the exception itself."""
    text = str(error).lower()
    if isinstance(error, requests.ConnectTimeout):
        reason = f"could not connect within {timeout_s:g} s"
    elif isinstance(error, requests.Timeout) or "timed out" in text:
        reason = f"no answer within {timeout_s:g} s"
    elif isinstance(error, requests.ConnectionError):
        reason = "connection refused" if "refused" in text else "connection dropped"
    else:
        reason = f"unreadable answer ({type(error).__name__})"
    return Failure(None, None, reason)
