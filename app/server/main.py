"""The app factory: ``create_app(settings)`` wires routes, errors, metrics and the model lifecycle.

The encoder loads in the background after start-up, so ``/health`` answers at once and ``/ready`` turns 200
only when the encoder is loaded and warmed up.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response

from app.server import errors
from app.server.active import ConcurrencyLimit
from app.server.auth import APIKeyAuth, KeyStore
from app.server.body import BodyGuard
from app.server.drain import Drain, DrainGate
from app.server.errors import install_error_handlers
from app.server.llm_tier import LazyLLM, build_llm, serving_shape
from app.server.metrics import Metrics
from app.server.request_id import RequestId
from app.server.schemas import (
    ClassifyRequest,
    ClassifyResponse,
    ErrorResponse,
    TicketResult,
    check_limits,
    limit_schema,
)
from app.server.service import ClassificationService, TicketInput, llm_batch_policy
from app.server.settings import Settings
from router.escalation import EscalationMode

logger = logging.getLogger(__name__)

SWITCH_INTERVAL_S = 0.0001

ROUTES = ("/classify", "/health", "/ready", "/info", "/metrics", "/docs", "/openapi.json", "/admin/reload")

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "Invalid JSON",
        401: "API keys are configured and the request has no valid key",
        403: "The key lacks the scope: classify, or escalate:force for escalation=force",
        413: "Body over TRIAGE_MAX_BODY_BYTES",
        415: "Body not sent as application/json",
        422: "Invalid request: empty or too long text, too many tickets, wrong types, unknown fields",
        429: "Queue full, or the key's rate limit; retry after the Retry-After header's seconds",
        503: "Not ready, draining for a shutdown (type draining, with Retry-After), or not served within the deadline",
    }.items()
}


class ServerState:
    """What the routes read: the service once loaded, or why it is not."""

    def __init__(self) -> None:
        self.service: ClassificationService | None = None
        self.status = "loading"
        self.error: str | None = None
        self.started_at = time.time()


def _load_service(settings: Settings, metrics: Metrics) -> ClassificationService:
    from models.encoder import load_for_serving
    from models.memory_plan import check_serving_fits
    from models.store import check_adapter_matches

    # Resolve the served pair once: a later promotion (the pointer switching) changes nothing here until restart.
    encoder_path = settings.encoder_path.resolve()
    adapter_path = settings.adapter_path(encoder_path).resolve()
    if settings.llm_backend != "none":
        check_adapter_matches(encoder_path, adapter_path)
    if settings.device != "cpu":  # on a CUDA GPU: refuse, with the plan, what cannot fit (no GPU: nothing to check)
        plan = check_serving_fits(
            encoder_path,
            adapter_path if settings.llm_backend == "local" else None,
            serving_shape(settings),
            settings.llm_quantization,
            settings.llm_base_model,
        )
        if plan is not None:
            logger.info("memory plan:\n%s", plan.render())
    # The forward pass runs in a worker thread between many small Python-level ops, each needing the GIL; with
    # the default 5 ms switch interval a busy event loop holds the forward back at every op.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    encoder = load_for_serving(encoder_path, **settings.encoder_options())
    overhead = settings.batch_overhead_tokens
    if overhead is None:
        overhead = encoder.measure_batch_overhead()
        logger.info("encoder forward-pass overhead measured at %.0f tokens", overhead)
    llm = None
    if settings.llm_backend != "none":
        llm = LazyLLM(
            lambda: build_llm(settings, adapter_path=adapter_path),
            llm_batch_policy(settings),
            metrics,
            idle_unload_s=settings.llm_idle_unload_s,
            adapter_path=adapter_path,
            breaker_failures=settings.llm_breaker_failures,
            breaker_open_s=settings.llm_breaker_open_s,
        )
    service = ClassificationService(
        encoder,
        settings,
        metrics,
        llm,
        router_threshold=encoder.manifest.router_threshold(),
        router_merge_policy=encoder.manifest.router_merge_policy(),
        batch_overhead=overhead,
    )
    metrics.model_info.labels(*service.model_info_labels).set(1)
    return service


def create_app(settings: Settings) -> FastAPI:
    """Build the ASGI app for ``settings``. Nothing is read from the environment here."""
    metrics = Metrics()
    state = ServerState()
    drain = Drain(on_begin=lambda: metrics.ready.set(0))

    async def load() -> None:
        try:
            service = await asyncio.to_thread(_load_service, settings, metrics)
            await service.start()
        except Exception as exc:  # reported through /ready and 503s; the process stays up to say why
            state.status, state.error = "failed", f"{type(exc).__name__}: {exc}"
            logger.error("encoder failed to load: %s", state.error)
            return
        state.service, state.status = service, "ready"
        metrics.ready.set(1)
        logger.info("ready: encoder %s", service.encoder.version)

    reload_lock = asyncio.Lock()
    retiring: set[asyncio.Task[None]] = set()

    async def reload_service() -> dict[str, Any]:
        """Load the pair the checkpoint pointer names now beside the served one, switch, retire the old one once
        its requests are answered. On failure the served pair stays and ``ReloadFailed`` says why."""
        async with reload_lock:
            if state.status == "loading":  # the first load would overwrite the reloaded pair when it finishes
                raise errors.ReloadFailed("the server is still loading its first version; retry once /ready is 200")
            old = state.service
            try:
                new = await asyncio.to_thread(_load_service, settings, metrics)
                await new.start()
            except Exception as exc:
                logger.error("reload failed, still serving %s: %s", old.encoder.version if old else None, exc)
                raise errors.ReloadFailed(
                    f"reload failed, the served version stays: {type(exc).__name__}: {exc}"
                ) from exc
            state.service, state.status, state.error = new, "ready", None
            metrics.ready.set(1)
            if old is not None:
                task = asyncio.create_task(_retire(old, new, settings.request_timeout_s, metrics))
                retiring.add(task)
                task.add_done_callback(retiring.discard)
            previous = old.encoder.version if old else None
            logger.info("reloaded: %s -> %s", previous, new.encoder.version)
            return {"previous": previous, "current": new.encoder.version}

    def on_sighup() -> None:
        async def reload_logged() -> None:
            with suppress(errors.ReloadFailed):  # logged by reload_service; the served pair stays
                await reload_service()

        task = asyncio.create_task(reload_logged())
        retiring.add(task)
        task.add_done_callback(retiring.discard)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(load())
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_sighup)
        except (ValueError, RuntimeError, NotImplementedError):  # not the main thread (tests), or no signals
            logger.debug("SIGHUP reload not installed (not in the main thread)")
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await asyncio.gather(*retiring, return_exceptions=True)
            if state.service is not None:
                await state.service.stop()

    app = FastAPI(
        title="triage",
        version="0.1.0",
        summary="Multi-label classification of multilingual support tickets, batched on the encoder tier.",
        lifespan=lifespan,
    )
    app.state.settings, app.state.metrics, app.state.triage, app.state.drain = settings, metrics, state, drain
    install_error_handlers(app)
    app.add_middleware(BodyGuard, max_bytes=settings.max_body_bytes, json_paths=["/classify"])
    if settings.max_active_requests:
        app.add_middleware(ConcurrencyLimit, limit=settings.max_active_requests, paths=["/classify"])
    app.add_middleware(DrainGate, drain=drain, paths=["/classify"])  # outside the bound: a refusal holds no slot
    keys = KeyStore.load(settings.api_keys_file) if settings.api_keys_file is not None else None
    if keys is not None:  # before the body guard: a stranger cannot make the server read a body
        app.add_middleware(
            APIKeyAuth,
            store=keys,
            public_paths=settings.public_paths,
            rate_limit=settings.key_rate_limit,
            on_reject=lambda reason: metrics.auth_rejections.labels(reason).inc(),
        )
    app.add_middleware(RequestMetrics, metrics=metrics)  # 401, 413 and 415 are counted too
    app.add_middleware(RequestId)  # outermost: every layer's log lines carry the request id

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            limit_schema(schema, settings.max_text_chars, settings.max_tickets)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    def require_service() -> ClassificationService:
        if state.service is None:
            detail = f" ({state.error})" if state.error else ""
            raise errors.Unavailable(f"the encoder is {state.status}{detail}", headers={"Retry-After": "5"})
        return state.service

    @app.post(
        "/classify",
        response_model=ClassifyResponse,
        responses=ERROR_RESPONSES,
        summary="Classify one ticket or a list of tickets",
    )
    async def classify(body: ClassifyRequest, request: Request) -> ClassifyResponse:
        """Labels, per-label scores and the deciding tier for each ticket, in request order."""
        principal = getattr(request.state, "principal", None)
        if body.escalation == "force" and principal is not None and not principal.allows("escalate:force"):
            raise errors.Forbidden(f"API key {principal.name!r} lacks the scope 'escalate:force'", param="escalation")
        tickets = check_limits(body, settings.max_text_chars, settings.max_tickets, settings.languages)
        service = require_service()
        outcomes = await service.classify(
            [TicketInput(t.text, t.id, t.language) for t in tickets], EscalationMode(body.escalation)
        )
        return ClassifyResponse(
            model_version=service.encoder.version,
            results=[
                TicketResult(
                    id=o.id,
                    language=o.language,
                    labels=o.decision.labels,
                    scores=o.decision.scores,
                    confidence=o.decision.confidence,
                    decided_by="llm" if o.decision.decided_by == "llm" else "encoder",
                    escalated=o.decision.escalated,
                    escalation=o.decision.escalation,
                )
                for o in outcomes
            ],
        )

    @app.post(
        "/admin/reload",
        summary="Serve the version the checkpoint pointer names now, without a restart",
        responses={409: {"model": ErrorResponse, "description": "The new pair failed to load; the old one stays"}},
    )
    async def admin_reload() -> dict[str, Any]:
        """Loads the pointed-to encoder + adapter beside the served pair, switches atomically and retires the old
        pair once its in-flight requests are answered (SIGHUP does the same). Scope ``admin`` when keys are on."""
        return await reload_service()

    @app.get(
        "/health",
        summary="Liveness",
        responses={200: {"content": {"application/json": {"example": {"status": "alive"}}}}},
    )
    async def health() -> dict[str, Any]:
        """200 while the process is up, whatever the model state."""
        return {"status": "alive", "uptime_s": round(time.time() - state.started_at, 1)}

    @app.get(
        "/ready",
        summary="Readiness",
        responses={
            200: {"content": {"application/json": {"example": {"status": "ready"}}}},
            503: {"content": {"application/json": {"example": {"status": "loading", "error": None}}}},
        },
    )
    async def ready() -> JSONResponse:
        """200 once the encoder is loaded and warmed up, else 503 with the state (loading, failed, unhealthy or
        draining).

        ``unhealthy``: the encoder's batch worker crashed more often than it may restart; restart the server.
        ``draining``: the server got SIGTERM and is finishing the requests it accepted before it exits.
        """
        if drain.draining:
            error = "the server is shutting down (SIGTERM): it finishes the requests it accepted and takes no new ones"
            return JSONResponse({"status": "draining", "error": error}, 503)
        service = state.service
        if state.status == "ready" and service is not None and not service.batcher.healthy:
            error = f"the encoder batch worker stopped after {service.batcher.restarts} restart(s); see the log"
            return JSONResponse({"status": "unhealthy", "error": error}, 503)
        code = 200 if state.status == "ready" else 503
        return JSONResponse({"status": state.status, "error": state.error}, code)

    @app.get("/info", summary="Models, labels, thresholds and batching settings")
    async def info() -> dict[str, Any]:
        """What is served and how: checkpoint version, labels and thresholds, batching and limits."""
        service = require_service()
        encoder = service.encoder
        return {
            "encoder": {
                **encoder.health(),
                "labels": encoder.labels,
                "thresholds": dict(zip(encoder.labels, encoder.thresholds, strict=True)),
                "groups": encoder.taxonomy.groups,
                "path": str(settings.encoder_path),
            },
            "batching": {
                "enabled": settings.batching,
                "max_batch_size": settings.max_batch_size,
                "max_batch_tokens": settings.max_batch_tokens,
                "batch_overhead_tokens": round(service.batcher.policy.batch_overhead, 1),
                "batch_overhead_source": "configured" if settings.batch_overhead_tokens is not None else "measured",
                "max_wait_ms": settings.max_wait_ms,
                "max_queue": settings.max_queue,
                "request_timeout_s": settings.request_timeout_s,
            },
            "escalation": {
                "backend": settings.llm_backend,
                "threshold": service.threshold,
                "threshold_source": service.threshold_source,
                "max_fraction": settings.escalation_max_fraction,
                "window_s": settings.escalation_window_s,
                "max_in_flight": settings.escalation_max_in_flight,
                "merge_policy": service.merge_policy,
                "merge_policy_source": service.merge_policy_source,
                "budget": asdict(service.budget.stats()),
            },
            "llm": service.llm.info() if service.llm is not None else None,
            "limits": {"max_text_chars": settings.max_text_chars, "max_tickets": settings.max_tickets},
            "languages": settings.languages,
        }

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        """Prometheus text exposition format."""
        return Response(metrics.render(), media_type=metrics.content_type)

    return app


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def _retire(old: ClassificationService, new: ClassificationService, grace_s: float, metrics: Metrics) -> None:
    await old.retire(grace_s)
    if old.model_info_labels != new.model_info_labels:
        with suppress(KeyError):
            metrics.model_info.remove(*old.model_info_labels)
    logger.info("retired %s", old.encoder.version)


class RequestMetrics:
    """Pure ASGI middleware: request counts and latency by route template and status (cheap on the hot path)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        route = path if path in ROUTES else "other"
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.request_duration.labels(route).observe(time.perf_counter() - start)
