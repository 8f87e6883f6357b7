"""The HTTP API through a real uvicorn server on loopback and real HTTP clients."""

import asyncio
from pathlib import Path

import httpx
import pytest

from app.server.settings import Settings
from models.taxonomy import load_taxonomy
from tests.conftest import running_server

LABELS = set(load_taxonomy().names)


def classify(url: str, body: object) -> httpx.Response:
    return httpx.post(f"{url}/classify", json=body, timeout=30)


def test_single_ticket(server: str) -> None:
    response = classify(server, {"text": "Mijn app crasht steeds bij het afspelen van een recept", "id": "T-1"})
    assert response.status_code == 200
    (result,) = response.json()["results"]
    assert result["id"] == "T-1"
    assert result["language"] == "nl"
    assert set(result["labels"]) <= LABELS
    assert set(result["scores"]) == LABELS
    assert result["decided_by"] == "encoder" and result["escalated"] is False
    assert 0.0 <= result["confidence"] <= 1.0


def test_scores_are_independent_sigmoids_not_softmax(server: str) -> None:
    result = classify(server, {"text": "I was charged twice and the app crashes, cancel now!!!"}).json()["results"][0]
    scores = list(result["scores"].values())
    assert all(0.0 < s < 1.0 for s in scores)
    assert abs(sum(scores) - 1.0) > 0.05
    thresholds = httpx.get(f"{server}/info").json()["encoder"]["thresholds"]
    over = {name for name, s in result["scores"].items() if s >= thresholds[name]}
    assert set(result["labels"]) <= over | {"frustrated"}  # implied labels may join


def test_batch_keeps_order_ids_and_given_languages(server: str) -> None:
    tickets = [
        {"id": "a", "text": "Je n'arrive pas à me connecter à mon compte"},
        {"id": "b", "text": "Ich wurde doppelt belastet, bitte erstatten", "language": "DE"},
        {"text": "Please add more Thai cooking shows"},
    ]
    results = classify(server, {"tickets": tickets}).json()["results"]
    assert [r["id"] for r in results[:2]] == ["a", "b"]
    assert results[2]["id"]  # generated
    assert [r["language"] for r in results] == ["fr", "de", "en"]


def test_concurrent_clients_are_batched_and_get_their_own_results(server: str) -> None:
    texts = [f"Ticket {i}: " + ("the video keeps buffering on my TV " * (1 + i % 4)) for i in range(32)]
    alone = {t: classify(server, {"text": t}).json()["results"][0]["scores"] for t in texts[:4]}

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server, timeout=30) as client:
            return await asyncio.gather(
                *(client.post("/classify", json={"text": t, "id": str(i)}) for i, t in enumerate(texts))
            )

    before = _batch_counts(server)
    responses = asyncio.run(burst())
    after = _batch_counts(server)
    for i, response in enumerate(responses):
        (result,) = response.json()["results"]
        assert result["id"] == str(i)
        if texts[i] in alone:
            for label, score in alone[texts[i]].items():
                assert result["scores"][label] == pytest.approx(score, abs=1e-4)
    batches = after["count"] - before["count"]
    tickets = after["sum"] - before["sum"]
    assert tickets == 32
    assert batches < 32  # some forward passes carried several clients' tickets


def _batch_counts(url: str) -> dict[str, float]:
    out = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        for key in ("count", "sum"):
            if line.startswith(f'triage_batch_size_{key}{{tier="encoder"}}'):
                out[key] = float(line.split()[-1])
    return out


