"""The lifecycle the fake HTTP services share: serve on 127.0.0.1, stop, and come back on the same port."""

from __future__ import annotations

import threading
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
