"""The CPU fast path (models/fast_path.py): precision chosen by the hardware, kept only when its answers agree."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from models.encoder import EncoderClassifier, load_for_serving
from models.fast_path import SAMPLE_FILE, agreement_cost, agreement_sample, native_bf16

needs_bf16 = pytest.mark.skipif(not native_bf16(), reason="this CPU has no native bf16 (avx512_bf16 or AMX)")


@pytest.fixture(scope="module")
def fp32_probs(encoder_dir: Path) -> np.ndarray:
    texts, _ = agreement_sample(encoder_dir)
    return EncoderClassifier.load(encoder_dir, device="cpu", dtype="float32").predict_texts(texts)


def test_training_writes_the_agreement_sample_the_gate_reads(encoder_dir: Path) -> None:
    texts, source = agreement_sample(encoder_dir)
    assert source == str(encoder_dir / SAMPLE_FILE)
    assert 0 < len(texts) <= 256 and all(isinstance(t, str) and t for t in texts)
    _, fallback = agreement_sample(encoder_dir.parent / "no-such-checkpoint", n=50)
    assert fallback.startswith("generated")


def test_agreement_cost_counts_changed_answers(encoder_dir: Path, fp32_probs: np.ndarray) -> None:
    encoder = EncoderClassifier.load(encoder_dir, device="cpu", dtype="float32")
    assert agreement_cost(fp32_probs, fp32_probs, encoder) == 0.0
    assert agreement_cost(fp32_probs, np.zeros_like(fp32_probs), encoder) == 100.0  # nothing answered
    flipped = fp32_probs.copy()
    flipped[:10] = 1.0 - flipped[:10]  # ten tickets answered differently
    few = agreement_cost(fp32_probs, flipped, encoder)
    flipped[:100] = 1.0 - fp32_probs[:100]
    assert 0.0 < few < agreement_cost(fp32_probs, flipped, encoder) < 100.0


@needs_bf16
def test_auto_on_this_cpu_serves_bf16_when_it_agrees(encoder_dir: Path, fp32_probs: np.ndarray) -> None:
    encoder = load_for_serving(encoder_dir, "cpu", "auto")
    choice = encoder.precision_choice
    assert choice is not None and choice.served == "bfloat16" and choice.candidate == "bfloat16"
    assert choice.cost_f1_points is not None and choice.cost_f1_points <= choice.tolerance_f1_points  # type: ignore[operator]
    assert choice.sample_source.endswith(SAMPLE_FILE) and choice.sample_size == len(fp32_probs)
    assert {p.dtype for p in encoder.model.parameters()} == {torch.bfloat16}
    assert encoder.health()["precision"] == "bfloat16"
    texts, _ = agreement_sample(encoder_dir)
    assert agreement_cost(fp32_probs, encoder.predict_texts(texts), encoder) == choice.cost_f1_points


def test_a_fast_path_over_tolerance_is_refused_and_fp32_served_unchanged(
    encoder_dir: Path, fp32_probs: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="models.fast_path"):
        encoder = load_for_serving(encoder_dir, "cpu", "auto", tolerance=-1.0)  # nothing can pass
    choice = encoder.precision_choice
    assert choice is not None and choice.served == "float32" and "refused" in choice.reason
    assert "refused" in caplog.text and "serving float32" in caplog.text
    assert {p.dtype for p in encoder.model.parameters()} == {torch.float32}
    texts, _ = agreement_sample(encoder_dir)
    np.testing.assert_array_equal(encoder.predict_texts(texts), fp32_probs)  # the original weights, not a round trip


def test_explicit_precisions_are_served_as_asked(encoder_dir: Path, fp32_probs: np.ndarray) -> None:
    texts, _ = agreement_sample(encoder_dir)
    int8 = load_for_serving(encoder_dir, "cpu", "int8")
    choice = int8.precision_choice
    assert int8.precision == "int8" and choice is not None and choice.cost_f1_points is None
    assert not any(type(m) is torch.nn.Linear for m in int8.model.modules())  # every linear layer quantised
    assert np.abs(int8.predict_texts(texts) - fp32_probs).max() < 0.1
    fp32 = load_for_serving(encoder_dir, "cpu", "float32")
    assert fp32.precision == "float32"
    np.testing.assert_array_equal(fp32.predict_texts(texts), fp32_probs)


@needs_bf16
def test_info_and_metrics_show_the_precision_served(server: str) -> None:
    encoder = httpx.get(f"{server}/info").json()["encoder"]
    assert encoder["precision"] == "bfloat16" and encoder["dtype"] == "bfloat16"
    assert encoder["fast_path"]["requested"] == "auto" and encoder["fast_path"]["served"] == "bfloat16"
    metrics = httpx.get(f"{server}/metrics").text
    assert 'precision="bfloat16"' in next(line for line in metrics.splitlines() if line.startswith("triage_model_info"))
