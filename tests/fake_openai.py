"""A scriptable fake of an OpenAI-compatible server (the parts of vLLM's API the ``openai`` LLM backend uses).

It speaks the real protocol: ``GET /v1/models`` and ``POST /v1/chat/completions`` with the real response shapes,
Bearer auth like ``vllm serve --api-key``, and OpenAI-style error bodies. Each chat request takes the next
scripted behaviour (``fake.script(Status(500), Answer())``); with nothing scripted it answers by a keyword rule
over the ticket, choosing labels from the enum in the request's ``response_format`` as constrained decoding
would. Every request is recorded so tests can assert what the client sent.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tests.servers import serve_asgi

BASE_MODEL = "openai/gpt-oss-20b"
ADAPTER_MODEL = "triage-adapter"

KEYWORDS: dict[str, tuple[str, ...]] = {
    "billing": ("charged", "invoice", "refund", "factur", "rechnung"),
    "technical_issue": ("buffering", "crash", "error", "freezes"),
    "account_access": ("password", "log in", "login", "locked out"),
    "cancellation": ("cancel", "opzeggen", "kündigen", "résilier"),
    "urgent": ("asap", "immediately", "dringend"),
    "frustrated": ("third time", "again", "annoyed"),
}
"""Label -> words that trigger it, besides the label's own name (underscores read as spaces)."""


@dataclass(frozen=True)
class Answer:
    """Answer by the keyword rule, as ``{"labels": [...]}`` from the request's enum."""


@dataclass(frozen=True)
class Labels:
    """Answer with exactly these labels, even ones outside the enum (a server ignoring the schema)."""

    labels: tuple[str, ...]


@dataclass(frozen=True)
class Content:
    """Answer with this raw ``message.content`` (malformed JSON, wrong shape ...)."""

    text: str | None
    finish_reason: str = "stop"


@dataclass(frozen=True)
class Status:
    """Fail with this HTTP status and an OpenAI-style error body."""

    code: int
    message: str = "scripted failure"


@dataclass(frozen=True)
class Sleep:
    """Sleep (past the client's timeout, usually), then behave as ``then``."""

    seconds: float
    then: Answer | Labels | Content | Status = Answer()


Behaviour = Answer | Labels | Content | Status | Sleep


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


def keyword_labels(ticket: str, enum: list[str]) -> list[str]:
    """The labels of ``enum`` whose name or keywords occur in the ticket, in enum order."""
    lowered = ticket.lower()
    return [
        name
        for name in enum
        if name.replace("_", " ") in lowered or any(word in lowered for word in KEYWORDS.get(name, ()))
    ]


def _error(code: int, message: str, kind: str) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=code)


@dataclass
class FakeOpenAI:
    """The fake's state: served models, optional API key, scripted behaviours, recorded requests."""

    models: tuple[str, ...] = (BASE_MODEL, ADAPTER_MODEL)
    api_key: str | None = None
    requests: list[Recorded] = field(default_factory=list)
    _script: deque[Behaviour] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours for the next chat requests, in order; afterwards the keyword rule answers."""
        with self._lock:
            self._script.extend(behaviours)

    def reset(self, models: tuple[str, ...] = (BASE_MODEL, ADAPTER_MODEL), api_key: str | None = None) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()
            self.models = models
            self.api_key = api_key

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests if r.path.endswith("/chat/completions")]

    def _next(self) -> Behaviour:
        with self._lock:
            return self._script.popleft() if self._script else Answer()

    def _record(self, request: Request, body: Any) -> None:
        with self._lock:
            self.requests.append(Recorded(request.method, request.url.path, dict(request.headers), body))

    def _unauthorized(self, request: Request) -> Response | None:
        if self.api_key is None or request.headers.get("authorization") == f"Bearer {self.api_key}":
            return None
        return JSONResponse({"error": "Unauthorized"}, status_code=401)  # vLLM's --api-key middleware body

    def create_app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/models")
        async def list_models(request: Request) -> Response:
            self._record(request, None)
            if (denied := self._unauthorized(request)) is not None:
                return denied
            created = int(time.time())
            data = [
                {
                    "id": name,
                    "object": "model",
                    "created": created,
                    "owned_by": "vllm",
                    "root": name if name == BASE_MODEL else f"/adapters/{name}",
                    "parent": None if name == BASE_MODEL else BASE_MODEL,
                }
                for name in self.models
            ]
            return JSONResponse({"object": "list", "data": data})

        @app.post("/v1/chat/completions")
        async def chat_completions(request: Request) -> Response:
            try:
                body = await request.json()
            except json.JSONDecodeError:
                self._record(request, None)
                return _error(400, "request body is not valid JSON", "BadRequestError")
            self._record(request, body)
            if (denied := self._unauthorized(request)) is not None:
                return denied
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                return _error(400, "field 'messages' is required", "BadRequestError")
            if body.get("model") not in self.models:
                return _error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
            behaviour = self._next()
            if isinstance(behaviour, Sleep):
                await asyncio.sleep(behaviour.seconds)
                behaviour = behaviour.then
            if isinstance(behaviour, Status):
                return _error(behaviour.code, behaviour.message, "InternalServerError")
            return JSONResponse(_completion(body, behaviour))

        return app


def _completion(body: dict[str, Any], behaviour: Answer | Labels | Content) -> dict[str, Any]:
    finish_reason = "stop"
    if isinstance(behaviour, Content):
        content, finish_reason = behaviour.text, behaviour.finish_reason
    elif isinstance(behaviour, Labels):
        content = json.dumps({"labels": list(behaviour.labels)})
    else:
        try:
            schema = body["response_format"]["json_schema"]["schema"]
            enum = list(schema["properties"]["labels"]["items"]["enum"])
        except (KeyError, TypeError):
            enum = []
        ticket = next((m.get("content", "") for m in reversed(body["messages"]) if m.get("role") == "user"), "")
        content = json.dumps({"labels": keyword_labels(str(ticket), enum)})
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
    completion_tokens = len((content or "").split())
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "tool_calls": []},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


@contextmanager
def serve(fake: FakeOpenAI) -> Iterator[str]:
    """Run the fake on a free loopback port; yields ``http://127.0.0.1:PORT/v1``."""
    with serve_asgi(fake.create_app(), startup_timeout=10) as url:
        yield f"{url}/v1"
