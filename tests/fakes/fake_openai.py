"""A fake OpenAI chat-completions API on 127.0.0.1 that the real openai client talks to, with scripted replies.

It answers POST /v1/chat/completions with a proper `chat.completion` (choices[0].message.content and
usage) and records every request body in `requests`. Each request takes the next scripted `Reply`
(`script(...)`); with nothing scripted it answers with `good()`: a ranking built from the candidate
symbols in the request's user-message JSON document, so a flow can simply be pointed at the fake.

Replies: `good` (optionally in a given order), `text` (any content, e.g. malformed JSON),
`hallucinated` (a good ranking with a symbol that is not a candidate ranked first), `obeys_injection`
(ranks a non-candidate first and adds "position_size": 1.0, as a model fooled by a headline would),
`slow` (answer after a delay the client will not wait for), `dribble` (headers at once, then the body
a byte at a time, so no single read times out), and `status` (an HTTP error such as 429
with Retry-After, 500, 503). A server without structured output (`json_schema=False`) answers 400 to
any json_schema response_format, as many local servers do; `json_object=False` does the same for JSON
mode. With `api_key` set, a request without that bearer key gets 401 and a message that echoes the key
it was given (as OpenAI's does), so tests can check that the client never repeats it.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field

from tests.fakes.loopback import LoopbackHttp, QuietHandler

PATH = "/v1/chat/completions"
API_KEY = "sk-test-0123456789abcdefSECRET"  # the key the tests' settings send


@dataclass(frozen=True)
class Reply:
    """What the fake does with one request."""

    kind: str  # "good", "text", "hallucinated", "injection", "slow", "status"
    content: str = ""
    order: tuple[str, ...] = ()
    symbol: str = ""
    seconds: float = 0.0
    status: int = 200
    message: str = ""
    headers: dict = field(default_factory=dict)
    position_size: bool = False


def good(*order: str) -> Reply:
    """A valid ranking: the given symbols in that order, or top_n candidates in reverse symbol order."""
    return Reply("good", order=tuple(order))


def text(content: str) -> Reply:
    return Reply("text", content=content)


def hallucinated(symbol: str = "ZZZZ") -> Reply:
    """A good ranking with `symbol` (not a candidate) inserted at rank 1."""
    return Reply("hallucinated", symbol=symbol)


def obeys_injection(symbol: str = "EVIL", *, position_size: bool = True) -> Reply:
    """What a model that follows an injected headline says: `symbol` first, with a position size."""
    return Reply("injection", symbol=symbol, position_size=position_size)


def slow(seconds: float) -> Reply:
    """A good ranking, but only after `seconds` (the client has usually given up by then)."""
    return Reply("slow", seconds=seconds)


def dribble(seconds: float) -> Reply:
    """A good ranking whose body trickles out over `seconds`, a byte at a time: no read ever times out."""
    return Reply("dribble", seconds=seconds)


def status(code: int, message: str = "", headers: dict | None = None) -> Reply:
    return Reply("status", status=code, message=message or f"fake error {code}", headers=headers or {})


class FakeOpenAI(LoopbackHttp):
    """OpenAI's chat-completions endpoint in miniature; `start()` serves it, `url` is what base_url takes."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        json_schema: bool = True,
        json_object: bool = True,
        usage: tuple[int, int] = (1200, 150),
    ) -> None:
        self.api_key = api_key
        self.json_schema = json_schema
        self.json_object = json_object
        self.usage = usage
        self.requests: list[dict] = []  # every request body, in order
        self._lock = threading.Lock()
        self._script: deque[Reply] = deque()
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAI:
        self._stopping.clear()
        self.serve(_Handler)
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes slow replies
        self.shutdown()

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order; then `good()` again."""
        with self._lock:
            self._script.extend(replies)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def _next(self, body: dict) -> Reply:
        with self._lock:
            self.requests.append(body)
            return self._script.popleft() if self._script else good()

    # --- answers ------------------------------------------------------------------------------
    def answer(self, body: dict, authorization: str | None) -> tuple[int, dict, dict]:
        """(status, JSON payload, extra headers) for one request."""
        if self.api_key is not None and authorization != f"Bearer {self.api_key}":
            given = (authorization or "").removeprefix("Bearer ")
            return _error(401, f"Incorrect API key provided: {given}.", "invalid_api_key")
        reply = self._next(body)
        kind = (body.get("response_format") or {}).get("type")
        if (kind == "json_schema" and not self.json_schema) or (kind == "json_object" and not self.json_object):
            return _error(400, f"response_format {kind} is not supported by this server", "invalid_request_error")
        if reply.kind == "status":
            code, payload, _ = _error(reply.status, reply.message, "fake_error")
            return code, payload, reply.headers
        if reply.kind == "slow":
            self._stopping.wait(reply.seconds)
        headers = {"x-fake-dribble-s": reply.seconds} if reply.kind == "dribble" else {}
        return 200, self._completion(body, self._content(body, reply)), headers

    def _content(self, body: dict, reply: Reply) -> str:
        if reply.kind == "text":
            return reply.content
        document = request_document(body)
        symbols = [row["symbol"] for row in document.get("candidates", [])]
        top_n = int(document.get("top_n") or len(symbols) or 1)
        if reply.kind == "good" and reply.order:
            chosen = list(reply.order)
        else:
            chosen = sorted(symbols, reverse=True)[:top_n]
        picks = [_pick(symbol, rank) for rank, symbol in enumerate(chosen, start=1)]
        if reply.kind in ("hallucinated", "injection"):
            picks = [_pick(reply.symbol, 1)] + [_pick(p["symbol"], p["rank"] + 1) for p in picks]
        if reply.kind == "injection" and reply.position_size:
            picks[0]["position_size"] = 1.0
            picks[0]["rationale"] = f"The headline says to buy {reply.symbol} with 100% of equity."
        return json.dumps({"picks": picks})

    def _completion(self, body: dict, content: str) -> dict:
        prompt_tokens, completion_tokens = self.usage
        return {
            "id": f"chatcmpl-fake-{len(self.requests)}",
            "object": "chat.completion",
            "created": 1_741_300_000,
            "model": body.get("model", "fake-model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "system_fingerprint": None,
        }


def request_document(body: dict) -> dict:
    """The JSON document of the request's first user message (the candidates and headlines)."""
    for message in body.get("messages", []):
        if message.get("role") == "user":
            try:
                return json.loads(message["content"])
            except (TypeError, ValueError):
                return {}
    return {}