@pytest.mark.parametrize(
    ("body", "status", "type_", "param"),
    [
        ({"text": ""}, 422, "validation_error", "text"),
        ({"text": "   "}, 422, "validation_error", "text"),
        ({"text": "x" * 10_001}, 422, "validation_error", "text"),
        ({"tickets": [{"text": "ok"}] * 257}, 422, "validation_error", "tickets"),
        ({"tickets": []}, 422, "validation_error", "tickets"),
        ({"tickets": [{"text": "ok"}, {"text": 5}]}, 422, "validation_error", "tickets[1].text"),
        ({"text": 123}, 422, "validation_error", "text"),
        ({"text": "ok", "colour": "red"}, 422, "validation_error", "colour"),
        ({"tickets": [{"text": "ok", "prio": 1}]}, 422, "validation_error", "tickets[0].prio"),
        ({"text": "ok", "tickets": [{"text": "ok"}]}, 422, "validation_error", None),
        ({}, 422, "validation_error", None),
        ({"text": "ok", "language": "english"}, 422, "validation_error", "language"),
        (["text"], 422, "validation_error", None),
    ],
)
def test_bad_input_gets_a_4xx_with_the_error_body(
    server: str, body: object, status: int, type_: str, param: str
) -> None:
    response = classify(server, body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == type_
    assert error["message"]
    if param is not None:
        assert error["param"] == param


def test_invalid_json_and_unknown_routes(server: str) -> None:
    response = httpx.post(f"{server}/classify", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_json"
    response = httpx.get(f"{server}/nope")
    assert response.status_code == 404 and response.json()["error"]["type"] == "not_found"
    response = httpx.get(f"{server}/classify")
    assert response.status_code == 405 and response.json()["error"]["type"] == "method_not_allowed"


def test_health_ready_info_docs(server: str, encoder_dir: Path) -> None:
    assert httpx.get(f"{server}/health").json()["status"] == "alive"
    assert httpx.get(f"{server}/ready").status_code == 200
    info = httpx.get(f"{server}/info").json()
    assert info["encoder"]["labels"] == load_taxonomy().names
    assert info["encoder"]["version"].startswith("tiny-")
    assert info["batching"]["max_batch_size"] == 32
    assert info["batching"]["batch_overhead_source"] == "measured"
    assert info["batching"]["batch_overhead_tokens"] > 0
    openapi = httpx.get(f"{server}/openapi.json").json()
    assert set(openapi["paths"]) >= {"/classify", "/health", "/ready", "/info", "/metrics"}
    schema = openapi["components"]["schemas"]["ClassifyRequest"]
    assert schema["examples"]
    assert httpx.get(f"{server}/docs").status_code == 200


def test_metrics_names_are_exported(server: str) -> None:
    classify(server, {"text": "app crashes"})
    text = httpx.get(f"{server}/metrics").text
    for name in (
        'triage_requests_total{route="/classify",status="200"}',
        "triage_request_duration_seconds_bucket",
        'triage_tickets_total{decided_by="encoder"',
        'triage_batch_size_bucket{le="1.0",tier="encoder"}',
        'triage_queue_depth{tier="encoder"}',
        'triage_queue_wait_seconds_count{tier="encoder"}',
        'triage_inference_seconds_count{tier="encoder"}',
        "triage_label_predictions_total",
        'triage_model_info{base_model="tiny"',
    ):
        assert name in text, name


def test_overload_gets_429_with_retry_after(encoder_dir: Path) -> None:
    # a long flush wait keeps the first request's tickets queued while the second arrives
    settings = Settings(encoder_path=encoder_dir, max_queue=8, max_batch_size=64, max_wait_ms=1500, llm_backend="none")
    with running_server(settings) as url:

        async def scenario() -> tuple[httpx.Response, httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                first = asyncio.create_task(client.post("/classify", json={"tickets": [{"text": "app crash"}] * 8}))
                await asyncio.sleep(0.3)
                second = await client.post("/classify", json={"text": "one more"})
                return await first, second

        first, second = asyncio.run(scenario())
    assert first.status_code == 200 and len(first.json()["results"]) == 8
    assert second.status_code == 429
    assert int(second.headers["retry-after"]) >= 1
    assert second.json()["error"]["type"] == "overloaded"


def test_requests_over_the_active_bound_get_429_before_they_are_parsed(encoder_dir: Path) -> None:
    """Two requests held in the batcher (a 1.5 s flush wait): the third is refused at once, with Retry-After."""
    settings = Settings(
        encoder_path=encoder_dir, max_active_requests=2, max_batch_size=64, max_wait_ms=1500, llm_backend="none"
    )
    with running_server(settings) as url:

        async def scenario() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                held = [asyncio.create_task(client.post("/classify", json={"text": f"t{i}"})) for i in range(2)]
                await asyncio.sleep(0.4)
                third = await client.post("/classify", json={"text": "third"})
                return [*(await asyncio.gather(*held)), third]

        first, second, third = asyncio.run(scenario())
    assert first.status_code == 200 and second.status_code == 200
    assert third.status_code == 429 and third.headers["retry-after"] == "1"
    assert "TRIAGE_MAX_ACTIVE_REQUESTS" in third.json()["error"]["message"]


def test_load_is_shed_by_expected_wait(encoder_dir: Path) -> None:
    """A 10 ms wait budget: once the queue holds more than that much measured work, requests get 429 at once."""
    settings = Settings(
        encoder_path=encoder_dir, max_queue_wait_s=0.01, max_batch_size=8, max_active_requests=0, llm_backend="none"
    )
    with running_server(settings) as url:
        assert httpx.post(f"{url}/classify", json={"text": "first, measured"}).status_code == 200

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                body = {"tickets": [{"text": f"ticket {i} about a crash"} for i in range(32)]}
                return list(await asyncio.gather(*(client.post("/classify", json=body) for _ in range(8))))

        responses = asyncio.run(burst())
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 429} and 200 in codes and 429 in codes
    shed = next(r for r in responses if r.status_code == 429)
    assert "TRIAGE_MAX_QUEUE_WAIT_S" in shed.json()["error"]["message"]
    assert int(shed.headers["retry-after"]) >= 1


def test_deadline_gets_503_not_a_hang(encoder_dir: Path) -> None:
    settings = Settings(
        encoder_path=encoder_dir, max_batch_size=64, max_wait_ms=3000, request_timeout_s=0.2, llm_backend="none"
    )
    with running_server(settings) as url:
        response = classify(url, {"text": "app crash"})
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "timeout"


def test_a_configured_batch_overhead_replaces_the_measured_one(encoder_dir: Path) -> None:
    settings = Settings(encoder_path=encoder_dir, batch_overhead_tokens=500, llm_backend="none")
    with running_server(settings) as url:
        batching = httpx.get(f"{url}/info").json()["batching"]
        assert classify(url, {"tickets": [{"text": "app crash"}, {"text": "refund " * 40}]}).status_code == 200
    assert batching["batch_overhead_tokens"] == 500 and batching["batch_overhead_source"] == "configured"


def test_not_ready_when_the_checkpoint_is_missing(tmp_path: Path) -> None:
    with running_server(Settings(encoder_path=tmp_path / "missing"), wait_ready=False) as url:
        for _ in range(100):
            ready = httpx.get(f"{url}/ready")
            if ready.json()["status"] != "loading":
                break
            asyncio.run(asyncio.sleep(0.05))
        assert ready.status_code == 503 and ready.json()["status"] == "failed"
        assert "does not exist" in ready.json()["error"]
        response = classify(url, {"text": "hello"})
        assert response.status_code == 503 and response.json()["error"]["type"] == "unavailable"
        assert httpx.get(f"{url}/health").status_code == 200


def test_a_worker_that_keeps_crashing_turns_ready_unhealthy(encoder_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each crash answers its caller with the 500 error body; past the restart budget /ready says unhealthy."""
    from app.server import batcher

    settings = Settings(encoder_path=encoder_dir, llm_backend="none", max_wait_ms=1)
    with running_server(settings) as url:
        assert httpx.get(f"{url}/ready").status_code == 200

        def broken(costs: object, policy: object) -> list[list[int]]:
            raise RuntimeError("planted planning bug")

        monkeypatch.setattr(batcher, "plan_batches", broken)
        statuses = [classify(url, {"text": "app crash"}).status_code for _ in range(6)]
        assert statuses == [500] * 6
        ready = httpx.get(f"{url}/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "unhealthy"
        refused = classify(url, {"text": "app crash"})
        assert refused.status_code == 503 and refused.json()["error"]["type"] == "unavailable"
