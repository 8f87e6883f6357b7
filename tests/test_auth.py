"""API keys with scopes against a real server: 401, 403 and 429 with the error body, public routes, hashed keys."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.cli import main
from app.server.auth import KeyFileError, KeyStore, read_key_file
from app.server.settings import Settings
from tests.conftest import running_server


def add(file: Path, name: str, scopes: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["api-key", "add", "--file", str(file), "--name", name, "--scopes", scopes]) == 0
    return capsys.readouterr().out.strip()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    from app.server.auth import add_key

    file = tmp_path_factory.mktemp("keys") / "keys.json"
    made = {
        "reader": add_key(file, "reader", ["classify"]),
        "agent": add_key(file, "agent", ["classify", "escalate:force"]),
        "ops": add_key(file, "ops", ["admin"]),
    }
    return file, made


@pytest.fixture(scope="module")
def server(encoder_dir: Path, keys: tuple[Path, dict[str, str]]) -> Iterator[str]:
    settings = Settings(encoder_path=encoder_dir, llm_backend="none", api_keys_file=keys[0])
    with running_server(settings) as url:
        yield url


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_no_key_or_a_wrong_key_is_401_with_the_error_body(server: str) -> None:
    for headers in ({}, bearer("trg_not-a-key"), {"authorization": "Basic dXNlcjpwdw=="}):
        response = httpx.post(f"{server}/classify", json={"text": "hello"}, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["type"] == "unauthorized"
    assert "Authorization: Bearer" in httpx.post(f"{server}/classify", json={"text": "x"}).json()["error"]["message"]


def test_scopes_decide_what_a_key_may_do(server: str, keys: tuple[Path, dict[str, str]]) -> None:
    made = keys[1]
    ok = httpx.post(f"{server}/classify", json={"text": "app crashes"}, headers=bearer(made["reader"]))
    assert ok.status_code == 200
    also = httpx.post(f"{server}/classify", json={"text": "app crashes"}, headers={"x-api-key": made["reader"]})
    assert also.status_code == 200
    forced = httpx.post(
        f"{server}/classify", json={"text": "app crashes", "escalation": "force"}, headers=bearer(made["reader"])
    )
    assert forced.status_code == 403
    error = forced.json()["error"]
    assert error == {
        "type": "forbidden",
        "message": "API key 'reader' lacks the scope 'escalate:force'",
        "param": "escalation",
    }
    allowed = httpx.post(
        f"{server}/classify", json={"text": "app crashes", "escalation": "force"}, headers=bearer(made["agent"])
    )
    assert allowed.status_code == 200 and allowed.json()["results"][0]["escalation"] == "disabled"
    assert httpx.post(f"{server}/classify", json={"text": "x"}, headers=bearer(made["ops"])).status_code == 403
    assert httpx.get(f"{server}/info", headers=bearer(made["reader"])).status_code == 403
    assert httpx.get(f"{server}/info", headers=bearer(made["ops"])).status_code == 200
    assert httpx.get(f"{server}/info").status_code == 401  # paths and endpoints are not for strangers
    assert httpx.post(f"{server}/admin/reload", headers=bearer(made["reader"])).status_code == 403


def test_public_routes_need_no_key(server: str) -> None:
    assert httpx.get(f"{server}/health").status_code == 200
    assert httpx.get(f"{server}/ready").status_code == 200
    metrics = httpx.get(f"{server}/metrics")
    assert metrics.status_code == 200 and 'triage_auth_rejections_total{reason="missing"}' in metrics.text
    assert httpx.get(f"{server}/openapi.json").status_code == 401


def test_an_anonymous_body_is_refused_unread(server: str) -> None:
    response = httpx.post(
        f"{server}/classify",
        content=b'{"text": "' + b"a" * 30_000_000 + b'"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 401


def test_the_keys_file_holds_hashes_only(keys: tuple[Path, dict[str, str]]) -> None:
    file, made = keys
    text = file.read_text()
    assert all(key not in text for key in made.values())
    assert stat.S_IMODE(os.stat(file).st_mode) == 0o600
    assert [e["name"] for e in read_key_file(file)] == ["reader", "agent", "ops"]
    store = KeyStore.load(file)
    assert store.lookup(made["agent"]).scopes == frozenset({"classify", "escalate:force"})  # type: ignore[union-attr]
    assert store.lookup(made["agent"] + "x") is None


def test_the_cli_adds_lists_and_revokes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "keys.json"
    key = add(file, "helpdesk", "classify,admin", capsys)
    assert key.startswith("trg_") and len(key) > 40
    assert main(["api-key", "list", "--file", str(file)]) == 0
    assert capsys.readouterr().out == "helpdesk\tclassify,admin\n"
    assert main(["api-key", "add", "--file", str(file), "--name", "helpdesk"]) == 2
    assert "already has a key named 'helpdesk'" in capsys.readouterr().err
    assert main(["api-key", "add", "--file", str(file), "--name", "x", "--scopes", "root"]) == 2
    assert main(["api-key", "revoke", "--file", str(file), "--name", "helpdesk"]) == 0
    assert read_key_file(file) == []


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("not json", "cannot be read as JSON"),
        ('{"keys": [{"name": "a", "sha256": "abc", "scopes": []}]}', "64 lowercase hex digits"),
        ('{"keys": [{"name": "a", "key": "plain", "scopes": []}]}', "exactly the fields name, sha256, scopes"),
        ('{"keys": [{"name": "a", "sha256": "' + "0" * 64 + '", "scopes": ["root"]}]}', "scopes must be a list"),
    ],
)
def test_a_broken_keys_file_is_refused_naming_the_problem(tmp_path: Path, content: str, problem: str) -> None:
    file = tmp_path / "keys.json"
    file.write_text(content)
    with pytest.raises(KeyFileError, match=problem):
        KeyStore.load(file)


def test_a_key_over_its_rate_limit_gets_429_with_retry_after(
    encoder_dir: Path, keys: tuple[Path, dict[str, str]]
) -> None:
    settings = Settings(encoder_path=encoder_dir, llm_backend="none", api_keys_file=keys[0], key_rate_limit=2.0)
    with running_server(settings) as url:
        codes = []
        for _ in range(8):
            response = httpx.post(f"{url}/classify", json={"text": "hi"}, headers=bearer(keys[1]["reader"]))
            codes.append(response.status_code)
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) >= 1
                assert response.json()["error"]["type"] == "rate_limited"
        assert codes[0] == 200 and 429 in codes
        other = httpx.post(f"{url}/classify", json={"text": "hi"}, headers=bearer(keys[1]["agent"]))
        assert other.status_code == 200  # one bucket per key
        time.sleep(0.6)
        assert httpx.post(f"{url}/classify", json={"text": "hi"}, headers=bearer(keys[1]["reader"])).status_code == 200


def test_without_a_keys_file_nothing_changes(encoder_dir: Path) -> None:
    with running_server(Settings(encoder_path=encoder_dir, llm_backend="none")) as url:
        assert httpx.post(f"{url}/classify", json={"text": "hello", "escalation": "force"}).status_code == 200
        assert json.loads(httpx.get(f"{url}/info").text)["encoder"]["labels"]
