"""A scriptable fake of vLLM serving gpt-oss (the parts of its OpenAI-compatible API the ``openai`` backend uses).

It speaks the real protocol: ``GET /v1/models``, ``POST /v1/completions`` (a prompt as text or token ids,
``structured_outputs.regex``) and ``POST /v1/chat/completions``, with the real response shapes, Bearer auth like
``vllm serve --api-key``, and OpenAI-style error bodies. And it behaves like gpt-oss: through the chat template, or
with a raw prompt that stops at ``<|start|>assistant``, the model reasons in the analysis channel before it
answers, and that reasoning counts against ``max_tokens`` (``finish_reason: "length"`` with no answer when it runs
out). Only a prompt that ends in the final channel, as the adapter was trained, gets the answer at once.

Each request takes the next scripted behaviour (``fake.script(Status(500), Answer())``); with nothing scripted it
answers by a keyword rule over the ticket, choosing labels from those the request allows (the regex alternatives,
or the JSON schema's enum), as constrained decoding would. Every request is recorded. ``fake.hanging = True`` makes
the server hang like a wedged GPU: it accepts and records every (chat) completion request and answers none until
the flag is cleared (then each goes on as it would have).
"""

from __future__ import annotations

import asyncio
import json
import re
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
FINAL_CHANNEL = "<|channel|>final<|message|>"
ASSISTANT_START = "<|start|>assistant"
REASONING = (
    "We need to classify this support ticket. The user writes about their account and the service. Let us check "
    "each label group in turn: the topic first, then the urgency, the kind of user, and the emotion expressed. "
    "The system prompt lists the labels with descriptions; we must only use those names and answer briefly. "
) * 2
"""What gpt-oss writes in its analysis channel before a final answer (about 100 tokens)."""

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
    tokenizer: Any = None
    """The served model's tokenizer, to read prompts sent as token ids (vLLM has it too)."""
    requests: list[Recorded] = field(default_factory=list)
    hanging: bool = False
    """While set, (chat) completion requests are accepted and recorded but not answered (a hung backend)."""
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
            self.hanging = False

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests if r.path.endswith("/chat/completions")]

    @property
    def completion_requests(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests if r.path == "/v1/completions"]

    def prompt_text(self, prompt: Any) -> str:
        """A completions prompt as text: token ids are decoded with the served tokenizer, specials kept."""
        if isinstance(prompt, str):
            return prompt
        if self.tokenizer is None:
            raise ValueError("this fake was started without a tokenizer and cannot read token ids")
        return str(self.tokenizer.decode(list(prompt), skip_special_tokens=False))

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

    async def _intake(
        self, request: Request, field: str, types: tuple[type, ...]
    ) -> tuple[dict[str, Any], Response | None]:
        """Parse, record and check a POST the way vLLM does: JSON, auth, the required field, a served model."""
        try:
            body = await request.json()
        except json.JSONDecodeError:
            self._record(request, None)
            return {}, _error(400, "request body is not valid JSON", "BadRequestError")
        self._record(request, body)
        if (denied := self._unauthorized(request)) is not None:
            return {}, denied
        if not isinstance(body, dict) or not isinstance(body.get(field), types):
            return {}, _error(400, f"field '{field}' is required", "BadRequestError")
        if body.get("model") not in self.models:
            return {}, _error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
        return body, None

    async def _behave(self) -> Answer | Labels | Content | Status:
        """The next scripted behaviour, after its sleep if it has one (and after a hang, while ``hanging``)."""
        while self.hanging:
            await asyncio.sleep(0.02)
        behaviour = self._next()
        if isinstance(behaviour, Sleep):
            await asyncio.sleep(behaviour.seconds)
            behaviour = behaviour.then
        return behaviour

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
            body, refusal = await self._intake(request, "messages", (list,))
            if refusal is not None:
                return refusal
            behaviour = await self._behave()
            if isinstance(behaviour, Status):
                return _error(behaviour.code, behaviour.message, "InternalServerError")
            return JSONResponse(_chat_completion(body, behaviour))

        @app.post("/v1/completions")
        async def completions(request: Request) -> Response:
            body, refusal = await self._intake(request, "prompt", (str, list))
            if refusal is not None:
                return refusal
            try:
                prompt = self.prompt_text(body["prompt"])
            except (ValueError, TypeError) as exc:
                return _error(400, str(exc), "BadRequestError")
            behaviour = await self._behave()
            if isinstance(behaviour, Status):
                return _error(behaviour.code, behaviour.message, "InternalServerError")
            return JSONResponse(_text_completion(body, prompt, behaviour))

        return app


