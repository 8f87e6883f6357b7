"""Every Prometheus collector triage exports. Names and labels are part of the public interface.

Each app gets its own registry, so several apps (tests, benchmarks) can live in one process.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
TOKEN_BUCKETS = (64, 256, 1024, 2048, 4096, 8192, 16384, 32768)


class Metrics:
    """The collectors, registered on a private registry."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "triage_requests", "HTTP requests by route and status code", ["route", "status"], registry=r
        )
        self.request_duration = Histogram(
            "triage_request_duration_seconds", "HTTP request latency", ["route"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.tickets = Counter("triage_tickets", "Tickets classified", ["decided_by", "language"], registry=r)
        self.batch_size = Histogram(
            "triage_batch_size", "Tickets per forward pass", ["tier"], buckets=BATCH_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            "triage_batch_padded_tokens", "Padded tokens per forward pass", ["tier"], buckets=TOKEN_BUCKETS, registry=r
        )
        self.queue_depth = Gauge("triage_queue_depth", "Tickets queued or running", ["tier"], registry=r)
        self.queue_wait = Histogram(
            "triage_queue_wait_seconds",
            "Time a ticket waited for its batch",
            ["tier"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "triage_inference_seconds", "Forward-pass time per batch", ["tier"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.label_predictions = Counter("triage_label_predictions", "Labels predicted", ["label"], registry=r)
        self.model_info = Gauge(
            "triage_model_info",
            "Served checkpoints (value 1)",
            ["tier", "version", "base_model", "device", "precision"],
            registry=r,
        )
        self.ready = Gauge("triage_ready", "1 when the encoder is loaded and warmed up", registry=r)
        self.escalations = Counter(
            "triage_escalations", "Tickets that wanted the LLM tier, by outcome", ["status"], registry=r
        )
        self.auth_rejections = Counter(
            "triage_auth_rejections", "Requests refused by API-key checks", ["reason"], registry=r
        )
        self.llm_breaker_open = Gauge(
            "triage_llm_breaker_open", "1 while the LLM circuit breaker refuses escalations", registry=r
        )
        self.llm_loaded = Gauge("triage_llm_loaded", "1 while the LLM tier is loaded", registry=r)
        self.llm_load_seconds = Gauge("triage_llm_load_seconds", "Duration of the last LLM load", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def observer(self, tier: str) -> TierObserver:
        return TierObserver(self, tier)


class TierObserver:
    """Adapts batcher events to the per-tier collectors (implements ``app.server.batcher.BatchObserver``)."""

    def __init__(self, metrics: Metrics, tier: str) -> None:
        self._size = metrics.batch_size.labels(tier)
        self._tokens = metrics.batch_tokens.labels(tier)
        self._wait = metrics.queue_wait.labels(tier)
        self._inference = metrics.inference.labels(tier)
        self._depth = metrics.queue_depth.labels(tier)

    def batch_done(self, size: int, padded_tokens: int, waits: Sequence[float], seconds: float) -> None:
        self._size.observe(size)
        self._tokens.observe(padded_tokens)
        self._inference.observe(seconds)
        for wait in waits:
            self._wait.observe(wait)

    def queue_depth(self, depth: int) -> None:
        self._depth.set(depth)
