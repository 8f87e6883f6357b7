"""The version store: paired versions, atomic promotion and rollback, recalibration as a new version, kill -9."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.server.settings import Settings
from models.checkpoint import Manifest, read_manifest
from models.encoder import EncoderClassifier
from models.errors import CheckpointError
from models.store import VersionStore, check_adapter_matches, in_new_version
from models.taxonomy import Taxonomy
from tests.conftest import running_server

REPO = Path(__file__).resolve().parents[1]


def make_store(tmp_path: Path, encoder_dir: Path, versions: int = 1) -> VersionStore:
    store = VersionStore(tmp_path / "checkpoints", keep=2)
    for _ in range(versions):
        with store.new_version() as (building, target):
            shutil.copytree(encoder_dir, building / "encoder")
        store.promote(target, {"by": "test"})
        time.sleep(0.01)
    return store


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_promote_rollback_and_prune(tmp_path: Path, encoder_dir: Path) -> None:
    store = make_store(tmp_path, encoder_dir, versions=4)
    history = store.history()
    assert len(history) == 4 and store.link.resolve() == Path(history[-1]["version"])
    kept = sorted(p.name for p in store.versions.iterdir())
    assert len(kept) == 2  # keep=2: the newest two, the served one among them
    previous = store.rollback()
    assert store.link.resolve() == previous and len(store.history()) == 3


def test_checkpoints_are_readable_by_other_users(tmp_path: Path, encoder_dir: Path) -> None:
    store = make_store(tmp_path, encoder_dir)
    version = store.link.resolve()
    for path in [version, *version.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o755 if path.is_dir() else 0o644), (path, oct(mode))
    assert stat.S_IMODE((version / "encoder" / "triage_manifest.json").stat().st_mode) == 0o644


def test_a_mismatched_pair_names_both_label_sets(tmp_path: Path, encoder_dir: Path) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    other = Taxonomy.from_labels(["billing", "refund"])
    Manifest("adapter", "a1", "openai/gpt-oss-20b", other.to_dict(), [], [], 1024).write(adapter)
    message = (
        r"are not a pair: the encoder labels are \[technical_issue, billing, .*\] "
        r"but the adapter labels are \[billing, refund\]"
    )
    with pytest.raises(CheckpointError, match=message):
        check_adapter_matches(encoder_dir, adapter)
    settings = Settings(encoder_path=encoder_dir, llm_backend="openai", llm_adapter_path=adapter)
    with running_server(settings) as url:
        ready = httpx.get(f"{url}/ready")
        assert ready.status_code == 503 and "not a pair" in ready.json()["error"]


def test_recalibrating_a_served_version_makes_a_new_one(tmp_path: Path, encoder_dir: Path) -> None:
    store = make_store(tmp_path, encoder_dir)
    served = store.link.resolve()
    before = digest(served)

    def change(folder: Path) -> str:
        manifest = read_manifest(folder, kind="encoder")
        manifest.extra["router"] = {"escalation_threshold": 0.3, "source": "test"}
        manifest.write(folder)
        return manifest.version

    _, written = in_new_version(store.link / "encoder", "calibrate-router", change)
    assert digest(served) == before  # the old version is untouched: a rollback really goes back
    assert store.link.resolve() == written.parent != served
    assert read_manifest(store.link / "encoder").router_threshold()[0] == 0.3
    assert store.rollback() == served


def test_a_server_keeps_its_pair_until_restarted(tmp_path: Path, encoder_dir: Path) -> None:
    store = make_store(tmp_path, encoder_dir)
    old = read_manifest(store.link / "encoder").version
    settings = Settings(encoder_path=store.link / "encoder", llm_backend="none")
    with running_server(settings) as url:

        def bump(folder: Path) -> None:
            manifest = read_manifest(folder, kind="encoder")
            manifest.version = "bumped"
            manifest.write(folder)

        in_new_version(store.link / "encoder", "test", bump)
        assert read_manifest(store.link / "encoder").version == "bumped"
        assert httpx.get(f"{url}/info").json()["encoder"]["version"] == old  # still the pair it resolved


def run_and_kill(args: list[str], delay: float) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "--log-level", "error", *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    time.sleep(delay)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


def assert_store_intact(store: VersionStore, served: Path, before: dict[str, str]) -> None:
    json.loads(store.history_file.read_text())  # valid JSON, whatever the moment of the kill
    assert digest(served) == before  # the version served before is never edited
    now = store.link.resolve()
    EncoderClassifier.load(now / "encoder", device="cpu")  # whatever is served loads
    assert now == served or now.parent == store.versions


@pytest.mark.parametrize(
    ("command", "delays"),
    [
        (["calibrate", "--data", "{data}"], (1.0, 3.0, 5.0)),
        (["calibrate-router", "--data", "{data}", "--target-escalation", "0.2"], (1.0, 3.0, 5.0)),
        (["retrain", "--data", "{data}", "--out", "{root}", "--epochs", "1", "--margin", "1", "--quiet"], (4.0, 12.0)),
    ],
)
def test_kill_9_at_any_moment_leaves_the_served_version_whole(
    tmp_path: Path, encoder_dir: Path, dataset_dir: Path, command: list[str], delays: tuple[float, ...]
) -> None:
    store = make_store(tmp_path, encoder_dir)
    served = store.link.resolve()
    before = digest(served)
    args = [a.format(data=dataset_dir, root=store.root) for a in command]
    if command[0] != "retrain":
        args += ["--encoder", str(store.link / "encoder")]
    for delay in delays:
        run_and_kill(args, delay)
        assert_store_intact(store, served, before)
        served, before = store.link.resolve(), digest(store.link.resolve())  # a kill after promotion moved it
    finished = subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=REPO, capture_output=True, timeout=300)
    assert finished.returncode == 0, finished.stderr.decode()[-2000:]
    assert_store_intact(store, served, before)
    assert store.link.resolve() != served  # an uninterrupted run does promote a new version
    assert not list(store.versions.glob(".*"))  # half-written versions of the killed runs were cleaned up
