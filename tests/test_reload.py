"""Hot reload: POST /admin/reload serves the version the pointer names now, failing no request in flight."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import httpx
import pytest

from app.server.settings import Settings
from tests.conftest import running_server


def point(checkpoints: Path, version: str) -> None:
    """Switch ``default`` to ``versions/<version>`` atomically, as the version store does."""
    tmp = checkpoints / ".default.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(Path("versions") / version)
    os.replace(tmp, checkpoints / "default")


def make_version(checkpoints: Path, encoder_dir: Path, name: str) -> None:
    folder = checkpoints / "versions" / name / "encoder"
    shutil.copytree(encoder_dir, folder)
    manifest_path = folder / "triage_manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["version"] = name
    manifest_path.write_text(json.dumps(manifest))


def test_reload_switches_versions_without_failing_a_request(encoder_dir: Path, tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    make_version(checkpoints, encoder_dir, "v-a")
    make_version(checkpoints, encoder_dir, "v-b")
    point(checkpoints, "v-a")
    settings = Settings(encoder_path=checkpoints / "default" / "encoder", llm_backend="none")
    with running_server(settings) as url:
        assert httpx.get(f"{url}/info").json()["encoder"]["version"] == "v-a"
        statuses: list[int] = []
        versions: set[str] = set()
        stop = threading.Event()

        def traffic() -> None:
            with httpx.Client(base_url=url, timeout=30) as client:
                while not stop.is_set():
                    response = client.post("/classify", json={"tickets": [{"text": "app crash"}] * 8})
                    statuses.append(response.status_code)
                    if response.status_code == 200:
                        versions.add(response.json()["model_version"])

        threads = [threading.Thread(target=traffic) for _ in range(4)]
        for thread in threads:
            thread.start()
        point(checkpoints, "v-b")
        reloaded = httpx.post(f"{url}/admin/reload", timeout=60)
        for _ in range(20):  # some traffic on the new version
            httpx.post(f"{url}/classify", json={"text": "after"})
        stop.set()
        for thread in threads:
            thread.join()
        assert reloaded.status_code == 200 and reloaded.json() == {"previous": "v-a", "current": "v-b"}
        assert statuses and set(statuses) == {200}  # not one request failed across the switch
        assert versions == {"v-a", "v-b"}
        assert httpx.get(f"{url}/info").json()["encoder"]["version"] == "v-b"
        metrics = httpx.get(f"{url}/metrics").text
        assert 'version="v-b"' in metrics

        broken = checkpoints / "versions" / "v-c" / "encoder"
        broken.mkdir(parents=True)
        point(checkpoints, "v-c")
        failed = httpx.post(f"{url}/admin/reload", timeout=60)
        assert failed.status_code == 409
        error = failed.json()["error"]
        assert error["type"] == "reload_failed" and "the served version stays" in error["message"]
        assert httpx.get(f"{url}/info").json()["encoder"]["version"] == "v-b"
        assert httpx.post(f"{url}/classify", json={"text": "still served"}).status_code == 200
    assert 'version="v-a"' not in metrics  # the retired version left the model-info gauge


def test_reload_during_the_first_load_is_refused(encoder_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first load, still running, would overwrite a reloaded pair when it finishes: refuse until ready."""
    from app.server import main

    release = threading.Event()
    real = main._load_service

    def slow_load(*args: object, **kwargs: object) -> object:
        release.wait(30)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(main, "_load_service", slow_load)
    with running_server(Settings(encoder_path=encoder_dir, llm_backend="none"), wait_ready=False) as url:
        refused = httpx.post(f"{url}/admin/reload")
        release.set()
        assert refused.status_code == 409
        assert "still loading its first version" in refused.json()["error"]["message"]