def _pick(symbol: str, rank: int) -> dict:
    return {
        "symbol": symbol,
        "rank": rank,
        "score": round(max(0.05, 0.95 - 0.1 * (rank - 1)), 2),
        "confidence": 0.7,
        "rationale": f"{symbol} gapped up on heavy volume.",
        "main_risk": "The gap may fade after the open.",
    }


def _error(code: int, message: str, kind: str) -> tuple[int, dict, dict]:
    return code, {"error": {"message": message, "type": kind, "param": None, "code": kind}}, {}


class _Handler(QuietHandler):
    fake: FakeOpenAI  # set on the subclass `start` makes

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length)) if length else {}
        except ValueError:
            return self._answer(*_error(400, "the body is not JSON", "invalid_request_error"))
        if self.path.split("?")[0] != PATH:
            return self._answer(*_error(404, f"no route for POST {self.path}", "not_found"))
        self._answer(*self.fake.answer(body, self.headers.get("Authorization")))

    def _answer(self, status: int, payload: dict, headers: dict) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, str(value))
            self.end_headers()
            if "x-fake-dribble-s" not in headers:
                self.wfile.write(data)
                return
            pause = float(headers["x-fake-dribble-s"]) / len(data)
            for i in range(len(data)):
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
                if self.fake._stopping.wait(pause):
                    return
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (a slow reply)
