"""The CPU fast path: which precision the encoder is served in, chosen by the hardware and kept only if it agrees.

``TRIAGE_DTYPE=auto`` on a CPU tries a faster precision than fp32: bf16 where the CPU computes it natively
(avx512_bf16 or AMX: about twice fp32's speed), int8 dynamic quantisation of the linear layers where it does not.
Before serving it, ``choose_precision`` runs the checkpoint's agreement sample through both fp32 and the candidate
and compares the decisions the server would answer (thresholds and taxonomy rules applied): the cost is
``100 × (1 − F1 micro of the candidate's labels against fp32's)``, in F1 points. A candidate whose cost exceeds
the tolerance (``TRIAGE_FAST_PATH_TOLERANCE``, 0.5 points) is refused with a log line and fp32 is served; the
decision, with its figures, is in ``/info``. An explicit ``float32``, ``bfloat16`` or ``int8`` is served as asked
(no gate: the operator chose). On CUDA ``auto`` is bf16, as before.

The agreement sample is ``agreement_sample.jsonl`` in the checkpoint (written by ``train-encoder``: validation
tickets), else tickets from the generator with a fixed seed.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import gc
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from models.datasets import multi_hot
from models.errors import HardwareError
from models.scoring import score

if TYPE_CHECKING:
    from models.encoder import EncoderClassifier

logger = logging.getLogger(__name__)

Precision = Literal["float32", "bfloat16", "int8"]
SAMPLE_FILE = "agreement_sample.jsonl"
DEFAULT_SAMPLE_SIZE = 256
DEFAULT_TOLERANCE = 0.5
"""F1 points (micro, against fp32's own decisions) the fast path may cost before it is refused."""


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (avx512_bf16 or AMX tiles); without it bf16 is emulated, slowly."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def cpu_candidate() -> Precision:
    """The precision ``auto`` tries on this CPU."""
    return "bfloat16" if native_bf16() else "int8"


@dataclass(frozen=True)
class PrecisionChoice:
    """What was asked, what is served and why; ``cost_f1_points`` is None when no gate ran."""

    requested: str
    served: Precision
    reason: str
    candidate: Precision | None = None
    cost_f1_points: float | None = None
    tolerance_f1_points: float | None = None
    sample_size: int = 0
    sample_source: str = ""
    float32_seconds: float | None = None
    candidate_seconds: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def agreement_cost(reference: np.ndarray, candidate: np.ndarray, encoder: EncoderClassifier) -> float:
    """F1 points the candidate's served labels lose against the reference's: ``100 × (1 − F1 micro)``.

    Both are (n, labels) calibrated probabilities; the encoder's pipeline (thresholds, taxonomy rules) turns them
    into the labels the server would answer. Two empty answers agree; the score counts only labels given.
    """
    from router.pipeline import HybridPipeline

    pipeline = HybridPipeline.for_taxonomy(encoder.taxonomy, encoder.thresholds)
    ref = multi_hot([d.labels for d in pipeline.decide_batch(reference)], encoder.labels)
    cand = multi_hot([d.labels for d in pipeline.decide_batch(candidate)], encoder.labels)
    if not ref.any() and not cand.any():
        return 0.0
    return round(100.0 * (1.0 - score(ref, cand, list(encoder.labels)).f1_micro), 3)


def within_tolerance(cost: float, tolerance: float) -> bool:
    """The gate's rule: a candidate is kept when its agreement cost is at most the tolerance (F1 points)."""
    return cost <= tolerance


def agreement_sample(checkpoint: str | Path, n: int = DEFAULT_SAMPLE_SIZE) -> tuple[list[str], str]:
    """Up to ``n`` ticket texts to compare precisions on, and where they came from."""
    path = Path(checkpoint) / SAMPLE_FILE
    if path.exists():
        texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if texts:
            return texts[:n], str(path)
    from models.generate import generate_splits

    splits = generate_splits(max(n, 40), seed=1234)
    texts = [ex.text for split in ("validation", "test", "train") for ex in splits[split]]
    return texts[:n], "generated (seed 1234)"


def write_agreement_sample(folder: Path, texts: Sequence[str], n: int = DEFAULT_SAMPLE_SIZE) -> None:
    """Store ``n`` texts (evenly spread over ``texts``) in a checkpoint folder for the start-up gate."""
    step = max(1, len(texts) // n)
    lines = [json.dumps({"text": t}, ensure_ascii=False) for t in list(texts)[::step][:n]]
    (folder / SAMPLE_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")


def convert(model: torch.nn.Module, precision: Precision) -> torch.nn.Module:
    """``model`` (fp32, on the CPU for int8) in ``precision``: cast to bf16, or int8 dynamic quantisation of every
    ``nn.Linear`` (weights int8, activations quantised per batch; embeddings and norms stay fp32)."""
    if precision == "float32":
        return model.to(torch.float32)
    if precision == "bfloat16":
        return model.to(torch.bfloat16)
    if next(model.parameters()).device.type != "cpu":
        raise HardwareError("int8 dynamic quantisation runs on the CPU only; on a GPU use bfloat16")
    import warnings

    with warnings.catch_warnings():  # torch.ao's dynamic quantisation is deprecated in favour of torchao
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def choose_precision(
    encoder: EncoderClassifier,
    requested: str,
    checkpoint: str | Path,
    tolerance: float = DEFAULT_TOLERANCE,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
) -> PrecisionChoice:
    """Put ``encoder`` (loaded in fp32 when ``requested`` is auto on a CPU) in the precision to serve; say why.

    ``auto`` on a CPU: the candidate of :func:`cpu_candidate`, kept when its agreement cost on the sample is within
    ``tolerance`` F1 points. Anything else: as loaded (``EncoderClassifier.load`` resolved it).
    """
    if requested == "int8":
        encoder.use_model(convert(encoder.model, "int8"), "int8")
        return PrecisionChoice(requested, "int8", "as configured")
    if requested != "auto" or encoder.device.type != "cpu":
        served: Precision = "bfloat16" if encoder.dtype == torch.bfloat16 else "float32"
        return PrecisionChoice(requested, served, "as configured" if requested != "auto" else f"{served} on CUDA")
    candidate = cpu_candidate()
    texts, source = agreement_sample(checkpoint, sample_size)
    reference, float32_seconds = _timed_predict(encoder, texts)
    original = encoder.model
    encoder.use_model(convert(copy.deepcopy(original), candidate), candidate)
    probs, candidate_seconds = _timed_predict(encoder, texts)
    cost = agreement_cost(reference, probs, encoder)
    why = "native bf16 on this CPU" if candidate == "bfloat16" else "no native bf16 on this CPU"
    if not within_tolerance(cost, tolerance):
        logger.warning(
            "fast path %s refused: it costs %.2f F1 points against float32 on %d tickets (tolerance %.2f); "
            "serving float32",
            candidate,
            cost,
            len(texts),
            tolerance,
        )
        encoder.use_model(original, "float32")
        release_memory()  # the refused copy
        served = "float32"
        reason = f"{candidate} refused: costs {cost:.2f} F1 points > {tolerance:.2f}"
    else:
        logger.info(
            "fast path %s: %s, costs %.2f F1 points against float32 on %d tickets (tolerance %.2f)",
            candidate,
            why,
            cost,
            len(texts),
            tolerance,
        )
        served = candidate
        reason = f"{why}; agreement within tolerance"
        del original
        release_memory()  # the float32 weights compared against: not held for the server's lifetime
    return PrecisionChoice(
        requested, served, reason, candidate, cost, tolerance, len(texts), source, float32_seconds, candidate_seconds
    )


def release_memory() -> None:
    """Free what is no longer referenced and hand the allocator's free pages back to the OS (glibc keeps freed
    parameter-sized blocks in its heap otherwise: the discarded float32 copy would stay in the server's RSS)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _timed_predict(encoder: EncoderClassifier, texts: Sequence[str]) -> tuple[np.ndarray, float]:
    """Probabilities for ``texts`` and the seconds they took after one warm batch (reported, not gated on: the
    machines are noisy and a served precision should not depend on a timing)."""
    encoder.predict_texts(texts[:16])
    start = time.perf_counter()
    probs = encoder.predict_texts(texts)
    return probs, round(time.perf_counter() - start, 3)
