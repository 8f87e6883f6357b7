"""The escalation tier's lifecycle: lazy loading, one shared load, its own batcher, idle unload.

The LLM is not loaded at start-up (unless preloading is asked for). The first escalation starts one load in the
background; concurrent escalations wait on that same load, each up to its own timeout. After a failed load, the
next escalation retries once ``retry_after_s`` has passed. With ``idle_unload_s`` set, an LLM unused for that
long is unloaded to free GPU memory, and the next escalation loads it again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.server.batcher import BatcherClosed, BatcherError, BatchPolicy, DynamicBatcher, QueueFull
from app.server.failures import CircuitBreaker
from app.server.metrics import Metrics
from app.server.settings import Settings
from models.checkpoint import read_manifest
from models.llm import LLMClassifier, LLMConfig, create_llm

if TYPE_CHECKING:
    from models.memory_plan import ServingShape

logger = logging.getLogger(__name__)


def llm_config(settings: Settings, adapter_path: Path | None = None) -> LLMConfig:
    """The LLM backend's configuration from the one settings object (``adapter_path`` overrides the setting)."""
    return LLMConfig(
        adapter_path=settings.adapter_path() if adapter_path is None else adapter_path,
        base_model=settings.llm_base_model,
        quantization=settings.llm_quantization,
        device=settings.device,
        max_new_tokens=settings.llm_max_new_tokens,
        endpoint=settings.llm_endpoint,
        api_key=settings.llm_api_key,
        remote_model=settings.llm_remote_model,
        timeout_s=settings.llm_timeout_s,
    )


def serving_shape(settings: Settings) -> ServingShape:
    """What the server holds at once on its GPU, for the memory plan (``models.memory_plan``)."""
    from models.memory_plan import ServingShape

    return ServingShape(
        encoder_max_batch_tokens=settings.max_batch_tokens,
        llm_batch=settings.llm_max_batch_size,
        llm_input_tokens=LLMConfig().max_input_tokens,
        llm_new_tokens=settings.llm_max_new_tokens,
    )


def build_llm(settings: Settings, adapter_path: Path | None = None) -> LLMClassifier:
    """The one way every command (serve, evaluate, calibrate-router) builds the LLM tier: same backend, same
    quantisation, same limits. Not loaded yet: call ``load()`` (off the event loop)."""
    if settings.llm_backend == "none":
        raise ValueError("no LLM tier is configured (llm_backend none)")
    return create_llm(settings.llm_backend, llm_config(settings, adapter_path))


class BreakerOpen(BatcherError):
    """The LLM tier refused the call without sending it: its backend kept failing (see ``CircuitBreaker``)."""


