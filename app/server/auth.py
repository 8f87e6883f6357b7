"""Optional API keys with scopes, checked before a request body is read.

Keys live hashed in a JSON file (``TRIAGE_API_KEYS_FILE``, written by ``triage api-key add``):
``{"keys": [{"name": "helpdesk", "sha256": "<hex>", "scopes": ["classify"]}]}``. A key is 32 random bytes, so a
plain SHA-256 is enough at rest (no password stretching needed), and it is compared against every stored hash in
constant time. Scopes: ``classify`` (``POST /classify``), ``escalate:force`` (``"escalation": "force"``, which
could otherwise occupy every in-flight slot of the LLM tier), ``admin`` (``/info``, ``POST /admin/reload``). Routes in
``TRIAGE_PUBLIC_PATHS`` (default ``/health``, ``/ready``, ``/metrics``) need no key; any other route needs a valid
one. Each key may be rate-limited (``TRIAGE_KEY_RATE_LIMIT`` requests per second, a token bucket): 429 with
``Retry-After``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import secrets
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from app.server.body import reply_error

SCOPES = ("classify", "escalate:force", "admin")
ROUTE_SCOPES = {"/classify": "classify", "/info": "admin", "/admin/reload": "admin"}
"""The scope a route needs; any other non-public route needs only a valid key."""
KEY_PREFIX = "trg_"


class KeyFileError(ValueError):
    """The keys file is missing, unreadable or malformed; the message names the file and the problem."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name and scopes."""

    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def read_key_file(path: Path) -> list[dict[str, Any]]:
    """The entries of a keys file, validated."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise KeyFileError(f"API keys file {path} does not exist; create it with `triage api-key add`") from None
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"API keys file {path} cannot be read as JSON: {exc}") from None
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise KeyFileError(f"API keys file {path}: expected an object with a 'keys' list")
    names: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"API keys file {path}, keys[{index}]"
        if not isinstance(entry, dict) or set(entry) != {"name", "sha256", "scopes"}:
            raise KeyFileError(f"{where}: expected exactly the fields name, sha256, scopes")
        if not isinstance(entry["name"], str) or not entry["name"] or entry["name"] in names:
            raise KeyFileError(f"{where}: name must be a unique non-empty string")
        names.add(entry["name"])
        digest = entry["sha256"]
        if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise KeyFileError(f"{where}: sha256 must be 64 lowercase hex digits (the key's hash, never the key)")
        scopes = entry["scopes"]
        if not isinstance(scopes, list) or not all(isinstance(s, str) and s in SCOPES for s in scopes):
            raise KeyFileError(f"{where}: scopes must be a list drawn from {', '.join(SCOPES)}")
    return entries


class KeyStore:
    """The hashed keys, looked up in constant time per stored key."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self._entries = [(bytes.fromhex(e["sha256"]), Principal(e["name"], frozenset(e["scopes"]))) for e in entries]

    @classmethod
    def load(cls, path: Path) -> KeyStore:
        return cls(read_key_file(path))

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, key: str) -> Principal | None:
        digest = hashlib.sha256(key.encode()).digest()
        found = None
        for stored, principal in self._entries:  # no early exit: the time does not depend on which key matched
            if hmac.compare_digest(stored, digest):
                found = principal
        return found


class TokenBuckets:
    """Per-key rate limit: ``rate`` requests per second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._state: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, name: str) -> float:
        """0 if a request may go now, else the seconds until one may."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._state.get(name, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._state[name] = (tokens - 1, now)
                return 0.0
            self._state[name] = (tokens, now)
            return (1 - tokens) / self.rate


def extract_key(headers: dict[bytes, bytes]) -> str | None:
    auth = headers.get(b"authorization", b"").decode("latin-1")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    key = headers.get(b"x-api-key", b"").decode("latin-1").strip()
    return key or None


class APIKeyAuth:
    """Pure ASGI middleware: 401 without a valid key, 403 without the route's scope, 429 past the key's rate.

    It runs before the body is read, so an anonymous client cannot make the server read a large body. The caller's
    ``Principal`` is left in ``scope["state"]["principal"]`` for checks that need the body (``escalate:force``).
    """

    def __init__(
        self,
        app: ASGIApp,
        store: KeyStore,
        public_paths: Collection[str],
        rate_limit: float = 0.0,
        on_reject: Any = None,
    ) -> None:
        self.app = app
        self.store = store
        self.public = set(public_paths)
        self.buckets = TokenBuckets(rate_limit, max(1.0, rate_limit)) if rate_limit > 0 else None
        self.on_reject = on_reject or (lambda reason: None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.public:
            await self.app(scope, receive, send)
            return
        key = extract_key(dict(scope["headers"]))
        principal = self.store.lookup(key) if key else None
        if principal is None:
            reason = "missing" if key is None else "invalid"
            self.on_reject(reason)
            message = (
                "this route needs an API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
                if key is None
                else "the API key is not valid"
            )
            await reply_error(send, 401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})
            return
        needed = ROUTE_SCOPES.get(scope["path"])
        if needed is not None and not principal.allows(needed):
            self.on_reject("scope")
            await reply_error(send, 403, "forbidden", f"API key {principal.name!r} lacks the scope {needed!r}")
            return
        if self.buckets is not None:
            wait = self.buckets.take(principal.name)
            if wait > 0:
                self.on_reject("rate")
                await reply_error(
                    send,
                    429,
                    "rate_limited",
                    f"API key {principal.name!r} is over its rate limit; retry later",
                    {"Retry-After": str(max(1, math.ceil(wait)))},
                )
                return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


# -- the keys file (`triage api-key`) -------------------------------------------------------------------------------


def write_key_file(path: Path, entries: list[dict[str, Any]]) -> None:
    """Write atomically (temp file, fsync, rename), readable by its owner only."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps({"keys": entries}, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def add_key(path: Path, name: str, scopes: list[str]) -> str:
    """Create a key, store its hash under ``name``; returns the key (shown once, never stored)."""
    entries = read_key_file(path) if path.exists() else []
    if any(e["name"] == name for e in entries):
        raise KeyFileError(f"API keys file {path} already has a key named {name!r}; revoke it first")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise KeyFileError(f"scopes {unknown or scopes} are not valid; choose from {', '.join(SCOPES)}")
    key = new_key()
    write_key_file(path, [*entries, {"name": name, "sha256": hash_key(key), "scopes": list(scopes)}])
    return key


def revoke_key(path: Path, name: str) -> None:
    entries = read_key_file(path)
    kept = [e for e in entries if e["name"] != name]
    if len(kept) == len(entries):
        raise KeyFileError(f"API keys file {path} has no key named {name!r}")
    write_key_file(path, kept)
