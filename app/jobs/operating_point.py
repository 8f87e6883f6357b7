"""``triage calibrate-router``: choose the escalation threshold from validation data, not by guessing.

Two rules: a target escalation rate takes the quantile of the encoder's confidences (so that rate of validation
tickets falls below the threshold); a target F1 takes the smallest escalation rate whose hybrid F1 micro reaches
it (this needs the LLM's answers on the validation tickets). The threshold and its provenance are written to the
encoder manifest, where the server reads them (``TRIAGE_ESCALATION_THRESHOLD`` still overrides).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.jobs.evaluate import escalation_curve, hybrid
from app.server.llm_tier import build_llm
from app.server.settings import Settings
from models.calibrate import validation_examples
from models.checkpoint import read_manifest
from models.datasets import multi_hot
from models.errors import DataError
from models.scoring import score
from router.pipeline import HybridPipeline

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RouterTarget:
    escalation: float | None = None
    f1: float | None = None

    def __post_init__(self) -> None:
        if (self.escalation is None) == (self.f1 is None):
            raise DataError("give exactly one target: --target-escalation RATE or --target-f1 F1")
        if self.escalation is not None and not 0.0 <= self.escalation <= 1.0:
            raise DataError(f"--target-escalation must be in [0, 1], found {self.escalation}")
        if self.f1 is not None and not 0.0 < self.f1 <= 1.0:
            raise DataError(f"--target-f1 must be in (0, 1], found {self.f1}")


def threshold_for_rate(confidences: np.ndarray, rate: float) -> float:
    """The threshold below which ``rate`` of the confidences fall (escalation is ``confidence < threshold``)."""
    values = np.sort(np.asarray(confidences, dtype=np.float64))
    k = round(rate * len(values))
    if k <= 0:
        return 0.0
    if k >= len(values):
        return float(np.nextafter(values[-1], np.inf))
    return float((values[k - 1] + values[k]) / 2) if values[k - 1] < values[k] else float(values[k])


def calibrate_router(
    encoder_dir: Path,
    data: Path,
    target: RouterTarget,
    adapter: Path | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Pick the threshold on validation data and store it in the encoder manifest; return what was chosen.

    ``settings`` is the server's settings object (LLM backend, quantisation, device, merge policy); default: the
    local backend with every other setting at its default.
    """
    from models.encoder import EncoderClassifier

    settings = settings or Settings(llm_backend="local")
    encoder = EncoderClassifier.load(encoder_dir, device=settings.device)
    examples = validation_examples(data)
    pipeline = HybridPipeline.for_taxonomy(encoder.taxonomy, encoder.thresholds, merge_policy=settings.merge_policy)
    texts = [ex.text for ex in examples]
    probs = encoder.predict_texts(texts)
    decisions = pipeline.decide_batch(probs)
    confidences = np.asarray([d.confidence for d in decisions])
    y = multi_hot([ex.labels for ex in examples], encoder.labels)
    chosen: dict[str, Any]
    if target.escalation is not None:
        threshold = threshold_for_rate(confidences, target.escalation)
        source = f"calibrate-router --target-escalation {target.escalation:g}"
        chosen = {"rate": float(np.mean(confidences < threshold))}
    else:
        if adapter is None:
            raise DataError("--target-f1 needs the LLM's answers: pass --adapter DIR")
        llm_labels = [pipeline.llm_labels(x) for x in _llm_labels(settings, adapter, texts)]
        curve = escalation_curve(pipeline, probs, llm_labels, y, encoder.labels, points=101)
        reaching = sorted((p for p in curve if p["f1_micro"] >= (target.f1 or 0.0)), key=lambda p: p["rate"])
        if reaching:
            point = reaching[0]
        else:
            point = max(curve, key=lambda p: p["f1_micro"])
            logger.warning("no threshold reaches F1 %.3f; taking the best (%.3f)", target.f1, point["f1_micro"])
        threshold = point["threshold"]
        source = f"calibrate-router --target-f1 {target.f1:g}"
        chosen = {"rate": point["rate"], "reached": bool(reaching)}
        preds, _ = hybrid(pipeline.with_threshold(threshold), probs, llm_labels)
        chosen["f1_micro"] = score(y, multi_hot(preds, encoder.labels), encoder.labels).f1_micro
    router = {
        "escalation_threshold": threshold,
        "source": f"{source} on {data}",
        "validation_tickets": len(examples),
        "validation_escalation_rate": chosen["rate"],
        "chosen": chosen,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    manifest = read_manifest(encoder_dir, kind="encoder")
    manifest.extra["router"] = router
    manifest.write(Path(encoder_dir))
    logger.info("escalation threshold %.4f (%s)", threshold, router["source"])
    return router


def _llm_labels(settings: Settings, adapter: Path, texts: list[str]) -> list[list[str]]:
    llm = build_llm(settings, adapter_path=adapter)
    llm.load()
    try:
        out: list[list[str]] = []
        for i in range(0, len(texts), 16):
            out.extend(llm.classify_batch(texts[i : i + 16]))
        return out
    finally:
        llm.unload()
