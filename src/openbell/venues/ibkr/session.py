"""The connection behind an Interactive Brokers adapter: its event loop, blocking calls, connecting and closing.

The flows call adapters synchronously, from threads with no event loop; ib_async is asyncio. An `IbSession`
owns one event loop in a background thread and hands every call to it as a coroutine
(`asyncio.run_coroutine_threadsafe(...).result(timeout)`), so ib_async is only ever touched from there.
`IbkrBroker` and `IbkrMarketData` each hold one, under their own client id (TWS takes one connection per id).

The session also does what both need to connect: the API ports the trading mode allows, trying each port,
noticing at once when TWS refuses the client id (ib_async would wait for its whole timeout), retrying with
backoff, reconnecting after a drop, and closing (cancel what still runs on the loop, disconnect, stop it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from ib_async import IB, Contract

from openbell.config import Settings
from openbell.errors import ConfigError, TransientError
from openbell.venues.ibkr import mapping

log = logging.getLogger(__name__)

PAPER_PORTS = (7497, 4002)  # TWS paper, IB Gateway paper
LIVE_PORTS = (7496, 4001)  # TWS live, IB Gateway live
T = TypeVar("T")


def api_ports(settings: Settings) -> tuple[int, ...]:
    """The TWS/IB Gateway API ports to try, in order. Live ports only for a confirmed live setup.

    Raises:
        ConfigError: live trading without its confirmation, or a live port while trading paper.
    """
    port = settings.broker.ibkr.port
    if settings.trading_mode == "live":
        settings.require_live_confirmed()
        return (port,) if port else LIVE_PORTS
    if port in LIVE_PORTS:
        raise ConfigError(
            f"OPENBELL_BROKER__IBKR__PORT={port} is where TWS/IB Gateway trades a live account, but "
            "OPENBELL_TRADING_MODE is paper: use 7497 (TWS paper) or 4002 (IB Gateway paper), or trade live "
            "deliberately with OPENBELL_TRADING_MODE=live and its confirmation"
        )
    return (port,) if port else PAPER_PORTS


class IbSession:
    """One connection to TWS / IB Gateway and the event loop, in a thread of its own, that runs it.

    Args:
        settings: `broker.ibkr` gives host and connect timeout; `trading_mode` decides the ports (`api_ports`).
        client_id: the API client id of this connection.
        owner: the adapter's class name, for error messages.
        purpose: what the connection is for, said in connection messages (" for market data"), or "".
        request_timeout_s: longest wait for one answer from TWS.
        reconnect_delays_s: backoff between connection attempts (the last one repeats).
        after_drop: what happens after the connection drops, told to a caller whose request it cut short.
        thread_name: the name of the event loop's thread.

    Raises:
        ConfigError: live ports without confirmation, or a live port while trading paper.
    """

    def __init__(
        self,
        settings: Settings,
        client_id: int,
        *,
        owner: str,
        purpose: str = "",
        request_timeout_s: float,
        reconnect_delays_s: Sequence[float],
        after_drop: str,
        thread_name: str,
    ) -> None:
        ibkr = settings.broker.ibkr
        self.ports = api_ports(settings)
        self.host, self.client_id = ibkr.host, client_id
        self.connect_timeout = ibkr.connect_timeout_s
        self.request_timeout = request_timeout_s
        self.delays = tuple(reconnect_delays_s) or (1.0,)
        self._owner, self._purpose, self._after_drop = owner, purpose, after_drop

        self._closed = False  # set by a caller's thread; everything below only by the event loop's thread
        self._close_lock = threading.Lock()
        self.ib: IB | None = None  # the client last connected
        self.port: int | None = None
        self.closing = False  # close has begun: a disconnect from now on is ours
        self.refusal: str | None = None  # TWS's words refusing the client id at the last handshake
        self._refused = asyncio.Event()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name=thread_name, daemon=True)
        self._thread.start()

    def where(self) -> str:
        port = self.port or "/".join(str(p) for p in self.ports)
        return f"{self.host}:{port}"

    def delay(self, attempt: int) -> float:
        """The pause after failed attempt `attempt` (from 0); the last delay repeats."""
        return self.delays[min(attempt, len(self.delays) - 1)]

    # --- the event loop and its thread ---------------------------------------------------------
    def call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run `coro` on the event loop and wait up to `timeout` seconds for its result.

        Raises:
            RuntimeError: the session was closed, or the call comes from the event loop's own thread.
            TransientError: no answer in time, or the connection dropped during the request.
        """
        if self._closed:
            coro.close()
            raise RuntimeError(f"this {self._owner} was closed; make a new one")
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError(f"{self._owner}'s blocking methods cannot be called from its own event loop")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:  # also a request's own timeout inside the call (one class since 3.11)
            waited = self.request_timeout if future.done() else timeout
            future.cancel()
            raise TransientError(f"no answer from TWS/IB Gateway at {self.where()} within {waited:g} s") from None
        except ConnectionError as exc:  # ib_async's "Socket disconnect"
            raise TransientError(
                f"the connection to TWS/IB Gateway at {self.where()} dropped during the request ({exc}); "
                f"{self._after_drop}: retry shortly"
            ) from None

    def close(self) -> None:
        """Cancel what still runs on the loop, disconnect, stop the loop. Safe to call twice."""
        with self._close_lock:
            if self._closed:
                return
            try:
                self.call(self._shutdown(), timeout=self.connect_timeout + 5)
            except Exception:  # closing must not fail the caller's cleanup
                log.exception("closing the connection to TWS/IB Gateway at %s, client id %d", self.where(), self.client_id)
            finally:
                self._closed = True
                self.stop_loop()

    def stop_loop(self) -> None:
        """Stop the event loop and its thread, without disconnecting first (a start that failed)."""
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def _shutdown(self) -> None:
        self.closing = True
        others = asyncio.all_tasks() - {asyncio.current_task()}
        for task in others:
            task.cancel()
        if others:
            await asyncio.wait(others, timeout=1.0)
        if self.ib is not None:
            self.ib.disconnect()
        await asyncio.sleep(0.05)  # let the transport close its socket before the loop stops

    # --- connecting, on the event loop ---------------------------------------------------------
    def client(self) -> IB:
        """A new ib_async client; the session notices when TWS refuses its client id."""
        ib = IB()
        ib.errorEvent += self._on_error
        return ib

    def _on_error(self, req_id: int, code: int, message: str, contract: Contract | None) -> None:
        if mapping.error_kind(code) is mapping.IbErrorKind.CLIENT_ID_IN_USE:
            self.refusal = message
            self._refused.set()

    async def connect(self, ib: IB, refused: Callable[[str], ConfigError], **options: Any) -> None:
        """Connect `ib` on the first of the ports where TWS listens; `options` go to ib_async's connectAsync.

        Raises:
            ConfigError: `refused(TWS's message)` when TWS refuses the client id.
            OSError: nothing listens on any port (ConnectionRefusedError), or no API handshake in time.
        """
        last: OSError | None = None
        for port in self.ports:
            self.refusal = None
            self._refused.clear()
            try:
                connected = await _connect_unless_refused(
                    ib, self._refused, self.host, port, clientId=self.client_id, timeout=self.connect_timeout, **options
                )
            except ConnectionRefusedError as exc:  # nothing listens there: try the next default port
                last = exc
                continue
            except TimeoutError as exc:
                raise OSError(f"no API handshake within {self.connect_timeout:g} s") from exc
            if not connected:
                raise refused(self.refusal or "")
            self.ib, self.port = ib, port
            return
        raise last or ConnectionRefusedError(f"no port to try at {self.host}")

    async def connect_with_retries(
        self, connect_once: Callable[[], Awaitable[T]], attempts: int, client_id_wait_s: float = 0.0
    ) -> T:
        """`connect_once()` until it succeeds, with backoff between tries.

        A refused client id is tried again for `client_id_wait_s` (an earlier run with the same id may still
        be closing); a failed connection (OSError) `attempts` times in all.

        Raises:
            ConfigError: from `connect_once`, the client id refused for longer than `client_id_wait_s` included.
            TransientError: `attempts` connections failed.
        """
        client_id_deadline = self.loop.time() + client_id_wait_s
        failures, waits = 0, 0
        while True:
            try:
                return await connect_once()
            except ConfigError:
                if self.refusal is None or self.loop.time() >= client_id_deadline:
                    raise
                log.warning("client id %d is in use at TWS (an earlier run still closing?); retrying", self.client_id)
            except OSError as exc:  # refused, reset, timed out
                failures += 1
                log.warning("connecting to TWS/IB Gateway at %s%s failed (attempt %d of %d): %r", self.where(),
                            self._purpose, failures, attempts, exc)  # fmt: skip
                if failures >= attempts:
                    raise TransientError(
                        f"could not connect to TWS/IB Gateway at {self.where()} with client id {self.client_id}"
                        f"{self._purpose} ({exc!r}): start TWS or IB Gateway, enable its API (Configure > Settings > "
                        "API) and check OPENBELL_BROKER__IBKR__HOST and _PORT"
                    ) from None
            await asyncio.sleep(self.delay(waits))
            waits += 1

    async def reconnect(self, connect_once: Callable[[], Awaitable[None]]) -> ConfigError | None:
        """After a drop: `connect_once()` with backoff until it succeeds or the session closes.

        Returns:
            The ConfigError that makes trying again pointless (not a refused client id: the account changed
            under us), else None.
        """
        attempt = 0
        while not self.closing:
            await asyncio.sleep(self.delay(attempt))
            attempt += 1
            try:
                await connect_once()
                log.info("reconnected to TWS/IB Gateway after %d attempt(s)", attempt)
                return None
            except ConfigError as exc:
                if self.refusal is None:
                    return exc
                log.warning("reconnect: client id %d still in use at TWS; retrying", self.client_id)
            except OSError as exc:
                log.warning("reconnect attempt %d to %s failed: %r", attempt, self.where(), exc)
        return None


async def _connect_unless_refused(ib: IB, refused: asyncio.Event, host: str, port: int, **options: Any) -> bool:
    """ib_async's `connectAsync`, cut short when `refused` is set first.

    TWS refuses a client id that is in use with an error, and ib_async would then wait for its whole
    timeout; the session's error handler sets `refused` instead. Returns False (disconnected) when the
    refusal came first; the connect's own errors are raised as they are.
    """
    connecting = asyncio.ensure_future(ib.connectAsync(host, port, **options))
    waiting = asyncio.ensure_future(refused.wait())
    try:
        await asyncio.wait({connecting, waiting}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
    if not connecting.done():
        connecting.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await connecting
        ib.disconnect()
        return False
    connecting.result()
    return True
