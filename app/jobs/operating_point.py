"""``triage calibrate-router``: choose the escalation threshold from validation data, not by guessing.

Two rules: a target escalation rate takes the quantile of the encoder's confidences (so that rate of validation
tickets falls below the threshold); a target F1 takes the smallest escalation rate whose hybrid F1 micro reaches
it (this needs the LLM's answers on the validation tickets). The threshold and its provenance are written to the
encoder manifest, where the server reads them (``TRIAGE_ESCALATION_THRESHOLD`` still overrides).

With ``arbitrate``, the LLM's answers on the validation tickets also choose, label by label, whose answer an
escalated ticket keeps (:func:`arbitrate`): the LLM's only where it beat the encoder on the low-confidence half of
the validation tickets, the tickets escalation can reach. The policy goes to the manifest beside the threshold
(``TRIAGE_MERGE_POLICY`` still overrides).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from app.jobs.evaluate import escalation_curve, hybrid
from app.server.llm_tier import build_llm
from app.server.settings import Settings
from models.calibrate import validation_examples
from models.checkpoint import read_manifest
from models.datasets import multi_hot
from models.errors import DataError
from models.scoring import score
from router.escalation import MergePolicy, Tier
from router.pipeline import HybridPipeline, resolve_merge_policy

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


ARBITRATION_MARGIN = 0.02
"""How much better (F1 on the band) another tier must do on a label before it takes the label over."""


def arbitrate(
    pipeline: HybridPipeline,
    probs: np.ndarray,
    llm_labels: list[list[str]],
    y: np.ndarray,
    band: float = 0.5,
    margin: float = ARBITRATION_MARGIN,
) -> tuple[MergePolicy, dict[str, dict[str, float]]]:
    """Per label, the tier (encoder, llm, union or agree) with the best F1 on the ``band`` least confident tickets.

    The encoder keeps a label unless another tier beats it by ``margin``: on a few hundred tickets smaller
    differences are noise. Returns the policy (default ``encoder``, one key per label that another tier takes)
    and the per-label F1 of each tier on the band.
    """
    decisions = pipeline.decide_batch(probs)
    confidences = np.asarray([d.confidence for d in decisions])
    rows = np.argsort(confidences, kind="stable")[: max(1, round(band * len(decisions)))]
    names = list(pipeline.names)
    enc = multi_hot([decisions[i].labels for i in rows], names)
    llm = multi_hot([llm_labels[i] for i in rows], names)
    tiers = {"encoder": enc, "llm": llm, "union": np.maximum(enc, llm), "agree": np.minimum(enc, llm)}
    scores = {tier: score(y[rows], pred, names).per_label for tier, pred in tiers.items()}
    table: dict[str, dict[str, float]] = {}
    per_label: dict[str, Tier] = {}
    for j, label in enumerate(names):
        f1 = {tier: per_tier[label]["f1"] for tier, per_tier in scores.items()}
        table[label] = {**f1, "support": float(y[rows, j].sum())}
        best = max(("llm", "union", "agree"), key=lambda t: f1[t])
        if f1[best] >= f1["encoder"] + margin:
            per_label[label] = cast(Tier, best)
    return MergePolicy(default="encoder", per_group=per_label), table


def calibrate_router(
    encoder_dir: Path,
    data: Path,
    target: RouterTarget,
    adapter: Path | None = None,
    settings: Settings | None = None,
    arbitrate_labels: bool = False,
) -> dict[str, Any]:
    """Pick the threshold (and, with ``arbitrate_labels``, the per-label merge policy) on validation data and store
    them in the encoder manifest; return what was chosen.

    ``settings`` is the server's settings object (LLM backend, quantisation, device, merge policy); default: the
    local backend with every other setting at its default.
    """
    from models.encoder import load_for_serving

    settings = settings or Settings(llm_backend="local")
    encoder = load_for_serving(encoder_dir, **settings.encoder_options())  # the precision served
    examples = validation_examples(data)
    merge_policy, _ = resolve_merge_policy(settings.merge_policy, (None, ""))
    pipeline = HybridPipeline.for_taxonomy(encoder.taxonomy, encoder.thresholds, merge_policy=merge_policy)
    texts = [ex.text for ex in examples]
    probs = encoder.predict_texts(texts)
    decisions = pipeline.decide_batch(probs)
    confidences = np.asarray([d.confidence for d in decisions])
    y = multi_hot([ex.labels for ex in examples], encoder.labels)
    router_extra: dict[str, Any] = {}
    llm_answers: list[list[str]] | None = None
    if arbitrate_labels:
        if adapter is None:
            raise DataError("--arbitrate needs the LLM's answers: pass --adapter DIR")
        llm_answers = [pipeline.llm_labels(x) for x in _llm_labels(settings, adapter, texts)]
        policy, table = arbitrate(pipeline, probs, llm_answers, y)
        pipeline = replace(pipeline, merge_policy=policy)
        router_extra = {
            "merge_policy": policy.spec(),
            "merge_policy_source": f"calibrate-router --arbitrate on {data}",
            "arbitration": table,
        }
    chosen: dict[str, Any]
    if target.escalation is not None:
        threshold = threshold_for_rate(confidences, target.escalation)
        source = f"calibrate-router --target-escalation {target.escalation:g}"
        chosen = {"rate": float(np.mean(confidences < threshold))}
    else:
        if adapter is None:
            raise DataError("--target-f1 needs the LLM's answers: pass --adapter DIR")
        llm_labels = llm_answers or [pipeline.llm_labels(x) for x in _llm_labels(settings, adapter, texts)]
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
        **router_extra,
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


CALIBRATION_MIN_POSITIVES = 8
"""A label with fewer positives in the calibration file shares the global temperature (220 tickets: few)."""


def calibrate_for_traffic(
    encoder_dir: Path,
    calibration: Path,
    target_escalation: float,
    adapter_dir: Path | None = None,
    min_positives: int = CALIBRATION_MIN_POSITIVES,
) -> dict[str, Any]:
    """Temperatures and thresholds, then the operating point (and, with an adapter, per-label arbitration), all on
    one labelled file that looks like traffic (the proxy's validation half): so that the configured escalation rate
    holds on real tickets. ``build-default`` and ``retrain --calibration`` both call it; returns the router choice."""
    from models.calibrate import calibrate_checkpoint

    calibrate_checkpoint(encoder_dir, calibration, min_positives=min_positives)
    has_adapter = adapter_dir is not None and (adapter_dir / "triage_manifest.json").exists()
    return calibrate_router(
        encoder_dir,
        calibration,
        RouterTarget(escalation=target_escalation),
        adapter=adapter_dir if has_adapter else None,
        arbitrate_labels=has_adapter,
    )
