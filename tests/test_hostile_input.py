"""Hostile input against a real server: every body is classified or refused with a 4xx naming the problem, big
bodies are refused before they are read, and client-supplied values cannot grow the metrics without bound."""

from __future__ import annotations

import json
import random
import string
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.server.settings import Settings
from tests.conftest import running_server


@pytest.fixture(scope="module")
def server(encoder_dir: Path) -> Iterator[str]:
    settings = Settings(encoder_path=encoder_dir, llm_backend="none", max_body_bytes=1_000_000)
    with running_server(settings) as url:
        yield url


def post(url: str, content: bytes, content_type: str = "application/json") -> httpx.Response:
    return httpx.post(f"{url}/classify", content=content, headers={"content-type": content_type}, timeout=30)


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b'{"text": "x \\ud800 y"}', "text"),  # a lone surrogate, as JSON allows it to be written
        (b'{"text": "ok \\udfff"}', "text"),
        (b'{"tickets": [{"text": "fine"}, {"text": "a\\ud83d b"}]}', "tickets[1].text"),
        (b'{"text": "fine", "id": "T-\\ud800"}', "id"),
    ],
)
def test_lone_surrogates_are_refused_naming_the_ticket(server: str, raw: bytes, param: str) -> None:
    response = post(server, raw)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "validation_error" and error["param"] == param
    assert "surrogate" in error["message"] or "unicode" in error["message"]  # ours, or pydantic's for str | None


def test_control_characters_and_rare_scripts_are_classified(server: str) -> None:
    texts = ["null \u0000 byte", "bell \u0007 tab \t", "rtl \u202e override", "emoji 🍲🔥", "\ufeffbom", "ok\u2028"]
    response = httpx.post(f"{server}/classify", json={"tickets": [{"text": t} for t in texts]}, timeout=30)
    assert response.status_code == 200, response.text
    assert len(response.json()["results"]) == len(texts)


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"\xff\xfe{\x00}",  # not UTF-8
        b'{"text": "caf\xe9"}',  # Latin-1 inside JSON
        b"[" * 100_000 + b"]" * 100_000,  # nested past any parser's recursion limit
        b"",
    ],
)
def test_bodies_that_are_not_json_get_invalid_json(server: str, raw: bytes) -> None:
    response = post(server, raw)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_json"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_a_body_that_is_not_declared_json_gets_415(server: str, content_type: str) -> None:
    response = post(server, b'{"text": "hello"}', content_type)
    assert response.status_code == 415
    error = response.json()["error"]
    assert error["type"] == "unsupported_media_type" and "application/json" in error["message"]
    assert post(server, b'{"text": "hello"}', "application/json; charset=utf-8").status_code == 200


SEND_50_MB = """
import sys, httpx
url, chunked = sys.argv[1], sys.argv[2] == "chunked"
def chunks():  # no Content-Length: chunked transfer
    yield b'{"text": "'
    for _ in range(50):
        yield b"a" * 1_000_000
    yield b'"}'
body = chunks() if chunked else b'{"text": "' + b"a" * 50_000_000 + b'"}'
try:
    response = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=30)
    print(response.status_code, response.text)
except httpx.RemoteProtocolError:
    print("closed")  # the server may close the connection once it has answered, while the client still sends
"""


def test_a_body_over_the_limit_is_refused_before_it_is_read(server: str) -> None:
    """50 MB against a 1 MB limit: 413 from the Content-Length alone, and streamed without one: cut at the limit.

    The server runs in this process and the client in a child process, so tracemalloc (every thread of this one)
    sees only the server: the most Python memory it held at once stays far below the 50 MB a server reading the
    whole body would hold. (RSS was too coarse: freed pages come and go with the allocator.)
    """
    tracemalloc.start()
    try:
        answers = [
            subprocess.run(
                [sys.executable, "-c", SEND_50_MB, f"{server}/classify", mode],
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            ).stdout
            for mode in ("content-length", "chunked")
        ]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    status, body = answers[0].split(" ", 1)
    error = json.loads(body)["error"]
    assert status == "413" and error["type"] == "payload_too_large" and "1000000 bytes" in error["message"]
    assert answers[1].startswith(("413", "closed")), answers[1]
    assert peak < 20_000_000, f"the server held {peak / 1e6:.1f} MB at once"
    assert httpx.post(f"{server}/classify", json={"text": "still fine"}).status_code == 200


def test_languages_outside_the_served_ones_are_refused_and_metrics_stay_bounded(server: str) -> None:
    rng = random.Random(0)
    codes = {"".join(rng.choices(string.ascii_lowercase, k=2)) for _ in range(300)} - {"en", "fr", "de", "nl"}
    for code in sorted(codes)[:200]:
        response = httpx.post(f"{server}/classify", json={"text": "hello", "language": code})
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["param"] == "language" and "en, fr, de, nl" in error["message"]
    assert httpx.post(f"{server}/classify", json={"text": "hallo", "language": "NL"}).status_code == 200
    metrics = httpx.get(f"{server}/metrics").text
    languages = {line.split('language="')[1].split('"')[0] for line in metrics.splitlines() if 'language="' in line}
    assert languages <= {"en", "fr", "de", "nl"}


def test_the_schema_states_the_one_of_rule_and_the_limits(server: str) -> None:
    schema = httpx.get(f"{server}/openapi.json").json()["components"]["schemas"]["ClassifyRequest"]
    assert {"required": ["text"]} in schema["oneOf"] and {"required": ["tickets"]} in schema["oneOf"]
    tickets = schema["properties"]["tickets"]["anyOf"][0]
    assert tickets["maxItems"] == 256 and tickets["minItems"] == 1