def _tokens(text: str | None) -> int:
    """A stand-in token count: about one token per word piece."""
    return len((text or "").replace(",", " ,").split())


def _regex_labels(body: dict[str, Any]) -> list[str] | None:
    """The label names a ``structured_outputs.regex`` of the shape ``none|(a|b)(, (a|b))*`` allows."""
    regex = (body.get("structured_outputs") or {}).get("regex")
    if not isinstance(regex, str):
        return None
    found = re.search(r"\(([^()]*)\)", regex)
    return [re.sub(r"\\(.)", r"\1", name) for name in found.group(1).split("|")] if found else []


def _ticket_of(prompt: str) -> str:
    start = prompt.rfind("Ticket:")
    end = prompt.find("<|end|>", start)
    return prompt[start : end if end >= 0 else None] if start >= 0 else prompt


def _reason_then(answer: str, max_tokens: int) -> tuple[str | None, str, str]:
    """gpt-oss's order: reasoning, then the answer, both within ``max_tokens``: (answer, reasoning, finish)."""
    budget = max_tokens - _tokens(REASONING)
    if budget < _tokens(answer) + 1:
        words = REASONING.split()[: max(0, max_tokens)]
        return None, " ".join(words), "length"
    return answer, REASONING, "stop"


def _text_completion(body: dict[str, Any], prompt: str, behaviour: Answer | Labels | Content) -> dict[str, Any]:
    finish_reason = "stop"
    if isinstance(behaviour, Content):
        text, finish_reason = behaviour.text or "", behaviour.finish_reason
    elif isinstance(behaviour, Labels):
        text = ", ".join(behaviour.labels)
    else:
        allowed = _regex_labels(body)
        labels = keyword_labels(_ticket_of(prompt), allowed if allowed is not None else list(KEYWORDS))
        text = ", ".join(labels) or "none"
        if not prompt.endswith(FINAL_CHANNEL):  # e.g. ends at <|start|>assistant: the analysis channel comes first
            answer, reasoning, finish_reason = _reason_then(text, int(body.get("max_tokens") or 16))
            text = f"<|channel|>analysis<|message|>{reasoning}" + (
                f"<|end|><|start|>assistant{FINAL_CHANNEL}{answer}" if answer is not None else ""
            )
        elif _tokens(text) > int(body.get("max_tokens") or 16):
            text, finish_reason = " ".join(text.split()[: int(body.get("max_tokens") or 16)]), "length"
    prompt_tokens = len(body["prompt"]) if isinstance(body["prompt"], list) else _tokens(prompt)
    return {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason, "stop_reason": None}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": _tokens(text),
            "total_tokens": prompt_tokens + _tokens(text),
        },
    }


def _chat_completion(body: dict[str, Any], behaviour: Answer | Labels | Content) -> dict[str, Any]:
    """gpt-oss through the chat template: it reasons first (``message.reasoning``), and that spends ``max_tokens``."""
    finish_reason, reasoning = "stop", None
    if isinstance(behaviour, Content):
        content, finish_reason = behaviour.text, behaviour.finish_reason
    elif isinstance(behaviour, Labels):
        content = json.dumps({"labels": list(behaviour.labels)})
    else:
        try:
            schema = body["response_format"]["json_schema"]["schema"]
            enum = list(schema["properties"]["labels"]["items"]["enum"])
        except (KeyError, TypeError):
            enum = list(KEYWORDS)
        ticket = next((m.get("content", "") for m in reversed(body["messages"]) if m.get("role") == "user"), "")
        answer = json.dumps({"labels": keyword_labels(str(ticket), enum)})
        content, reasoning, finish_reason = _reason_then(answer, int(body.get("max_tokens") or 4096))
    prompt_tokens = sum(_tokens(str(m.get("content", ""))) for m in body["messages"])
    completion_tokens = _tokens(content) + _tokens(reasoning)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "reasoning": reasoning, "tool_calls": []},
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
