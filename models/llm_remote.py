"""The ``openai`` LLM backend: escalations go to an OpenAI-compatible Chat Completions server.

The expected server is vLLM serving the base model with the triage adapter as a LoRA module, e.g.
``vllm serve openai/gpt-oss-20b --enable-lora --lora-modules triage-adapter=checkpoints/default/adapter``;
the request's ``model`` field (``LLMConfig.remote_model``) names the LoRA module. Answers are constrained with a
JSON schema (``response_format``) whose enum is the taxonomy, and checked again here: a server that ignores the
schema must not leak labels outside the taxonomy.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx

from models.checkpoint import read_manifest
from models.errors import CheckpointError, ModelError
from models.llm import LLMClassifier, LLMConfig, register_backend
from models.prompt import build_messages
from models.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA_NAME = "ticket_labels"
MAX_CONCURRENT_REQUESTS = 8
"""Requests in flight per batch; vLLM batches them on the GPU, so a few in parallel cut latency."""
BACKOFF_BASE_S = 0.1
BACKOFF_MAX_S = 2.0
WARMUP_TEXT = "Hello, I have a question about my account."
_BODY_EXCERPT = 300


class RemoteLLMError(ModelError):
    """The remote LLM server is unreachable, refused a request, or answered something unusable."""


class _Transient(Exception):
    """A failure worth retrying (connection, timeout, 429/5xx, malformed answer); carries the message to raise."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def labels_schema(taxonomy: Taxonomy) -> dict[str, Any]:
    """The JSON schema every answer must match: ``{"labels": [...]}`` with names from the taxonomy, no repeats."""
    return {
        "type": "object",
        "properties": {
            "labels": {"type": "array", "items": {"type": "string", "enum": taxonomy.names}, "uniqueItems": True},
        },
        "required": ["labels"],
        "additionalProperties": False,
    }


def response_format(taxonomy: Taxonomy) -> dict[str, Any]:
    """The Chat Completions ``response_format`` that asks the server to decode under ``labels_schema``."""
    return {
        "type": "json_schema",
        "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": labels_schema(taxonomy)},
    }


def parse_labels(content: object, taxonomy: Taxonomy) -> list[str]:
    """Check an answer's ``message.content`` against ``labels_schema``; labels come back in taxonomy order.

    Raises ``ValueError`` saying what was malformed (never echoing the content: it may quote the ticket).
    """
    if not isinstance(content, str):
        raise ValueError(f"message.content is {type(content).__name__}, expected a JSON string")
    try:
        data = json.loads(content)
    except json.JSONDecodeError as exc:
        raise ValueError(f"message.content is not JSON ({exc.msg} at char {exc.pos} of {len(content)})") from None
    if not isinstance(data, dict):
        raise ValueError(f"answer is a JSON {type(data).__name__}, expected an object with key 'labels'")
    if set(data) != {"labels"}:
        raise ValueError(f"answer has keys {sorted(data)}, expected exactly ['labels']")
    labels = data["labels"]
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ValueError("answer 'labels' is not a list of strings")
    unknown = sorted(set(labels) - set(taxonomy.names))
    if unknown:
        raise ValueError(f"answer has label(s) outside the taxonomy {taxonomy.name!r}: {', '.join(unknown)}")
    duplicates = sorted({x for x in labels if labels.count(x) > 1})
    if duplicates:
        raise ValueError(f"answer repeats label(s) {', '.join(duplicates)}")
    return [name for name in taxonomy.names if name in set(labels)]


