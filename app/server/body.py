"""Request bodies are refused before they are read when they are too large (413) or not declared JSON (415).

A pure ASGI middleware: the ``Content-Length`` header is checked first, and a body sent without one (chunked) is
read only up to the limit, so a 250 MB upload costs the server at most ``max_body_bytes`` of memory. A body that
passes is handed to the app unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.server.errors import error_body

JSON_TYPES = (b"application/json",)


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media in JSON_TYPES or media.endswith(b"+json")


async def reply_error(send: Send, status: int, type_: str, message: str, headers: dict[str, str] | None = None) -> None:
    """Answer with the error body from a middleware, closing the connection (the body may be left unread)."""
    body = json.dumps(error_body(type_, message)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    raw.append((b"connection", b"close"))  # the client may still be sending what we refused to read
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class BodyGuard:
    """Size and media-type checks for request bodies, ahead of routing and parsing."""

    def __init__(self, app: ASGIApp, max_bytes: int, json_paths: Collection[str]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.json_paths = set(json_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        json_route = scope["path"] in self.json_paths
        if json_route and not _is_json(headers.get(b"content-type", b"")):
            found = headers.get(b"content-type", b"").decode("latin-1") or "none"
            await reply_error(send, 415, "unsupported_media_type", f"send the body as application/json (got {found})")
            return
        too_large = (
            f"request body is larger than the limit of {self.max_bytes} bytes (TRIAGE_MAX_BODY_BYTES); "
            "split the tickets over several requests"
        )
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await reply_error(send, 413, "payload_too_large", too_large)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nothing to answer
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await reply_error(send, 413, "payload_too_large", too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        if json_route and size == 0:
            await reply_error(send, 400, "invalid_json", "request body is empty; send a JSON object")
            return
        await self.app(scope, _replay(b"".join(chunks), receive), send)


def _replay(body: bytes, receive: Receive) -> Callable[[], Awaitable[Message]]:
    """A ``receive`` that hands the buffered body over once, then defers to the real one (disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
