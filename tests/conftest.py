"""Shared fixtures: a small generated dataset, a tiny encoder trained on it, and real servers on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from app.server.main import create_app
from app.server.settings import Settings
from models.generate import write_generated_dataset
from models.train_encoder import EncoderTrainingArgs, train_encoder
from tests.servers import serve_asgi


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "eurochef"
    write_generated_dataset(out, n=800, seed=1, progress=False)
    return out


@pytest.fixture(scope="session")
def encoder_dir(dataset_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny encoder trained briefly: good enough to exercise every code path, not to be accurate."""
    out = tmp_path_factory.mktemp("ckpt") / "encoder"
    args = EncoderTrainingArgs.for_base_model("tiny", epochs=3, tiny_vocab_size=2000, max_length=128)
    train_encoder(dataset_dir, out, args, progress=False)
    return out


@contextmanager
def running_server(settings: Settings, wait_ready: bool = True) -> Iterator[str]:
    """A real triage server (uvicorn, loopback) for ``settings``; waits until the encoder has loaded."""
    with serve_asgi(create_app(settings)) as url:
        deadline = time.monotonic() + 60
        while wait_ready and httpx.get(f"{url}/ready").json()["status"] == "loading":
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become ready")
            time.sleep(0.05)
        yield url


@pytest.fixture(scope="module")
def server(encoder_dir: Path) -> Iterator[str]:
    with running_server(Settings(encoder_path=encoder_dir, max_wait_ms=20, llm_backend="none")) as url:
        yield url
