"""End-to-end build of the embedded default (minutes): run with `make test-slow`."""

from pathlib import Path

import pytest

from app.cli import DEFAULT_BUILD_N, DEFAULT_CALIBRATION, build_default
from models.checkpoint import read_manifest
from models.encoder import EncoderClassifier


@pytest.mark.slow
def test_build_default_end_to_end(tmp_path: Path) -> None:
    data, checkpoints = tmp_path / "data", tmp_path / "ckpt"
    assert build_default(data, checkpoints, True, n=DEFAULT_BUILD_N, seed=0, progress=False, adapter=False)
    manifest = read_manifest(checkpoints / "encoder", kind="encoder")
    # the generated data is learnable: a floor far above chance, not a tuned target
    assert manifest.metrics["test"]["f1_micro"] > 0.5
    assert manifest.metrics["test_heldout"]["f1_micro"] > 0.4
    # calibrated on tickets people wrote (the proxy's validation half), the escalation threshold stored
    assert manifest.metrics["calibration"]["data"] == str(DEFAULT_CALIBRATION)
    assert manifest.metrics["calibration"]["mean_ece_after"] < manifest.metrics["calibration"]["mean_ece_before"]
    assert manifest.router_threshold()[0] is not None
    encoder = EncoderClassifier.load(checkpoints / "encoder")
    probs = encoder.predict_texts(["I was charged twice, refund me now!"])
    assert probs[0][encoder.labels.index("billing")] > encoder.thresholds[encoder.labels.index("billing")]
