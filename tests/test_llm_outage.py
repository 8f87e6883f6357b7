"""The LLM tier killed, or hung, in the middle of steady /classify traffic (a real server, a real HTTP client).

The remote tier is the fake vLLM server (``tests/fake_openai.py``). Traffic is open-loop: requests go out on
schedule, most wanting escalation (threshold 1.0), one in four with ``"escalation": "never"``. Part-way through,
the fault is injected: ``kill`` shuts the fake down (its listening socket closes: connections are refused), ``hang``
makes it accept every request and answer none. Every ticket must still be answered 200 by the encoder, within the
request deadline, with the escalation status saying why the LLM did not decide, and the circuit breaker must open.
README (Overload) records the figures of these runs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from transformers import AutoTokenizer

from app.server.settings import Settings
from tests.conftest import running_server
from tests.fake_openai import FakeOpenAI, serve
from tests.llm_fixtures import adapter_dir  # noqa: F401

logger = logging.getLogger(__name__)

TEXTS = [
    "I was charged twice for my subscription, refund please",
    "L'application plante quand j'ouvre la recette",
    "Ich kann mich nicht einloggen, Passwort vergessen",
    "De app loopt vast bij het afspelen",
    "Cancel my account ASAP, this is the third time",
]
RATE_PER_S = 20.0
HEALTHY_S = 1.5
"""Traffic before the fault."""
FAULTED_S = 4.0
"""Traffic after the fault."""
LLM_TIMEOUT_S = 1.0
REQUEST_TIMEOUT_S = 10.0
FAULT_STATUSES = {"kill": {"failed", "timeout", "unavailable"}, "hang": {"timeout", "unavailable"}}
"""What an escalated ticket may say once the LLM is down: failed (the backend errored, after retries), timeout
(no answer by the LLM deadline), unavailable (the open breaker refused it without calling the backend)."""


@dataclass(frozen=True)
class Sent:
    at: float
    done: float
    mode: str
    text: str
    status: int | None
    result: dict[str, Any] | None


async def _traffic(url: str, inject: Callable[[], None]) -> tuple[list[Sent], float, float]:
    """Open-loop traffic for HEALTHY_S + FAULTED_S; ``inject`` runs (in a thread) after HEALTHY_S. Returns the
    outcomes and when the injection started and ended (``time.monotonic()``)."""
    outcomes: list[Sent] = []
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S + 20, limits=limits) as client:

        async def one(n: int) -> None:
            mode = "never" if n % 4 == 3 else "auto"
            text = TEXTS[n % len(TEXTS)]
            at = time.monotonic()
            try:
                response = await client.post("/classify", json={"text": text, "escalation": mode})
                result = response.json()["results"][0] if response.status_code == 200 else response.json()
                outcomes.append(Sent(at, time.monotonic(), mode, text, response.status_code, result))
            except httpx.HTTPError as exc:
                outcomes.append(Sent(at, time.monotonic(), mode, text, None, {"transport_error": repr(exc)}))

        tasks: list[asyncio.Task[None]] = []
        fault: asyncio.Task[None] | None = None
        fault_started = fault_done = 0.0
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < HEALTHY_S + FAULTED_S:
            while len(tasks) < int(elapsed * RATE_PER_S) + 1:
                tasks.append(asyncio.create_task(one(len(tasks))))
            if fault is None and elapsed >= HEALTHY_S:
                fault_started = time.monotonic()
                fault = asyncio.create_task(asyncio.to_thread(inject))
            if fault is not None and fault.done() and not fault_done:
                fault_done = time.monotonic()
            await asyncio.sleep(0.01)
        assert fault is not None
        await fault
        fault_done = fault_done or time.monotonic()
        await asyncio.gather(*tasks)
    return outcomes, fault_started, fault_done


@pytest.mark.parametrize("fault", ["kill", "hang"])
def test_a_killed_or_hung_llm_leaves_every_ticket_answered_by_the_encoder_and_opens_the_breaker(
    fault: str,
    encoder_dir: Path,
    adapter_dir: Path,  # noqa: F811
) -> None:
    fake = FakeOpenAI(tokenizer=AutoTokenizer.from_pretrained(adapter_dir))
    with ExitStack() as fake_stack:
        llm_url = fake_stack.enter_context(serve(fake))
        stopping = threading.Event()

        def inject() -> None:
            if fault == "kill":
                fake_stack.close()  # uvicorn closes the listening socket first: later connections are refused
            else:
                fake.hanging = True
            stopping.set()

        settings = Settings(
            encoder_path=encoder_dir,
            llm_backend="openai",
            llm_adapter_path=adapter_dir,
            llm_endpoint=llm_url,
            llm_preload=True,
            llm_timeout_s=LLM_TIMEOUT_S,
            request_timeout_s=REQUEST_TIMEOUT_S,
            escalation_threshold=1.0,  # every "auto" ticket wants the LLM
            escalation_max_fraction=1.0,
            escalation_max_in_flight=256,  # the budget is not under test: no skipped_budget
            llm_breaker_failures=3,
            llm_breaker_open_s=60.0,  # stays open to the end of the run: no half-open trial
            max_queue_wait_s=0,  # no load shedding on a slow CI: this test is about the LLM tier
            max_active_requests=0,
        )
        with running_server(settings) as server:
            _wait_for_llm(server)
            encoder_labels = {
                text: httpx.post(f"{server}/classify", json={"text": text, "escalation": "never"}).json()["results"][0][
                    "labels"
                ]
                for text in TEXTS
            }
            try:
                outcomes, fault_started, fault_done = asyncio.run(_traffic(server, inject))
            finally:
                fake.hanging = False  # let the fake shut down without waiting on hung requests
            info = httpx.get(f"{server}/info").json()["llm"]
            metrics = httpx.get(f"{server}/metrics").text

    assert stopping.is_set()
    statuses = Counter(o.status for o in outcomes)
    assert statuses == {200: len(outcomes)}, [o.result for o in outcomes if o.status != 200][:5]
    escalation = Counter(str(o.result["escalation"]) for o in outcomes if o.result is not None)
    latencies = np.asarray([o.done - o.at for o in outcomes])
    summary = {
        "fault": fault,
        "requests": len(outcomes),
        "http": dict(statuses),
        "escalation": dict(escalation),
        "p50_ms": round(float(np.percentile(latencies, 50)) * 1000),
        "p99_ms": round(float(np.percentile(latencies, 99)) * 1000),
        "max_ms": round(float(latencies.max()) * 1000),
        "llm_timeout_s": LLM_TIMEOUT_S,
        "request_timeout_s": REQUEST_TIMEOUT_S,
        "breaker": info["breaker"],
    }
    logger.info("LLM %s mid-run: %s", fault, summary)

    for o in outcomes:
        assert o.result is not None
        if o.mode == "never":
            assert o.result["escalation"] == "not_needed", o.result
        if o.result["escalation"] != "done":  # the encoder's answer, unchanged, with the reason
            assert o.result["decided_by"] == "encoder" and o.result["labels"] == encoder_labels[o.text], o.result
    healthy = [o for o in outcomes if o.done < fault_started and o.mode == "auto"]
    assert healthy and all(o.result is not None and o.result["escalation"] == "done" for o in healthy)
    faulted = [o for o in outcomes if o.at > fault_done and o.mode == "auto"]
    faulted_statuses = {str(o.result["escalation"]) for o in faulted if o.result is not None}
    assert faulted and faulted_statuses <= FAULT_STATUSES[fault], faulted_statuses
    assert "unavailable" in faulted_statuses  # the open breaker answered without calling the backend
    assert faulted_statuses - {"unavailable"}  # ... after failures that opened it
    assert fault != "hang" or "timeout" in faulted_statuses
    # within the request deadline: the LLM timeout (1 s), not the request's (10 s), cut each call to a hung backend
    assert float(latencies.max()) < REQUEST_TIMEOUT_S, summary
    assert info["breaker"]["state"] == "open" and info["breaker"]["opened"] >= 1
    assert "triage_llm_breaker_open 1.0" in metrics


def _wait_for_llm(server: str) -> None:
    """Wait until the preloaded LLM tier is loaded (bounded; not a timing assertion)."""
    for _ in range(600):
        if httpx.get(f"{server}/info").json()["llm"]["state"] == "loaded":
            return
        time.sleep(0.05)
    raise AssertionError("LLM tier did not load")
