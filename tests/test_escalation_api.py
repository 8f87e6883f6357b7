"""Escalation through the real server: routing, budget and failure isolation.

The LLM tier here is the ``openai`` backend talking to a local server that speaks the OpenAI protocol (the
external service this backend exists for); the in-process local backend has its own tests with the tiny adapter.
"""

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from transformers import AutoTokenizer

from app.server.settings import Settings
from models.taxonomy import load_taxonomy
from tests.conftest import running_server
from tests.fake_openai import Behaviour, Content, FakeOpenAI, Labels, Sleep, Status, serve
from tests.llm_fixtures import adapter_dir  # noqa: F401

LABELS = set(load_taxonomy().names)


@pytest.fixture(scope="module")
def remote_adapter(adapter_dir: Path) -> Path:  # noqa: F811
    """What a remote deployment keeps locally of the adapter vLLM serves: manifest and tokenizer."""
    return adapter_dir


@pytest.fixture(scope="module")
def fake(remote_adapter: Path) -> Iterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI(tokenizer=AutoTokenizer.from_pretrained(remote_adapter))
    with serve(fake) as url:
        yield fake, url


def settings_for(encoder_dir: Path, adapter: Path, url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "encoder_path": encoder_dir,
        "llm_backend": "openai",
        "llm_adapter_path": adapter,
        "llm_endpoint": url,
        "llm_timeout_s": 2.0,
        "escalation_max_fraction": 1.0,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


def wait_for_llm(server: str) -> None:
    """Wait until the preloaded LLM tier is loaded (its warm-up request must not eat scripted behaviours)."""
    for _ in range(200):
        if httpx.get(f"{server}/info").json()["llm"]["state"] == "loaded":
            return
        time.sleep(0.05)
    raise AssertionError("LLM tier did not load")


def post(url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = httpx.post(f"{url}/classify", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return list(response.json()["results"])


def test_auto_escalates_only_below_the_threshold(
    encoder_dir: Path, remote_adapter: Path, fake: tuple[FakeOpenAI, str]
) -> None:
    fake_server, url = fake
    fake_server.reset()
    texts = [f"ticket {i}: I was charged twice and the app crashes" for i in range(6)]
    with running_server(settings_for(encoder_dir, remote_adapter, url, escalation_threshold=0.0)) as server:
        results = post(server, {"tickets": [{"text": t} for t in texts]})
        assert {r["escalation"] for r in results} == {"not_needed"}  # nothing is below a threshold of 0
        assert all(r["decided_by"] == "encoder" and r["escalated"] is False for r in results)
    with running_server(settings_for(encoder_dir, remote_adapter, url, escalation_threshold=1.0)) as server:
        results = post(server, {"tickets": [{"text": t} for t in texts]})
        # every confidence is below 1.0 (a margin of exactly 1 needs a probability of exactly 0 or 1)
        assert {r["escalation"] for r in results} == {"done"}
        assert all(r["decided_by"] == "llm" and r["escalated"] is True for r in results)
        assert all(set(r["labels"]) <= LABELS for r in results)
        assert all("billing" in r["labels"] for r in results)  # the fake's keyword rule answered


def test_threshold_splits_a_mixed_request(
    encoder_dir: Path, remote_adapter: Path, fake: tuple[FakeOpenAI, str]
) -> None:
    fake_server, url = fake
    fake_server.reset()
    texts = ["app crash", "I want to cancel, refund me", "Merci pour les recettes !", "login broken ASAP"] * 3
    with running_server(settings_for(encoder_dir, remote_adapter, url)) as server:
        confidences = [
            r["confidence"] for r in post(server, {"tickets": [{"text": t} for t in texts], "escalation": "never"})
        ]
    threshold = sorted(confidences)[len(confidences) // 2]
    with running_server(settings_for(encoder_dir, remote_adapter, url, escalation_threshold=threshold)) as server:
        results = post(server, {"tickets": [{"text": t} for t in texts]})
    for confidence, result in zip(confidences, results, strict=True):
        assert result["escalated"] is (confidence < threshold)
        assert result["escalation"] == ("done" if confidence < threshold else "not_needed")


def test_never_and_force_modes(encoder_dir: Path, remote_adapter: Path, fake: tuple[FakeOpenAI, str]) -> None:
    fake_server, url = fake
    fake_server.reset()
    settings = settings_for(encoder_dir, remote_adapter, url, escalation_threshold=1.0, llm_preload=True)
    with running_server(settings) as server:
        wait_for_llm(server)
        (never,) = post(server, {"text": "refund please", "escalation": "never"})
        assert never["escalation"] == "not_needed" and never["decided_by"] == "encoder"
        fake_server.script(Labels(("billing", "urgent")))
        (forced,) = post(server, {"text": "refund please", "escalation": "force"})
        assert forced["decided_by"] == "llm" and forced["labels"] == ["billing", "urgent"]


@pytest.mark.parametrize(
    ("behaviour", "status"),
    [
        (Status(400), "failed"),  # the backend raised: a client error is not retried
        (Content("not a label at all"), "failed"),  # malformed answers, retried, then given up
        (Sleep(5.0, then=Labels(("billing",))), "timeout"),  # past TRIAGE_LLM_TIMEOUT_S
    ],
)
def test_llm_failures_keep_the_encoder_answer(
    encoder_dir: Path, remote_adapter: Path, fake: tuple[FakeOpenAI, str], behaviour: Behaviour, status: str
) -> None:
    fake_server, url = fake
    fake_server.reset()
    settings = settings_for(encoder_dir, remote_adapter, url, llm_timeout_s=1.0, llm_preload=True)
    with running_server(settings) as server:
        wait_for_llm(server)
        fake_server.script(*([behaviour] * 5))
        (never,) = post(server, {"text": "app crash, charged twice", "escalation": "never"})
        (result,) = post(server, {"text": "app crash, charged twice", "escalation": "force"})
        assert result["decided_by"] == "encoder"
        assert result["escalation"] == status
        assert result["labels"] == never["labels"]  # exactly the encoder's answer
        metrics = httpx.get(f"{server}/metrics").text
        assert f'triage_escalations_total{{status="{status}"}} 1.0' in metrics


def test_unavailable_llm_never_fails_requests(encoder_dir: Path, tmp_path: Path) -> None:
    settings = Settings(encoder_path=encoder_dir, llm_backend="local", llm_adapter_path=tmp_path / "no-adapter")
    with running_server(settings) as server:
        assert httpx.get(f"{server}/ready").status_code == 200  # the encoder alone makes the server ready
        (result,) = post(server, {"text": "refund please", "escalation": "force"})
        assert result["escalation"] == "unavailable" and result["decided_by"] == "encoder"
        info = httpx.get(f"{server}/info").json()
        assert info["llm"]["state"] == "failed" and "no-adapter" in info["llm"]["error"]
        assert "triage_llm_loaded 0.0" in httpx.get(f"{server}/metrics").text


def test_no_llm_tier_means_disabled(encoder_dir: Path) -> None:
    with running_server(Settings(encoder_path=encoder_dir, llm_backend="none")) as server:
        (result,) = post(server, {"text": "refund please", "escalation": "force"})
        assert result["escalation"] == "disabled" and result["escalated"] is False


def test_budget_holds_under_load(encoder_dir: Path, remote_adapter: Path, fake: tuple[FakeOpenAI, str]) -> None:
    fake_server, url = fake
    fake_server.reset()
    settings = settings_for(
        encoder_dir,
        remote_adapter,
        url,
        escalation_threshold=1.0,
        escalation_max_fraction=0.1,
        llm_preload=True,
        max_queue_wait_s=0,  # this test is about the escalation budget: no load shedding on a slow CI
        max_active_requests=0,
    )
    with running_server(settings) as server:

        async def load() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=server, timeout=60) as client:
                return await asyncio.gather(
                    *(client.post("/classify", json={"text": f"refund {i}, app crash"}) for i in range(200))
                )

        responses = asyncio.run(load())
    results = [r.json()["results"][0] for r in responses]
    escalated = sum(r["escalation"] == "done" for r in results)
    skipped = sum(r["escalation"] == "skipped_budget" for r in results)
    assert escalated + skipped == 200  # every ticket wanted escalation (threshold 1.0)
    assert 1 <= escalated <= 0.1 * 200 + 1  # 10 % plus one window's rounding
    assert all(r["decided_by"] == "encoder" for r in results if r["escalation"] == "skipped_budget")


def test_a_hanging_llm_is_cut_at_the_request_deadline(
    encoder_dir: Path, remote_adapter: Path, fake: tuple[FakeOpenAI, str]
) -> None:
    """One deadline covers encoder and LLM: the ticket gets the encoder's answer with status timeout, in time,
    and the LLM worker is free for the next escalation (no retries held past the caller's deadline)."""
    fake_server, url = fake
    fake_server.reset()
    settings = settings_for(
        encoder_dir, remote_adapter, url, llm_timeout_s=60.0, request_timeout_s=1.5, llm_preload=True
    )
    with running_server(settings) as server:
        wait_for_llm(server)
        fake_server.script(Sleep(20.0, then=Labels(("billing",))))
        before = len(fake_server.completion_requests)
        started = time.monotonic()
        (result,) = post(server, {"text": "app crash, charged twice", "escalation": "force"})
        elapsed = time.monotonic() - started
        assert result["escalation"] == "timeout" and result["decided_by"] == "encoder"
        assert elapsed < 10.0  # the request deadline (1.5 s) cut the 20 s hang and the 60 s LLM timeout
        (after,) = post(server, {"text": "app crash, charged twice", "escalation": "force"})
        assert after["escalation"] == "done"  # the worker was not held by retries of the hung call
        assert len(fake_server.completion_requests) - before == 2


def test_an_llm_outage_opens_the_breaker_and_logs_state_changes_not_tracebacks(
    encoder_dir: Path, remote_adapter: Path, fake: tuple[FakeOpenAI, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Three failed escalations open the breaker: the next ones are answered 'unavailable' without calling the
    backend; after the open period one trial goes through and, the backend healthy again, closes it. The outage
    leaves one traceback and a few state lines, not one traceback per failure."""
    fake_server, url = fake
    fake_server.reset()
    settings = settings_for(
        encoder_dir, remote_adapter, url, llm_breaker_failures=3, llm_breaker_open_s=1.0, llm_preload=True
    )
    with caplog.at_level(logging.INFO), running_server(settings) as server:
        wait_for_llm(server)
        fake_server.script(*([Status(400, "backend broken")] * 6))
        force = {"text": "app crash, charged twice", "escalation": "force"}
        statuses = [post(server, force)[0]["escalation"] for _ in range(6)]
        assert statuses == ["failed"] * 3 + ["unavailable"] * 3
        assert len(fake_server.completion_requests) == 1 + 3  # the warm-up, then only the three failures
        info = httpx.get(f"{server}/info").json()["llm"]["breaker"]
        assert info == {"state": "open", "failures": 3, "opened": 1}
        assert "triage_llm_breaker_open 1.0" in httpx.get(f"{server}/metrics").text
        fake_server.reset()  # the backend recovers
        time.sleep(1.1)
        (trial,) = post(server, force)
        assert trial["escalation"] == "done"
        assert httpx.get(f"{server}/info").json()["llm"]["breaker"]["state"] == "closed"
        assert "triage_llm_breaker_open 0.0" in httpx.get(f"{server}/metrics").text
    tracebacks = [r for r in caplog.records if r.exc_info and r.name.startswith("app.")]
    assert len(tracebacks) == 1, [r.getMessage() for r in tracebacks]
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("app.")]
    assert any("circuit breaker open after 3 consecutive failures" in m for m in messages)
    assert any("recovered after 3 failure(s)" in m for m in messages)
    assert any("circuit breaker closed" in m for m in messages)