class OpenAIClassifier:
    """``LLMClassifier`` over HTTP: one ``POST /chat/completions`` per ticket, retried within ``max_retries``.

    The taxonomy comes from the constructor or, when none is given, from the adapter manifest at
    ``config.adapter_path`` (the same folder the server loads as a LoRA module) when ``load()`` runs.
    Thread-safe once loaded: ``classify_batch`` may be called from several worker threads.
    """

    def __init__(self, config: LLMConfig, taxonomy: Taxonomy | None = None) -> None:
        self.config = config
        self.taxonomy = taxonomy
        self.labels: list[str] = taxonomy.names if taxonomy is not None else []
        self.last_error: str | None = None
        self._client: httpx.Client | None = None
        self._response_format: dict[str, Any] | None = response_format(taxonomy) if taxonomy is not None else None

    # -- seam ------------------------------------------------------------------------------------------------

    def load(self) -> None:
        """Read the taxonomy if needed, open the HTTP client and check the server serves ``remote_model``."""
        if self.taxonomy is None:
            self.taxonomy = self._taxonomy_from_adapter()
            self.labels = self.taxonomy.names
            self._response_format = response_format(self.taxonomy)
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        client = httpx.Client(base_url=self.config.endpoint, timeout=self.config.timeout_s, headers=headers)
        self._client = client
        try:
            served = self._with_retries("GET /models", lambda timeout_s: self._list_models(client, timeout_s))
            if self.config.remote_model not in served:
                raise self._fail(
                    f"no served model {self.config.remote_model!r} (found: {', '.join(served) or 'none'})",
                    "set the remote model to one of those, or start vLLM with "
                    f"--enable-lora --lora-modules {self.config.remote_model}=<adapter folder>",
                )
        except BaseException:
            client.close()
            self._client = None
            raise
        logger.info(
            "remote LLM ready: endpoint=%s model=%s labels=%d",
            self.config.endpoint,
            self.config.remote_model,
            len(self.labels),
        )

    def warmup(self) -> None:
        """One tiny classification, end to end (prompt, constrained decoding, validation)."""
        self._classify_one(WARMUP_TEXT, None)

    def classify_batch(self, texts: Sequence[str], deadline: float | None = None) -> list[list[str]]:
        """Labels per ticket, in input order. Raises ``RemoteLLMError`` if any ticket fails after retries.

        With a ``deadline`` (``time.monotonic()``), no attempt starts after it, each request's timeout is cut to
        what is left of it, and no back-off sleeps past it: the worker is never held after the caller gave up.
        """
        if not texts:
            return []
        if len(texts) == 1:
            return [self._classify_one(texts[0], deadline)]
        with ThreadPoolExecutor(max_workers=min(len(texts), MAX_CONCURRENT_REQUESTS)) as pool:
            futures = [pool.submit(self._classify_one, text, deadline) for text in texts]
            try:
                return [future.result() for future in futures]
            except BaseException:
                for future in futures:
                    future.cancel()
                raise

    def health(self) -> dict[str, Any]:
        return {
            "backend": "openai",
            "endpoint": self.config.endpoint,
            "model": self.config.remote_model,
            "loaded": self._client is not None,
            "labels": len(self.labels),
            "last_error": self.last_error,
        }

    def unload(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- internals -------------------------------------------------------------------------------------------

    def _taxonomy_from_adapter(self) -> Taxonomy:
        path = self.config.adapter_path
        try:
            manifest = read_manifest(path, kind="adapter")
        except CheckpointError as exc:
            raise CheckpointError(
                f"the openai LLM backend reads the label taxonomy from the adapter manifest at {path}, "
                f"but: {exc}. Copy the adapter folder that vLLM serves to {path} (or point the adapter path at "
                "it), or construct OpenAIClassifier with an explicit taxonomy"
            ) from exc
        return Taxonomy.from_dict(manifest.taxonomy)

    def _fail(self, what: str, fix: str) -> RemoteLLMError:
        message = f"LLM endpoint {self.config.endpoint}: {what}; {fix}"
        self.last_error = message
        return RemoteLLMError(message)

    def _with_retries(self, what: str, attempt: Callable[[float], T], deadline: float | None = None) -> T:
        """Run ``attempt(timeout_s)`` until it succeeds, ``max_retries`` are spent or ``deadline`` has passed."""
        attempts = self.config.max_retries + 1
        for number in range(1, attempts + 1):
            left = math.inf if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise self._fail(
                    f"{what}: the caller's deadline passed after {number - 1} attempt(s)",
                    "raise the request timeout, or check the server's load",
                )
            try:
                return attempt(min(self.config.timeout_s, left))
            except _Transient as exc:
                if number == attempts:
                    raise self._fail(f"{exc.message} (gave up after {attempts} attempt(s))", exc.hint) from None
                delay = min(BACKOFF_BASE_S * 2 ** (number - 1), BACKOFF_MAX_S)
                if deadline is not None:
                    delay = max(0.0, min(delay, deadline - time.monotonic()))
                logger.warning(
                    "%s to %s failed (attempt %d/%d): %s; retrying in %.2fs",
                    what,
                    self.config.endpoint,
                    number,
                    attempts,
                    exc.message,
                    delay,
                )
                time.sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _send(
        self,
        client: httpx.Client,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """One HTTP exchange; returns the decoded JSON body or raises ``_Transient`` / ``RemoteLLMError``."""
        request = f"{method} {path}"
        timeout_s = self.config.timeout_s if timeout_s is None else timeout_s
        try:
            response = client.request(method, path, json=body, timeout=timeout_s)
        except httpx.TimeoutException as exc:
            raise _Transient(
                f"{request} timed out after {timeout_s:.3g}s ({type(exc).__name__})",
                "check the server's load and GPU, or raise the LLM timeout",
            ) from None
        except httpx.TransportError as exc:
            raise _Transient(
                f"{request} could not connect ({type(exc).__name__}: {exc})",
                "check that the vLLM server is running and that the endpoint URL (ending in /v1) is right",
            ) from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Transient(
                f"{request} returned HTTP {status}: {_excerpt(response)}",
                "check the vLLM server logs (overloaded or crashed?)",
            )
        if status >= 400:
            if status in (401, 403):
                fix = "check the LLM api key matches the server's --api-key"
            elif status == 404:
                fix = "check the endpoint URL ends in /v1 and the remote model names a served LoRA module"
            else:
                fix = "check the request against the server's error above (context length, response_format support)"
            raise self._fail(f"{request} was rejected with HTTP {status}: {_excerpt(response)}", fix)
        try:
            return response.json()
        except ValueError:
            raise _Transient(
                f"{request} returned HTTP {status} with a body that is not JSON: {_excerpt(response)}",
                "check that the endpoint is an OpenAI-compatible server (vLLM), not a proxy or web page",
            ) from None

    def _list_models(self, client: httpx.Client, timeout_s: float) -> list[str]:
        data = self._send(client, "GET", "/models", timeout_s=timeout_s)
        try:
            return [str(item["id"]) for item in data["data"]]
        except (KeyError, TypeError) as exc:
            raise self._fail(
                f"GET /models returned no list of models (missing {exc})",
                "check that the endpoint is an OpenAI-compatible server and ends in /v1",
            ) from None

    def _classify_one(self, text: str, deadline: float | None) -> list[str]:
        client, taxonomy = self._client, self.taxonomy
        if client is None or taxonomy is None:
            raise RemoteLLMError(f"the openai LLM backend for {self.config.endpoint} is not loaded; call load() first")
        body = {
            "model": self.config.remote_model,
            "messages": build_messages(text, taxonomy),
            "temperature": 0,
            "max_tokens": self.config.max_new_tokens,
            "response_format": self._response_format,
        }

        def attempt(timeout_s: float) -> list[str]:
            return self._read_answer(self._send(client, "POST", "/chat/completions", body, timeout_s), taxonomy)

        return self._with_retries("POST /chat/completions", attempt, deadline)

    def _read_answer(self, data: Any, taxonomy: Taxonomy) -> list[str]:
        try:
            choice = data["choices"][0]
            content = choice["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise _Transient(
                f"POST /chat/completions returned no choices[0].message.content (missing {exc})",
                "check that the endpoint speaks the OpenAI Chat Completions protocol",
            ) from None
        if choice.get("finish_reason") == "length":
            # At temperature 0 a retry would be cut at the same place: fail now, with the fix.
            raise self._fail(
                f"answer cut at max_tokens={self.config.max_new_tokens} (finish_reason 'length')",
                "raise max_new_tokens (a reasoning model spends tokens before answering)",
            )
        try:
            return parse_labels(content, taxonomy)
        except ValueError as exc:
            raise _Transient(
                f"malformed answer to POST /chat/completions: {exc}",
                f"check that the server honours response_format json_schema (vLLM structured outputs) and that "
                f"model {self.config.remote_model!r} is the triage adapter",
            ) from None


def _excerpt(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return (text[:_BODY_EXCERPT] + "...") if len(text) > _BODY_EXCERPT else (text or "(empty body)")


@register_backend("openai")
def create_openai_classifier(config: LLMConfig) -> LLMClassifier:
    """Registry factory: the taxonomy is read from the adapter manifest at ``load()``."""
    return OpenAIClassifier(config)
