"""Calibration of an encoder checkpoint (temperature + bias per label) and re-tuning of its thresholds on the
calibrated probabilities.

Used at the end of ``train_encoder``, by ``triage calibrate`` and by the default build (on the proxy's validation
half): all call ``calibrate_logits`` so the rule is written once. The fitted temperatures, biases and thresholds
go into the checkpoint manifest, which the server applies.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from models.calibration import apply_temperatures, expected_calibration_error, fit_biases, fit_temperatures
from models.checkpoint import Manifest, read_manifest
from models.datasets import Example, label_matrix, read_examples
from models.errors import DataError
from models.scoring import tune_thresholds

logger = logging.getLogger(__name__)


def calibrate_logits(
    logits: np.ndarray, y: np.ndarray, labels: list[str], min_positives: int = 20
) -> tuple[list[float], list[float], list[float], dict[str, Any]]:
    """Fit temperatures and biases on validation logits, re-tune thresholds on the calibrated probabilities.

    Temperatures minimise cross-entropy (see ``fit_temperatures``); then a per-label bias moves each label's base
    rate (see ``fit_biases``: temperature + bias is Platt scaling). Each step is kept for a label only if it lowers
    that label's expected calibration error on the same data, so calibration never makes a label's ECE worse.
    Returns (temperatures, biases, thresholds, report); the report holds ECE per label before (temperature 1, no
    bias) and after, their means, the NLL before/after and which labels got their own temperature.
    """
    result = fit_temperatures(logits, y, min_positives=min_positives)
    before = apply_temperatures(logits, [1.0] * len(labels))
    ece_before = expected_calibration_error(before, y)
    fitted_ece = expected_calibration_error(apply_temperatures(logits, result.temperatures), y)
    temperatures = [
        t if fitted < unscaled else 1.0
        for t, fitted, unscaled in zip(result.temperatures, fitted_ece, ece_before, strict=True)
    ]
    scaled_ece = expected_calibration_error(apply_temperatures(logits, temperatures), y)
    fitted_biases = fit_biases(logits, y, temperatures)
    biased_ece = expected_calibration_error(apply_temperatures(logits, temperatures, fitted_biases), y)
    biases = [
        b if biased < scaled else 0.0 for b, biased, scaled in zip(fitted_biases, biased_ece, scaled_ece, strict=True)
    ]
    after = apply_temperatures(logits, temperatures, biases)
    thresholds = tune_thresholds(y, after)
    ece_after = expected_calibration_error(after, y)
    t = np.asarray(y, dtype=np.float64)
    nll_after = float(np.mean(-(t * np.log(np.clip(after, 1e-12, 1)) + (1 - t) * np.log(np.clip(1 - after, 1e-12, 1)))))
    report = {
        "rows": len(y),
        "min_positives": min_positives,
        "global_temperature": result.global_temperature,
        "own_temperature": [name for name, own in zip(labels, result.per_label, strict=True) if own],
        "kept_temperature_1": [name for name, t in zip(labels, temperatures, strict=True) if t == 1.0],
        "biases": dict(zip(labels, biases, strict=True)),
        "nll_before": result.nll_before,
        "nll_after": nll_after,
        "mean_ece_before": float(np.mean(ece_before)),
        "mean_ece_after": float(np.mean(ece_after)),
        "ece_before": dict(zip(labels, ece_before, strict=True)),
        "ece_after": dict(zip(labels, ece_after, strict=True)),
    }
    return temperatures, biases, thresholds, report


def validation_examples(data: str | Path) -> list[Example]:
    """A validation file, or a dataset folder's ``validation.jsonl``."""
    path = Path(data)
    if path.is_dir():
        path = path / "validation.jsonl"
        if not path.exists():
            raise DataError(f"{data}: no validation.jsonl in this folder; pass the file itself")
    return read_examples(path)


def calibrate_checkpoint(encoder_dir: str | Path, data: str | Path, min_positives: int = 20) -> Manifest:
    """``triage calibrate``: refit temperatures and thresholds of a checkpoint on validation data, in place."""
    from models.encoder import EncoderClassifier

    manifest = read_manifest(encoder_dir, kind="encoder")
    encoder = EncoderClassifier.load(encoder_dir)
    examples = validation_examples(data)
    labels = encoder.labels
    unknown = sorted({x for ex in examples for x in ex.labels} - set(labels))
    if unknown:
        raise DataError(f"{data}: label(s) {', '.join(unknown)} are not in the checkpoint's taxonomy")
    logits = encoder.predict_texts([ex.text for ex in examples], logits=True)
    temperatures, biases, thresholds, report = calibrate_logits(
        logits, label_matrix(examples, labels), labels, min_positives
    )
    report["data"] = str(data)
    manifest.temperatures, manifest.biases, manifest.thresholds = temperatures, biases, thresholds
    manifest.metrics["calibration"] = report
    manifest.write(Path(encoder_dir))
    logger.info(
        "calibrated %s: mean ECE %.4f -> %.4f", encoder_dir, report["mean_ece_before"], report["mean_ece_after"]
    )
    return manifest
