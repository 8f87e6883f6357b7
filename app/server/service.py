"""The classification service: tokenise, batch, predict, decide. HTTP-free; called by the routes.

It owns the encoder tier's batcher and turns batcher and model failures into API errors at this boundary.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from app.server import errors
from app.server.batcher import BatcherClosed, BatchPolicy, DynamicBatcher, QueueFull
from app.server.batcher import DeadlineExceeded as BatchDeadline
from app.server.llm_tier import BreakerOpen, LazyLLM
from app.server.metrics import Metrics
from app.server.settings import Settings
from models.errors import ModelError
from models.language import LanguageDetector
from models.taxonomy import Taxonomy
from router.decision import Decision
from router.escalation import EscalationBudget, EscalationMode, EscalationStatus
from router.pipeline import HybridPipeline, resolve_merge_policy, resolve_threshold

logger = logging.getLogger(__name__)

Row = NDArray[np.float32]


class EncoderTier(Protocol):
    """What the service needs from an encoder (``models.encoder.EncoderClassifier`` implements it)."""

    labels: list[str]
    thresholds: list[float]
    taxonomy: Taxonomy

    @property
    def version(self) -> str: ...

    def encode(self, texts: Sequence[str]) -> list[list[int]]: ...

    def predict_ids(self, batch: Sequence[Sequence[int]]) -> NDArray[np.float32]: ...

    def health(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class TicketInput:
    text: str
    id: str | None = None
    language: str | None = None


@dataclass(frozen=True)
class TicketOutcome:
    id: str
    language: str
    decision: Decision


def batch_policy(settings: Settings, batch_overhead: float) -> BatchPolicy:
    return BatchPolicy(
        max_batch_size=settings.max_batch_size,
        max_batch_tokens=settings.max_batch_tokens,
        max_wait_s=settings.max_wait_ms / 1000.0,
        max_queue=settings.max_queue,
        batching=settings.batching,
        batch_overhead=batch_overhead,
        max_queue_wait_s=settings.max_queue_wait_s or None,
    )


def llm_batch_policy(settings: Settings) -> BatchPolicy:
    """Smaller batches and a longer wait than the encoder's: generation is slow and escalations are sparse.

    The overhead is high because every decoding step costs a forward pass whatever the prompts: fill batches.
    """
    return BatchPolicy(
        max_batch_size=settings.llm_max_batch_size,
        max_batch_tokens=settings.llm_max_batch_size * 2048,
        batch_overhead=2048.0,
        max_wait_s=settings.llm_max_wait_ms / 1000.0,
        max_queue=max(settings.escalation_max_in_flight, settings.llm_max_batch_size),
    )


class ClassificationService:
    """Serves one encoder through a dynamic batcher."""

    def __init__(
        self,
        encoder: EncoderTier,
        settings: Settings,
        metrics: Metrics,
        llm: LazyLLM | None = None,
        router_threshold: tuple[float | None, str] = (None, ""),
        router_merge_policy: tuple[str | None, str] = (None, ""),
        batch_overhead: float = BatchPolicy.batch_overhead,
    ) -> None:
        self.encoder = encoder
        self.settings = settings
        self.metrics = metrics
        self.llm = llm
        threshold, self.threshold_source = resolve_threshold(settings.escalation_threshold, router_threshold)
        self.merge_policy, self.merge_policy_source = resolve_merge_policy(settings.merge_policy, router_merge_policy)
        self.pipeline = HybridPipeline.for_taxonomy(encoder.taxonomy, encoder.thresholds, threshold, self.merge_policy)
        self.budget = EscalationBudget(
            settings.escalation_max_fraction, settings.escalation_max_in_flight, settings.escalation_window_s
        )
        self.detector = LanguageDetector(settings.languages)
        self.batcher: DynamicBatcher[list[int], Row] = DynamicBatcher(
            self._predict,
            batch_policy(settings, batch_overhead),
            cost=len,
            observer=metrics.observer("encoder"),
            name="encoder",
        )

        self._in_flight = 0

    @property
    def model_info_labels(self) -> tuple[str, str, str, str, str]:
        """This service's ``triage_model_info`` labels (tier, version, base model, device, precision served)."""
        health = self.encoder.health()
        return (
            "encoder",
            self.encoder.version,
            str(health["base_model"]),
            str(health["device"]),
            str(health.get("precision", "")),
        )

    def _predict(self, batch: list[list[int]]) -> list[Row]:
        return list(self.encoder.predict_ids(batch))

    async def retire(self, grace_s: float) -> None:
        """Stop once the requests already inside ``classify`` have finished (at most ``grace_s`` seconds):
        a reload swaps services without failing a request in flight."""
        deadline = time.monotonic() + grace_s
        while self._in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await self.stop()

    async def start(self) -> None:
        await self.batcher.start()
        if self.llm is not None:
            await self.llm.start(preload=self.settings.llm_preload)

    async def stop(self) -> None:
        if self.llm is not None:
            await self.llm.stop()
        await self.batcher.stop()

    @property
    def threshold(self) -> float:
        """The escalation threshold in force."""
        return self.pipeline.escalation_threshold

    async def classify(
        self, tickets: Sequence[TicketInput], mode: EscalationMode = EscalationMode.AUTO
    ) -> list[TicketOutcome]:
        """Classify tickets in order; raise ``app.server.errors.TriageError`` subclasses on overload or failure.

        One deadline (``request_timeout_s``) covers the whole request: the encoder's queue and forward pass, the
        wait for an LLM load and the LLM's answer. The encoder answers every ticket; those that need it (``mode``,
        confidence, budget) then go to the LLM tier, whose failures never fail the request: the encoder's answer
        stands, with a status saying why (``timeout`` when the deadline ran out first).
        """
        self._in_flight += 1
        try:
            return await self._classify(tickets, mode)
        finally:
            self._in_flight -= 1

    async def _classify(self, tickets: Sequence[TicketInput], mode: EscalationMode) -> list[TicketOutcome]:
        deadline = time.monotonic() + self.settings.request_timeout_s
        texts = [t.text for t in tickets]
        ids = self.encoder.encode(texts) if len(texts) <= 8 else await asyncio.to_thread(self.encoder.encode, texts)
        try:
            rows = await self.batcher.submit(ids, timeout=max(0.0, deadline - time.monotonic()))
        except QueueFull as exc:
            why = (
                f"these tickets would wait {exc.expected_wait:.1f}s in the encoder queue, over the "
                f"{self.settings.max_queue_wait_s:g}s budget (TRIAGE_MAX_QUEUE_WAIT_S)"
                if exc.expected_wait is not None
                else f"the encoder queue is full ({exc.depth} of {exc.capacity} tickets)"
            )
            raise errors.Overloaded(
                f"{why}; retry after {exc.retry_after:g}s",
                headers={"Retry-After": str(int(np.ceil(exc.retry_after)))},
            ) from exc
        except BatchDeadline as exc:
            raise errors.DeadlineExceeded(f"request not served in time: {exc}") from exc
        except BatcherClosed as exc:
            raise errors.Unavailable(str(exc)) from exc
        except ModelError as exc:
            raise errors.Unavailable(f"the encoder failed on this batch: {exc}") from exc
        decisions = self.pipeline.decide_batch(rows)
        decisions = await self._escalate(texts, decisions, mode, deadline)
        outcomes = []
        for ticket, decision in zip(tickets, decisions, strict=True):
            language = ticket.language or self.detector.detect(ticket.text)
            outcomes.append(TicketOutcome(id=ticket.id or uuid.uuid4().hex, language=language, decision=decision))
            self.metrics.tickets.labels(decision.decided_by, language).inc()
            for label in decision.labels:
                self.metrics.label_predictions.labels(label).inc()
        return outcomes

    async def _escalate(
        self, texts: list[str], decisions: list[Decision], mode: EscalationMode, deadline: float
    ) -> list[Decision]:
        """Send the tickets that need it to the LLM within budget and deadline; merge or annotate every decision."""
        self.budget.record(len(texts))
        wanted = [i for i, d in enumerate(decisions) if self.pipeline.wants_llm(d, mode)]
        if not wanted:
            return decisions
        out = list(decisions)
        if self.llm is None:
            return self._settle(out, wanted, EscalationStatus.DISABLED)
        granted = [i for i in wanted if self.budget.try_acquire(respect_fraction=mode is not EscalationMode.FORCE)]
        refused = set(wanted) - set(granted)
        self._settle(out, sorted(refused), EscalationStatus.SKIPPED_BUDGET)
        if not granted:
            return out
        try:
            load_wait = min(self.settings.llm_load_wait_s, deadline - time.monotonic())
            if not await self.llm.ensure_loaded(max(0.0, load_wait)):
                late = self.llm.state == "loading" and load_wait < self.settings.llm_load_wait_s
                return self._settle(out, granted, EscalationStatus.TIMEOUT if late else EscalationStatus.UNAVAILABLE)
            answer_deadline = min(deadline, time.monotonic() + self.settings.llm_timeout_s)
            if answer_deadline <= time.monotonic():
                return self._settle(out, granted, EscalationStatus.TIMEOUT)
            answers = await self.llm.classify([texts[i] for i in granted], deadline=answer_deadline)
        except BatchDeadline:
            return self._settle(out, granted, EscalationStatus.TIMEOUT, escalated=True)
        except (QueueFull, BatcherClosed, BreakerOpen):
            return self._settle(out, granted, EscalationStatus.UNAVAILABLE)
        except Exception as exc:  # any LLM failure (OOM, bad output, remote error): the encoder's answer stands
            # logged by the LLM batcher (once per outage, see FailureLog) and counted by the tier's breaker
            logger.debug("LLM tier failed on %d escalated ticket(s): %s", len(granted), exc)
            return self._settle(out, granted, EscalationStatus.FAILED, escalated=True)
        finally:
            for _ in granted:
                self.budget.release()
        for i, labels in zip(granted, answers, strict=True):
            out[i] = self.pipeline.merge(out[i], labels)
        self.metrics.escalations.labels(EscalationStatus.DONE.value).inc(len(granted))
        return out

    def _settle(
        self, decisions: list[Decision], indices: Sequence[int], status: EscalationStatus, escalated: bool = False
    ) -> list[Decision]:
        """Keep the encoder's answer for ``indices``, recording why the LLM did not decide."""
        for i in indices:
            decisions[i] = self.pipeline.settle(decisions[i], status, escalated)
        if indices:
            self.metrics.escalations.labels(status.value).inc(len(indices))
        return decisions