class LazyLLM:
    """Owns one ``LLMClassifier`` and the batcher in front of it."""

    def __init__(
        self,
        factory: Callable[[], LLMClassifier],
        policy: BatchPolicy,
        metrics: Metrics,
        idle_unload_s: float = 0.0,
        retry_after_s: float = 60.0,
        adapter_path: Path | None = None,
        breaker_failures: int = 5,
        breaker_open_s: float = 30.0,
    ) -> None:
        self._factory = factory
        self.breaker = CircuitBreaker(breaker_failures, breaker_open_s, logger, "LLM tier")
        self.adapter_version = _adapter_version(adapter_path)
        """The paired adapter's version, read at start-up (None: no adapter there, or a remote tier)."""
        self._policy = policy
        self._metrics = metrics
        self.idle_unload_s = idle_unload_s
        self.retry_after_s = retry_after_s
        self.state = "unloaded"  # unloaded | loading | loaded | failed
        self.error: str | None = None
        self.loads = 0
        self.load_seconds: float | None = None
        self.llm: LLMClassifier | None = None
        self.batcher: DynamicBatcher[Escalation, list[str]] | None = None
        self._load_task: asyncio.Task[None] | None = None
        self._failed_at = 0.0
        self._last_used = time.monotonic()
        self._idle_task: asyncio.Task[None] | None = None

    async def start(self, preload: bool) -> None:
        if preload:
            self.start_loading()
        if self.idle_unload_s > 0:
            self._idle_task = asyncio.create_task(self._unload_when_idle(), name="llm-idle-unload")

    def start_loading(self) -> asyncio.Task[None] | None:
        """Start the one shared load if none is running or done; return the task to wait on (None if loaded)."""
        if self.state == "loaded":
            return None
        if self.state == "failed" and time.monotonic() - self._failed_at < self.retry_after_s:
            return None
        if self._load_task is None or self._load_task.done():
            self.state = "loading"
            self._load_task = asyncio.create_task(self._load(), name="llm-load")
        return self._load_task

    async def _load(self) -> None:
        start = time.perf_counter()
        try:
            llm = self._factory()
            await asyncio.to_thread(llm.load)
            await asyncio.to_thread(llm.warmup)
        except Exception as exc:  # reported as status 'unavailable' per ticket and in /info; serving goes on
            self.state, self.error, self._failed_at = "failed", f"{type(exc).__name__}: {exc}", time.monotonic()
            logger.error("LLM tier failed to load: %s", self.error)
            return
        batcher: DynamicBatcher[Escalation, list[str]] = DynamicBatcher(
            _deadline_aware(llm), self._policy, cost=_cost, observer=self._metrics.observer("llm"), name="llm"
        )
        await batcher.start()
        self.llm, self.batcher = llm, batcher
        self.load_seconds = time.perf_counter() - start
        self.loads += 1
        self.state, self.error = "loaded", None
        self._last_used = time.monotonic()
        self._metrics.llm_loaded.set(1)
        self._metrics.llm_load_seconds.set(self.load_seconds)
        logger.info("LLM tier loaded in %.1fs: %s", self.load_seconds, llm.health())

    async def ensure_loaded(self, timeout: float) -> bool:
        """Start or join the load and wait up to ``timeout`` seconds; True if the LLM is ready."""
        task = self.start_loading()
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except TimeoutError:
                return False
        return self.state == "loaded"

    async def classify(self, texts: Sequence[str], deadline: float) -> list[list[str]]:
        """Labels per text through the LLM batcher by ``deadline`` (``time.monotonic()``), or the batcher's errors.

        The deadline travels with each ticket to the backend, which stops (generation, remote retries) once the
        latest deadline of its batch has passed; tickets still queued at their deadline are dropped unanswered.
        """
        if self.batcher is None:
            raise RuntimeError("LLM tier is not loaded")
        allowed = self.breaker.allow()
        self._breaker_gauge()
        if not allowed:  # a backend that keeps failing is not called until the breaker's trial
            raise BreakerOpen(f"the LLM tier's circuit breaker is open ({self.breaker.failures} failures in a row)")
        self._last_used = time.monotonic()
        try:
            items = [Escalation(text, deadline) for text in texts]
            answers = await self.batcher.submit(items, max(0.0, deadline - time.monotonic()))
        except (QueueFull, BatcherClosed):  # this tier's own load or shutdown, not the backend's failure
            raise
        except Exception:  # the backend failed or missed the deadline
            self.breaker.record(False)
            self._breaker_gauge()
            raise
        finally:
            self._last_used = time.monotonic()
        self.breaker.record(True)
        self._breaker_gauge()
        return answers

    def _breaker_gauge(self) -> None:
        self._metrics.llm_breaker_open.set(0 if self.breaker.state == "closed" else 1)

    async def unload(self) -> None:
        batcher, llm = self.batcher, self.llm
        self.batcher, self.llm = None, None
        if self.state == "loaded":
            self.state = "unloaded"
        if batcher is not None:
            await batcher.stop()
        if llm is not None:
            await asyncio.to_thread(llm.unload)
        self._metrics.llm_loaded.set(0)

    async def _unload_when_idle(self) -> None:
        while True:
            await asyncio.sleep(max(0.05, min(self.idle_unload_s / 4, 5.0)))
            idle = time.monotonic() - self._last_used
            busy = self.batcher is not None and self.batcher.depth > 0
            if self.state == "loaded" and not busy and idle >= self.idle_unload_s:
                logger.info("LLM tier idle for %.0fs: unloading", idle)
                await self.unload()

    async def stop(self) -> None:
        for task in (self._idle_task, self._load_task):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.unload()

    def info(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "error": self.error,
            "loads": self.loads,
            "load_seconds": None if self.load_seconds is None else round(self.load_seconds, 2),
            "idle_unload_s": self.idle_unload_s,
            "breaker": {"state": self.breaker.state, "failures": self.breaker.failures, "opened": self.breaker.opened},
            "adapter_version": self.adapter_version,
            "model": self.llm.health() if self.llm is not None else None,
        }


@dataclass(frozen=True)
class Escalation:
    """One ticket queued for the LLM and the ``time.monotonic()`` by which its caller needs the answer."""

    text: str
    deadline: float


def _deadline_aware(llm: LLMClassifier) -> Callable[[list[Escalation]], list[list[str]]]:
    """The batcher's predict function: one backend call for the batch, bounded by its latest deadline."""

    def predict(batch: list[Escalation]) -> list[list[str]]:
        return llm.classify_batch([e.text for e in batch], deadline=max(e.deadline for e in batch))

    return predict


def _cost(item: Escalation) -> int:
    """Rough token count for the LLM batcher's padded-token budget (about 4 characters per token)."""
    return len(item.text) // 4 + 1


def _adapter_version(path: Path | None) -> str | None:
    if path is None or not (path / "triage_manifest.json").exists():
        return None
    return read_manifest(path, kind="adapter").version
