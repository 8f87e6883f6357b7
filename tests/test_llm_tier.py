"""The in-process LLM tier behind the real server: lazy, shared loading and idle unloading, with the tiny adapter."""

import asyncio
import time
from pathlib import Path

import httpx

from app.server.settings import Settings
from models.taxonomy import load_taxonomy
from tests.conftest import running_server
from tests.llm_fixtures import adapter_dir  # noqa: F401  (fixture)

LABELS = set(load_taxonomy().names)


def metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not exported")


def test_sixteen_forced_requests_share_one_lazy_load(encoder_dir: Path, adapter_dir: Path) -> None:  # noqa: F811
    settings = Settings(encoder_path=encoder_dir, llm_adapter_path=adapter_dir, llm_load_wait_s=120, llm_timeout_s=120)
    with running_server(settings) as url:
        assert metric(url, "triage_llm_loaded") == 0.0  # not loaded at start-up
        assert httpx.get(f"{url}/info").json()["llm"]["state"] == "unloaded"

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=180) as client:
                return await asyncio.gather(
                    *(
                        client.post("/classify", json={"text": f"ticket {i}: charged twice!", "escalation": "force"})
                        for i in range(16)
                    )
                )

        responses = asyncio.run(burst())
        results = [r.json()["results"][0] for r in responses]
        assert all(r["decided_by"] == "llm" and r["escalation"] == "done" for r in results), results
        assert all(set(r["labels"]) <= LABELS for r in results)
        info = httpx.get(f"{url}/info").json()["llm"]
        assert info["loads"] == 1 and info["state"] == "loaded"
        assert metric(url, "triage_llm_loaded") == 1.0
        assert metric(url, "triage_llm_load_seconds") > 0
        assert 'triage_batch_size_count{tier="llm"}' in httpx.get(f"{url}/metrics").text


def test_idle_llm_is_unloaded_and_reloaded_on_demand(encoder_dir: Path, adapter_dir: Path) -> None:  # noqa: F811
    settings = Settings(
        encoder_path=encoder_dir, llm_adapter_path=adapter_dir, llm_idle_unload_s=0.5, llm_load_wait_s=120
    )
    with running_server(settings) as url:
        forced = {"text": "app crash", "escalation": "force"}
        assert httpx.post(f"{url}/classify", json=forced, timeout=120).json()["results"][0]["decided_by"] == "llm"
        deadline = time.monotonic() + 20
        while metric(url, "triage_llm_loaded") == 1.0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert httpx.get(f"{url}/info").json()["llm"]["state"] == "unloaded"
        assert httpx.post(f"{url}/classify", json=forced, timeout=120).json()["results"][0]["decided_by"] == "llm"
        assert httpx.get(f"{url}/info").json()["llm"]["loads"] == 2
