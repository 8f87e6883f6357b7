"""Graceful shutdown: on SIGTERM the server drains before it stops listening.

uvicorn's own shutdown closes the listening socket at once and reaches the app (the lifespan shutdown) only after
the open connections have finished, so neither a load balancer's ``/ready`` probe nor a late client could learn
that the server is leaving. Here the first SIGTERM (or SIGINT) starts a drain phase instead, while the socket
stays open:

1. ``/ready`` answers 503 ``{"status": "draining"}`` at once, so load balancers stop sending traffic;
2. new ``POST /classify`` requests get 503 (type ``draining``) with ``Retry-After`` and ``Connection: close``;
3. the requests already accepted run to the end (their batches, their escalations), each within its own deadline.

When none is left, or ``TRIAGE_DRAIN_TIMEOUT_S`` after the signal, uvicorn's shutdown runs: it closes the socket,
waits for the open responses (at most what is left of the drain timeout), then the lifespan shutdown stops the
batchers, and the process exits 0. A second signal skips the drain (uvicorn's shutdown at once; the process then
dies of that signal, as uvicorn does).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from types import FrameType

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.server.body import reply_error

logger = logging.getLogger(__name__)

DRAIN_RETRY_AFTER_S = 1
"""Retry-After of a request refused while draining: another replica (or this one's successor) can take it now."""


class Drain:
    """The drain state the routes and the server share: whether it started, and how many accepted requests are
    still being served."""

    def __init__(self, on_begin: Callable[[], None] | None = None) -> None:
        self.draining = False
        self.started_at: float | None = None
        self.active = 0
        self._on_begin = on_begin

    def begin(self) -> bool:
        """Start draining (from a signal handler: no I/O, no locks); False if it had already started."""
        if self.draining:
            return False
        self.draining, self.started_at = True, time.monotonic()
        if self._on_begin is not None:
            self._on_begin()
        return True

    @property
    def idle(self) -> bool:
        return self.active == 0


class DrainGate:
    """Pure ASGI middleware on the work routes: counts the requests it lets in; while draining it refuses new ones
    (503 ``draining`` with ``Retry-After``) and asks the client to close the connection after each answer."""

    def __init__(self, app: ASGIApp, drain: Drain, paths: Collection[str]) -> None:
        self.app = app
        self.drain = drain
        self.paths = set(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        if self.drain.draining:
            await reply_error(
                send,
                503,
                "draining",
                "the server is shutting down and takes no new work; retry (another replica will answer)",
                {"Retry-After": str(DRAIN_RETRY_AFTER_S)},
            )
            return
        self.drain.active += 1  # the check above and this run without an await between them: no request slips by

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and self.drain.draining:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, receive, send_closing)
        finally:
            self.drain.active -= 1


class DrainingServer(uvicorn.Server):
    """uvicorn's server with the drain phase (module docstring) in front of its shutdown."""

    def __init__(self, config: uvicorn.Config, drain: Drain, timeout_s: float) -> None:
        super().__init__(config)
        self.drain = drain
        self.timeout_s = timeout_s
        self._announced = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain.draining or self.should_exit:  # a second signal: uvicorn's shutdown now
            super().handle_exit(sig, frame)
            return
        # Not recorded as uvicorn's captured signal: a completed drain is a clean exit (status 0), not a death by
        # the signal. Only the flag is set here (a signal handler); the event loop does the rest in on_tick.
        self.drain.begin()

    async def on_tick(self, counter: int) -> bool:
        if self.drain.draining and not self.should_exit and self.drain.started_at is not None:
            elapsed = time.monotonic() - self.drain.started_at
            if not self._announced:
                self._announced = True
                logger.info(
                    "draining: /ready is 503, new work is refused; %d request(s) in flight, deadline %.0fs",
                    self.drain.active,
                    self.timeout_s,
                )
            if self.drain.idle or elapsed >= self.timeout_s:
                if self.drain.idle:
                    logger.info("drained in %.2fs: shutting down", elapsed)
                else:
                    logger.warning(
                        "drain deadline (%.0fs, TRIAGE_DRAIN_TIMEOUT_S) passed with %d request(s) in flight: "
                        "shutting down",
                        self.timeout_s,
                        self.drain.active,
                    )
                # uvicorn waits for the open responses only for what is left of the deadline (at least a moment
                # to write answers already computed).
                self.config.timeout_graceful_shutdown = max(1, round(self.timeout_s - elapsed))
                self.should_exit = True
        return await super().on_tick(counter)
