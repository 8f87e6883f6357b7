"""The ``openai`` LLM backend: escalations go to an OpenAI-compatible server (vLLM) as raw completions.

The expected server is vLLM serving the base model with the triage adapter as a LoRA module, e.g.
``vllm serve openai/gpt-oss-20b --enable-lora --lora-modules triage-adapter=checkpoints/prod/adapter`` (checked
against vLLM 0.34.0's source: its gpt-oss model class supports LoRA on attention and experts); the request's
``model`` field (``LLMConfig.remote_model``) names the LoRA module.

The request is ``POST /v1/completions`` with the exact prompt the adapter was trained on, as token ids: the chat
template rendered by the adapter's own tokenizer, ending in gpt-oss's final channel, so the model answers at once
instead of reasoning first (through ``/v1/chat/completions`` gpt-oss spends its token budget in the analysis
channel before any answer). The answer is constrained to the label grammar (``structured_outputs.regex``) and
checked again here: a server that ignores the constraint must not leak labels outside the taxonomy. (vLLM 0.12
removed the older ``guided_regex`` field; a server that does not know ``structured_outputs`` answers unconstrained,
which the check here catches.)
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx

from models.checkpoint import read_manifest
from models.constrained import AnswerGrammar
from models.errors import CheckpointError, ModelError
from models.llm import LLMClassifier, LLMConfig, register_backend
from models.llm_local import PromptEncoder
from models.prompt import NONE_ANSWER, PROMPT_VERSION, SEPARATOR
from models.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

T = TypeVar("T")

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


def answer_regex(taxonomy: Taxonomy) -> str:
    """The answers the adapter was trained to give: ``none``, or label names joined by ``", "``."""
    names = "|".join(re.escape(name) for name in taxonomy.names)
    return f"{re.escape(NONE_ANSWER)}|({names})({re.escape(SEPARATOR)}({names}))*"


def parse_answer_text(text: object, taxonomy: Taxonomy, cut: bool = False) -> list[str]:
    """Labels of an answer text, in taxonomy order. Raises ``ValueError`` saying what is malformed (never echoing
    the text: it may quote the ticket). ``cut``: the answer hit ``max_tokens``; keep its complete labels."""
    if not isinstance(text, str):
        raise ValueError(f"choices[0].text is {type(text).__name__}, expected a string")
    answer = text.strip()
    if answer == NONE_ANSWER:
        return []
    parts = answer.split(SEPARATOR.strip())
    parts = [part.strip() for part in parts]
    if cut and parts and parts[-1] not in taxonomy.names:
        parts = parts[:-1]  # the last label was cut mid-way
    if not parts or not all(parts):
        raise ValueError(f"the answer ({len(answer)} characters) is not '{NONE_ANSWER}' nor label names")
    unknown = sorted(set(parts) - set(taxonomy.names))
    if unknown:
        named = [name for name in unknown if re.fullmatch(r"[a-z][a-z0-9_]{0,39}", name)]  # no free text in logs
        raise ValueError(
            f"answer has {len(unknown)} name(s) outside the taxonomy {taxonomy.name!r}"
            + (f": {', '.join(named)}" if named else "")
        )
    duplicates = sorted({x for x in parts if parts.count(x) > 1})
    if duplicates:
        raise ValueError(f"answer repeats label(s) {', '.join(duplicates)}")
    return [name for name in taxonomy.names if name in set(parts)]


class OpenAIClassifier:
    """``LLMClassifier`` over HTTP: one ``POST /completions`` per ticket, retried within ``max_retries``.

    The taxonomy, the prompt version and the tokenizer come from the adapter folder at ``config.adapter_path``
    (the folder vLLM serves as a LoRA module, or the one ``export-merged`` wrote) when ``load()`` runs: the prompt
    is built exactly as in training and sent as token ids. Thread-safe once loaded.
    """

    def __init__(self, config: LLMConfig) -> None:
        self.config = config
        self.taxonomy: Taxonomy | None = None
        self.labels: list[str] = []
        self.last_error: str | None = None
        self._client: httpx.Client | None = None
        self._prompts: PromptEncoder | None = None
        self._regex = ""
        self._stop_ids: list[int] = []
        self._max_tokens = config.max_new_tokens

    # -- seam ------------------------------------------------------------------------------------------------

    def load(self) -> None:
        """Read the adapter folder, open the HTTP client and check the server serves ``remote_model``."""
        self.taxonomy, self._prompts, grammar = self._from_adapter()
        self.labels = self.taxonomy.names
        self._regex = answer_regex(self.taxonomy)
        self._max_tokens = min(self.config.max_new_tokens, grammar.max_answer_tokens + 1)  # + end of answer
        self._stop_ids = [grammar.eos_id]  # <|return|> for gpt-oss: the end of a final-channel answer
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
            "api": "completions",
            "labels": len(self.labels),
            "last_error": self.last_error,
        }

    def unload(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- internals -------------------------------------------------------------------------------------------

    def _from_adapter(self) -> tuple[Taxonomy, PromptEncoder, AnswerGrammar]:
        from transformers import AutoTokenizer

        path = self.config.adapter_path
        try:
            manifest = read_manifest(path, kind="adapter")
            version = manifest.extra.get("prompt_version")
            if version is not None and str(version) != PROMPT_VERSION:
                raise CheckpointError(
                    f"{path} was trained on prompt version {version}, this triage builds prompt version "
                    f"{PROMPT_VERSION}; retrain the adapter"
                )
            tokenizer = AutoTokenizer.from_pretrained(str(path))
        except (CheckpointError, OSError, ValueError) as exc:
            raise CheckpointError(
                f"the openai LLM backend builds the adapter's own prompt from the adapter folder at {path} "
                f"(manifest, tokenizer), but: {exc}. Copy the adapter folder that vLLM serves to {path}, or point "
                "the adapter path at it"
            ) from exc
        taxonomy = Taxonomy.from_dict(manifest.taxonomy)
        return (
            taxonomy,
            PromptEncoder(tokenizer, taxonomy, self.config.max_input_tokens),
            AnswerGrammar.from_tokenizer(tokenizer, taxonomy),
        )

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

    def request_body(self, text: str) -> dict[str, Any]:
        """The ``/completions`` request for one ticket: the trained prompt as token ids, the label grammar."""
        if self._prompts is None:
            raise RemoteLLMError(f"the openai LLM backend for {self.config.endpoint} is not loaded; call load() first")
        prompt = self._prompts.prefix_ids + self._prompts.ticket_ids([text])[0]
        return {
            "model": self.config.remote_model,
            "prompt": prompt,
            "max_tokens": self._max_tokens,
            "temperature": 0,
            "stop_token_ids": list(self._stop_ids),
            "structured_outputs": {"regex": self._regex},
        }

    def _classify_one(self, text: str, deadline: float | None) -> list[str]:
        client, taxonomy = self._client, self.taxonomy
        if client is None or taxonomy is None:
            raise RemoteLLMError(f"the openai LLM backend for {self.config.endpoint} is not loaded; call load() first")
        body = self.request_body(text)

        def attempt(timeout_s: float) -> list[str]:
            return self._read_answer(self._send(client, "POST", "/completions", body, timeout_s), taxonomy)

        return self._with_retries("POST /completions", attempt, deadline)

    def _read_answer(self, data: Any, taxonomy: Taxonomy) -> list[str]:
        try:
            choice = data["choices"][0]
            text = choice["text"]
        except (KeyError, IndexError, TypeError) as exc:
            raise _Transient(
                f"POST /completions returned no choices[0].text (missing {exc})",
                "check that the endpoint speaks the OpenAI Completions protocol",
            ) from None
        cut = choice.get("finish_reason") == "length"
        try:
            labels = parse_answer_text(text, taxonomy, cut=cut)
        except ValueError as exc:
            if cut:  # at temperature 0 a retry would be cut at the same place: fail now, with the fix
                raise self._fail(
                    f"answer cut at max_tokens={self._max_tokens} (finish_reason 'length') with no complete label",
                    "raise TRIAGE_LLM_MAX_NEW_TOKENS, and check that the served model is the triage adapter "
                    "(a model that reasons before answering spends the budget first)",
                ) from None
            raise _Transient(
                f"malformed answer to POST /completions: {exc}",
                f"check that the server honours structured_outputs (vLLM 0.10.2+) and that model "
                f"{self.config.remote_model!r} is the triage adapter",
            ) from None
        if cut:
            logger.info("an LLM answer hit max_tokens=%d and was cut to its complete labels", self._max_tokens)
        return labels


def _excerpt(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return (text[:_BODY_EXCERPT] + "...") if len(text) > _BODY_EXCERPT else (text or "(empty body)")


@register_backend("openai")
def create_openai_classifier(config: LLMConfig) -> LLMClassifier:
    """Registry factory: the taxonomy and tokenizer are read from the adapter folder at ``load()``."""
    return OpenAIClassifier(config)
