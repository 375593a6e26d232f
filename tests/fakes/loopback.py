"""The lifecycle the fake HTTP services share: serve on 127.0.0.1, stop, and come back on the same port."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackHttp:
    """Mixin for a fake service: `serve` starts a threaded server whose handler reads the fake as `self.fake`.

    The first `serve` takes a free port; after `shutdown` (new connections refused) the next `serve`
    takes the same port again, the way a real service restarts. State lives in the fake, not the server.
    """

    port: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serve(self, handler: type[BaseHTTPRequestHandler], poll_interval_s: float = 0.05) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), type("Handler", (handler,), {"fake": self}))
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": poll_interval_s}, daemon=True).start()

    def shutdown(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class QuietHandler(BaseHTTPRequestHandler):
    """A fake's request handler: no access log on the test output, and answers a client may hang up on."""

    def log_message(self, format, *args) -> None:  # noqa: A002 - keep the test output quiet
        pass

    def send(self, status: int, data: bytes, content_type: str = "application/json") -> None:
        """Answer `status` with `data`; a client that gave up waiting (a scripted slow answer) is no error."""
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass


@dataclass
class JsonReceiver(LoopbackHttp):
    """A notification receiver: takes apprise's json:// posts, answers `status` after `delay_s`, keeps every payload."""

    status: int = 200
    delay_s: float = 0.0
    payloads: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.serve(_JsonHandler, poll_interval_s=0.01)

    def url_for(self, path: str = "/openbell", password: str | None = None) -> str:
        """The apprise URL that posts here (with a user and `password` when given)."""
        user = f"user:{password}@" if password else ""
        return f"json://{user}127.0.0.1:{self.port}{path}"


class _JsonHandler(QuietHandler):
    fake: JsonReceiver

    def do_POST(self) -> None:
        self.fake.payloads.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        time.sleep(self.fake.delay_s)
        self.send_response(self.fake.status)
        self.send_header("Content-Length", "0")
        self.end_headers()
