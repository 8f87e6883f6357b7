"""Request ids in responses and logs; `triage --log-json serve` writes every line as JSON, uvicorn's included."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.server.settings import Settings
from tests.conftest import running_server
from tests.servers import free_port


@pytest.fixture(scope="module")
def server(encoder_dir: Path) -> Iterator[str]:
    with running_server(Settings(encoder_path=encoder_dir, llm_backend="none")) as url:
        yield url


def test_a_given_request_id_is_echoed_and_a_missing_one_generated(server: str) -> None:
    response = httpx.post(f"{server}/classify", json={"text": "hi"}, headers={"x-request-id": "helpdesk-42.a"})
    assert response.headers["x-request-id"] == "helpdesk-42.a"
    generated = httpx.get(f"{server}/health").headers["x-request-id"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    for hostile in [b"a b", b"x" * 200, "id\u00e9".encode()]:
        replaced = httpx.get(f"{server}/health", headers={b"x-request-id": hostile})
        assert len(replaced.headers["x-request-id"]) == 32  # a fresh id, not the client's
    error = httpx.post(f"{server}/classify", json={"text": ""}, headers={"x-request-id": "bad-1"})
    assert error.status_code == 422 and error.headers["x-request-id"] == "bad-1"


def test_log_json_makes_every_line_json_with_the_request_id(encoder_dir: Path) -> None:
    port = free_port()
    env = {**os.environ, "TRIAGE_LLM_BACKEND": "none", "TRIAGE_ENCODER_PATH": str(encoder_dir)}
    command = [sys.executable, "-m", "app.cli", "--log-json", "serve", "--port", str(port), "--access-log"]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and process.poll() is None, "server did not start"
            time.sleep(0.2)
        response = httpx.post(f"{url}/classify", json={"text": "SECRET ticket text"}, headers={"x-request-id": "r-77"})
        assert response.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    lines = [line for line in stderr.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line, uvicorn's startup and shutdown included
    assert any(r["logger"].startswith("uvicorn") for r in records)
    access = [r for r in records if r["logger"] == "uvicorn.access" and "/classify" in r["message"]]
    assert access and access[0]["request_id"] == "r-77"
    assert all("SECRET" not in line for line in lines)
