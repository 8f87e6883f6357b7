"""Property-based API fuzzing with Schemathesis against a real server's own ``/openapi.json`` (uvicorn on loopback).

Every operation in the schema gets generated cases, valid ones (``positive``) and, where the operation takes
input, invalid ones (``negative``: wrong types, missing or unknown fields, out-of-range values). Each case is sent
with one of five credentials drawn with it: no key, an unknown key, a ``classify`` key, a ``classify`` +
``escalate:force`` key and an ``admin`` key, so the auth paths (401, 403) are fuzzed along with the handlers.
The server must never answer 5xx, and every 4xx must carry the one error body
``{"error": {"type", "message", "param"}}``.

``TRIAGE_SCHEMATHESIS_CASES`` sets the number of cases (default 1,000; README has the 10,000-case command).
Generation is derandomized: a run is reproducible, and a failure names the request that caused it.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from app.server.auth import add_key
from app.server.settings import Settings
from tests.conftest import running_server

CASES = int(os.environ.get("TRIAGE_SCHEMATHESIS_CASES", "1000"))
SMALL_OPERATION_CASES = 25
"""Cases for an operation without input, on top of CASES: its only variety is the credential (hypothesis stops
once it has sent each)."""


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str | None]]:
    file = tmp_path_factory.mktemp("keys") / "keys.json"
    made: dict[str, str | None] = {
        "none": None,
        "unknown": "trg_this-key-was-never-issued",
        "reader": add_key(file, "reader", ["classify"]),
        "agent": add_key(file, "agent", ["classify", "escalate:force"]),
        "ops": add_key(file, "ops", ["admin"]),
    }
    return file, made


@pytest.fixture(scope="module")
def server(encoder_dir: Path, keys: tuple[Path, dict[str, str | None]]) -> Iterator[str]:
    settings = Settings(
        encoder_path=encoder_dir,
        llm_backend="none",
        api_keys_file=keys[0],
        # small limits keep each valid case cheap on 2 CPU cores; they reach the schema (limit_schema), so the
        # generator still probes both sides of each limit
        max_text_chars=400,
        max_tickets=8,
        batch_overhead_tokens=64.0,  # the admin key's reloads skip the start-up measurement
        max_wait_ms=1.0,
    )
    with running_server(settings) as url:
        yield url


def _error_body_problem(response: requests.Response) -> str | None:
    """Why a 4xx body is not the documented error body, or None if it is."""
    try:
        body: Any = response.json()
    except ValueError:
        return f"not JSON: {response.text[:80]!r}"
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(body, dict) or set(body) != {"error"} or not isinstance(error, dict):
        return f"not {{'error': {{...}}}}: {body!r:.120}"
    if set(error) != {"type", "message", "param"}:
        return f"error keys {sorted(error)}"
    if not isinstance(error["type"], str) or not isinstance(error["message"], str) or not error["message"]:
        return f"type/message not non-empty strings: {error!r:.120}"
    if error["param"] is not None and not isinstance(error["param"], str):
        return f"param neither a string nor null: {error['param']!r}"
    return None


def test_generated_requests_never_get_5xx_and_every_4xx_has_the_error_body(
    server: str, keys: tuple[Path, dict[str, str | None]]
) -> None:
    credentials = keys[1]
    # /openapi.json is not a public path: any valid key reads it
    schema = schemathesis.openapi.from_url(
        f"{server}/openapi.json", headers={"authorization": f"Bearer {credentials['reader']}"}
    )
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the server's schema has an invalid operation: {result.err()}"
        operations.append(result.ok())
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {"POST /classify", "GET /ready", "GET /info"}
    with_input = [op for op in operations if op.body or op.query or op.path_parameters or op.headers]
    plain = [op for op in operations if op not in with_input]
    budget = -(-CASES // max(1, 2 * len(with_input)))  # CASES at least on the operations that take input

    statuses: Counter[int] = Counter()
    server_errors: list[str] = []
    bad_bodies: list[str] = []
    session = requests.Session()
    started = time.perf_counter()

    def run(operation: Any, mode: GenerationMode, examples: int) -> None:
        @given(case=operation.as_strategy(generation_mode=mode), who=st.sampled_from(sorted(credentials)))
        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def send(case: Any, who: str) -> None:
            key = credentials[who]
            headers = {"authorization": f"Bearer {key}"} if key else {}
            response = case.call(base_url=server, session=session, headers=headers, timeout=60)
            statuses[response.status_code] += 1
            where = f"{case.method} {case.formatted_path} as {who} ({mode.value}): {response.status_code}"
            if response.status_code >= 500:
                server_errors.append(f"{where} {response.text[:200]!r} for body {case.body!r:.200}")
            elif response.status_code >= 400 and (problem := _error_body_problem(response)) is not None:
                bad_bodies.append(f"{where}: {problem}")

        send()

    for operation in with_input:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run(operation, mode, budget)
    for operation in plain:
        run(operation, GenerationMode.POSITIVE, SMALL_OPERATION_CASES)
    seconds = time.perf_counter() - started

    total = sum(statuses.values())
    print(f"schemathesis: {total} cases in {seconds:.1f}s, statuses {dict(sorted(statuses.items()))}")
    assert server_errors == [], server_errors[:10]
    assert bad_bodies == [], bad_bodies[:10]
    assert total >= CASES, (total, dict(statuses))
    # the generator reached the handlers and the auth paths, not only the validation layer
    assert {200, 401, 403, 422} <= set(statuses), dict(statuses)
