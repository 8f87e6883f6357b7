"""Shared LLM-tier fixtures: a tiny adapter trained in seconds. Import into a test module with
``from tests.llm_fixtures import adapter_dir  # noqa: F401``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.train_adapter import AdapterTrainingArgs, train_adapter

FAST_TINY = dict(
    epochs=1,
    tiny_pretrain_epochs=1,
    tiny_vocab_size=1000,
    tiny_hidden_size=64,
    max_train_examples=96,
    max_eval_examples=24,
    max_length=1024,
)
"""Tiny-adapter settings that train in a few seconds: every code path, no accuracy."""


@pytest.fixture(scope="session")
def adapter_dir(dataset_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    out = tmp_path_factory.mktemp("llm") / "adapter"
    train_adapter(dataset_dir, out, AdapterTrainingArgs.for_base_model("tiny", **FAST_TINY), progress=False)
    return out
