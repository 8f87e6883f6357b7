"""End-to-end build of the embedded default (minutes): run with `make test-slow`."""

from pathlib import Path

import pytest

from app.cli import build_default
from models.checkpoint import read_manifest
from models.encoder import EncoderClassifier


@pytest.mark.slow
def test_build_default_end_to_end(tmp_path: Path) -> None:
    assert build_default(tmp_path / "data", tmp_path / "ckpt", True, n=4000, seed=0, progress=False, adapter=False)
    manifest = read_manifest(tmp_path / "ckpt" / "encoder", kind="encoder")
    # the generated data is learnable: a floor far above chance, not a tuned target
    assert manifest.metrics["test"]["f1_micro"] > 0.7
    assert manifest.metrics["test_heldout"]["f1_micro"] > 0.5
    encoder = EncoderClassifier.load(tmp_path / "ckpt" / "encoder")
    probs = encoder.predict_texts(["I was charged twice, refund me now!"])
    assert probs[0][encoder.labels.index("billing")] > encoder.thresholds[encoder.labels.index("billing")]
