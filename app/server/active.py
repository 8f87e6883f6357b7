"""A bound on requests inside the server: past it, a request is refused before its body is parsed.

The batcher's bounds see only tickets that reached its queue; under overload the backlog also builds up in front of
it (parsing, tokenising, detecting languages on the event loop). In a 2x soak this bound, not the queue's, kept the
tail short (README, Overload).
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.types import ASGIApp, Receive, Scope, Send

from app.server.body import reply_error


class ConcurrencyLimit:
    """Pure ASGI middleware: a request to ``paths`` is refused at once (429 with ``Retry-After``) while ``limit``
    are already inside the app."""

    def __init__(self, app: ASGIApp, limit: int, paths: Collection[str]) -> None:
        self.app = app
        self.limit = limit
        self.paths = set(paths)
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            await reply_error(
                send,
                429,
                "overloaded",
                f"{self.active} requests are being served (TRIAGE_MAX_ACTIVE_REQUESTS); retry shortly",
                {"Retry-After": "1"},
            )
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
