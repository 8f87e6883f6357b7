"""Graceful SIGTERM against a real ``triage serve`` process under concurrent load from a real HTTP client.

One request is held in flight deterministically: it is escalated (``"escalation": "force"``) to the fake vLLM
server, which accepts it and does not answer while ``hanging`` is set. SIGTERM is sent while it and the load are in
flight. The rule for lost requests (README, Graceful shutdown): a request sent before SIGTERM must get a complete
HTTP answer (200, or 429/503 with Retry-After); one sent after it may also find the listening socket closed (a
connection error: never accepted, so nothing was lost).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from transformers import AutoTokenizer

from app.server.main import create_app
from app.server.settings import Settings
from tests.fake_openai import FakeOpenAI, serve
from tests.llm_fixtures import adapter_dir  # noqa: F401
from tests.servers import free_port, serve_asgi

logger = logging.getLogger(__name__)

TEXTS = [
    "I was charged twice for my premium subscription, please refund me",
    "L'application plante quand j'ouvre une recette",
    "Ich kann mich nicht mehr einloggen, Passwort vergessen",
    "De app loopt vast bij het afspelen van video's",
]
WORKERS = 8


@dataclass(frozen=True)
class Outcome:
    sent: float
    """``time.monotonic()`` when the request was sent."""
    status: int | None
    """The HTTP status, or None when no answer came (``error`` names the transport error)."""
    retry_after: str | None = None
    error_type: str | None = None
    transport_error: str | None = None


@pytest.fixture(scope="module")
def fake(adapter_dir: Path) -> Iterator[tuple[FakeOpenAI, str]]:  # noqa: F811
    fake = FakeOpenAI(tokenizer=AutoTokenizer.from_pretrained(adapter_dir))
    with serve(fake) as url:
        yield fake, url


def _start(encoder_dir: Path, adapter: Path, llm_url: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "TRIAGE_ENCODER_PATH": str(encoder_dir),
        "TRIAGE_LLM_BACKEND": "openai",
        "TRIAGE_LLM_ADAPTER_PATH": str(adapter),
        "TRIAGE_LLM_ENDPOINT": llm_url,
        "TRIAGE_LLM_PRELOAD": "true",
        "TRIAGE_LLM_TIMEOUT_S": "60",
        "TRIAGE_REQUEST_TIMEOUT_S": "60",
        "TRIAGE_DRAIN_TIMEOUT_S": "60",
        "TRIAGE_ESCALATION_MAX_FRACTION": "1.0",
        "TRIAGE_MAX_QUEUE_WAIT_S": "0",  # this test is about the drain, not load shedding on a slow CI
        "TRIAGE_LOG_LEVEL": "info",
    }
    cmd = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"triage serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            info = httpx.get(f"{url}/info", timeout=2)
            if info.status_code == 200 and info.json()["llm"]["state"] == "loaded":  # the warm-up call is done
                return proc, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"triage serve not ready with its LLM tier:\n{log.read_text()}")
        time.sleep(0.2)


async def _wait_for(condition: object, what: str, seconds: float = 60.0) -> None:
    """Poll ``condition()`` until true; a bound against hanging the suite, not a timing assertion."""
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        await asyncio.sleep(0.02)


def test_sigterm_drains_in_flight_work_answers_every_accepted_request_and_exits_0(
    encoder_dir: Path,
    adapter_dir: Path,  # noqa: F811
    fake: tuple[FakeOpenAI, str],
    tmp_path: Path,
) -> None:
    fake_server, llm_url = fake
    fake_server.reset()
    log = tmp_path / "serve.log"
    proc, url = _start(encoder_dir, adapter_dir, llm_url, log)
    try:
        result = asyncio.run(_scenario(proc, url, fake_server))
    finally:
        fake_server.hanging = False
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    outcomes, ready, signalled, held, refused, returncode = result
    text = log.read_text()

    # /ready turned 503 "draining" while the held request was still in flight (checked inside the scenario), and
    # was 200 before the signal
    assert any(status == 200 for at, status, _ in ready if at < signalled)
    assert any(status == 503 and body == "draining" for at, status, body in ready if at >= signalled)
    # a new request during the drain: refused at once, with the error body and Retry-After
    assert refused.status_code == 503 and refused.headers.get("retry-after") == "1"
    assert refused.json()["error"]["type"] == "draining" and refused.headers.get("connection") == "close"
    # the held request finished its escalation after SIGTERM: the drain waited for it
    assert held.status_code == 200 and held.json()["results"][0]["escalation"] == "done"

    before = [o for o in outcomes if o.sent < signalled]
    after = [o for o in outcomes if o.sent >= signalled]
    logger.info(
        "SIGTERM under load: before %s, after %s; ready %s",
        Counter(o.status or o.transport_error for o in before),
        Counter(o.status or o.transport_error for o in after),
        Counter((s, b) for at, s, b in ready if at >= signalled),
    )
    assert sum(o.status == 200 for o in before) >= WORKERS  # the load was running when the signal came
    lost = [o for o in before if o.status is None]
    assert lost == [], f"requests sent before SIGTERM got no answer: {lost}"
    for o in before + after:
        if o.status is not None and o.status != 200:
            assert o.status in (429, 503) and o.retry_after is not None, o
    assert all(o.error_type == "draining" for o in after if o.status == 503)
    assert all(
        o.transport_error in ("ConnectError", "RemoteProtocolError", "ReadError") for o in after if o.status is None
    )

    assert returncode == 0, text
    assert "drained in" in text and "drain deadline" not in text  # the drain completed; the deadline did not cut it
    assert "Finished server process" in text


async def _scenario(
    proc: subprocess.Popen[bytes], url: str, fake: FakeOpenAI
) -> tuple[list[Outcome], list[tuple[float, int | None, str]], float, httpx.Response, httpx.Response, int]:
    outcomes: list[Outcome] = []
    ready: list[tuple[float, int | None, str]] = []
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with (
        httpx.AsyncClient(base_url=url, timeout=90, limits=limits) as client,
        httpx.AsyncClient(base_url=url, timeout=10) as probe,
    ):

        async def poll_ready() -> None:
            while not stop.is_set():
                at = time.monotonic()
                try:
                    response = await probe.get("/ready")
                    ready.append((at, response.status_code, str(response.json()["status"])))
                except httpx.TransportError as exc:
                    ready.append((at, None, type(exc).__name__))
                await asyncio.sleep(0.02)

        async def worker(n: int) -> None:
            i = n
            while not stop.is_set():
                sent = time.monotonic()
                body = {"text": TEXTS[i % len(TEXTS)], "escalation": "never"}
                i += WORKERS
                try:
                    response = await client.post("/classify", json=body)
                except httpx.TransportError as exc:
                    outcomes.append(Outcome(sent, None, transport_error=type(exc).__name__))
                    if isinstance(exc, httpx.ConnectError):
                        return  # the listening socket is closed: the server is going
                    continue
                error = response.json().get("error") if response.status_code != 200 else None
                outcomes.append(
                    Outcome(sent, response.status_code, response.headers.get("retry-after"), (error or {}).get("type"))
                )
                if response.status_code != 200:
                    await asyncio.sleep(0.05)  # a refused client backs off a little, as Retry-After asks

        poller = asyncio.create_task(poll_ready())
        workers = [asyncio.create_task(worker(n)) for n in range(WORKERS)]
        await _wait_for(lambda: sum(o.status == 200 for o in outcomes) >= 2 * WORKERS, "the load to get answers")

        fake.hanging = True
        seen = len(fake.completion_requests)
        held_task = asyncio.create_task(client.post("/classify", json={"text": TEXTS[0], "escalation": "force"}))
        await _wait_for(lambda: len(fake.completion_requests) > seen, "the forced escalation to reach the LLM")

        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        await _wait_for(
            lambda: any(s == 503 and b == "draining" for at, s, b in ready if at >= signalled), "/ready to say draining"
        )
        assert not held_task.done(), "the held request finished before /ready turned 503"
        refused = await probe.post("/classify", json={"text": TEXTS[1]})
        assert not held_task.done()
        assert proc.poll() is None, "the server exited with a request in flight"

        fake.hanging = False  # the LLM answers: the last accepted request can finish
        held = await held_task
        returncode = await asyncio.to_thread(proc.wait, 60)
        stop.set()
        await asyncio.gather(poller, *workers)
    return outcomes, ready, signalled, held, refused, returncode


def test_a_draining_app_refuses_new_work_and_says_so_on_ready(encoder_dir: Path) -> None:
    """The app's side of the drain, in-process: once it begins, /ready and /classify answer 503 draining at once
    (with the error body and Retry-After), and /health stays 200 (the process is alive, just leaving)."""
    app = create_app(Settings(encoder_path=encoder_dir, llm_backend="none"))
    with serve_asgi(app) as url:
        for _ in range(600):
            if httpx.get(f"{url}/ready").status_code == 200:
                break
            time.sleep(0.05)
        assert httpx.post(f"{url}/classify", json={"text": TEXTS[0]}).status_code == 200
        assert "triage_ready 1.0" in httpx.get(f"{url}/metrics").text
        assert app.state.drain.begin() is True and app.state.drain.begin() is False  # once
        ready = httpx.get(f"{url}/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "draining"
        assert "SIGTERM" in ready.json()["error"]
        refused = httpx.post(f"{url}/classify", json={"text": TEXTS[0]})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert refused.json() == {
            "error": {
                "type": "draining",
                "message": "the server is shutting down and takes no new work; retry (another replica will answer)",
                "param": None,
            }
        }
        assert httpx.get(f"{url}/health").status_code == 200
        assert "triage_ready 0.0" in httpx.get(f"{url}/metrics").text
        assert app.state.drain.active == 0
