"""The encoder tier: a multi-label sequence classifier loaded from a checkpoint, kept hot for batched inference.

Seam used by the server, the evaluation and the benchmark alike: ``load`` -> ``warmup`` -> ``encode`` (text to
token ids) -> ``predict_ids`` (a padded batch to sigmoid probabilities) -> ``health``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from transformers import AutoTokenizer, PreTrainedModel

from models.checkpoint import Manifest, read_manifest
from models.device import resolve_device, resolve_dtype
from models.errors import CheckpointError, HardwareError, ModelError
from models.fast_path import DEFAULT_SAMPLE_SIZE, DEFAULT_TOLERANCE, PrecisionChoice, choose_precision
from models.pooling import load_classifier
from models.relpos import cache_relative_positions
from models.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

Probs = NDArray[np.float32]


def pad_batch(batch: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token-id lists to the longest: (input_ids, attention_mask), both (n, width) long tensors."""
    width = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, ids in enumerate(batch):
        input_ids[row, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
        mask[row, : len(ids)] = 1
    return input_ids, mask


class EncoderClassifier:
    """A loaded encoder checkpoint on one device."""

    def __init__(
        self, model: PreTrainedModel, tokenizer: Any, manifest: Manifest, device: torch.device, dtype: torch.dtype
    ) -> None:
        self.model = model.eval()
        cache_relative_positions(self.model)
        self.tokenizer = tokenizer
        self.manifest = manifest
        self.device = device
        self.dtype = dtype
        self.taxonomy = Taxonomy.from_dict(manifest.taxonomy)
        self.labels = self.taxonomy.names
        self.thresholds = list(manifest.thresholds)
        self.max_length = manifest.max_length
        self._temperatures = torch.tensor(manifest.temperatures, dtype=torch.float32)
        self._biases = torch.tensor(manifest.biases or [0.0] * len(self.labels), dtype=torch.float32)
        self._pad_id = int(tokenizer.pad_token_id)
        self.warmed_up = False
        self.load_seconds = 0.0
        self.precision = "bfloat16" if dtype == torch.bfloat16 else "float32"
        self.precision_choice: PrecisionChoice | None = None

    def use_model(self, model: torch.nn.Module, precision: str) -> None:
        """Serve ``model`` (these weights in another precision: ``models.fast_path.convert``) from now on."""
        self.model = model.eval()
        cache_relative_positions(self.model)  # again: the projections in the new precision
        self.precision = precision
        self.dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", dtype: str = "auto") -> EncoderClassifier:
        """Load weights, tokenizer and manifest; raise CheckpointError/HardwareError with a fix in the message."""
        start = time.perf_counter()
        manifest = read_manifest(path, kind="encoder")
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path))
            model = load_classifier(str(path), dtype=dt)  # the pooling its config.json names
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot load encoder weights or tokenizer from {path}: {exc}") from exc
        if model.config.num_labels != len(manifest.thresholds):
            raise CheckpointError(
                f"{path}: model has {model.config.num_labels} outputs but the manifest lists "
                f"{len(manifest.thresholds)} labels"
            )
        model.to(dev)
        encoder = cls(model, tokenizer, manifest, dev, dt)
        encoder.load_seconds = time.perf_counter() - start
        logger.info(
            "encoder loaded version=%s device=%s dtype=%s labels=%d in %.2fs",
            manifest.version,
            dev,
            dt,
            len(encoder.labels),
            encoder.load_seconds,
        )
        return encoder

    @property
    def version(self) -> str:
        return self.manifest.version

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, truncated to the checkpoint's max length (special tokens included)."""
        out = self.tokenizer(list(texts), truncation=True, max_length=self.max_length, add_special_tokens=True)
        return [list(ids) for ids in out["input_ids"]]

    def predict_ids(self, batch: Sequence[Sequence[int]]) -> Probs:
        """Pad one batch of token-id lists, run one forward pass, return (n, labels) calibrated probabilities."""
        logits = torch.from_numpy(self.logits_ids(batch))
        return torch.sigmoid(logits / self._temperatures + self._biases).numpy()

    @torch.inference_mode()
    def logits_ids(self, batch: Sequence[Sequence[int]]) -> Probs:
        """Raw (uncalibrated) logits for one padded batch, as float32 (n, labels)."""
        if not batch:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        input_ids, mask = pad_batch(batch, self._pad_id)
        try:
            logits = self.model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device)).logits
        except torch.OutOfMemoryError as exc:
            raise ModelError(
                f"out of memory on {self.device} for a batch of {len(batch)} x {mask.shape[1]} tokens"
            ) from exc
        return logits.float().cpu().numpy()

    def predict_texts(self, texts: Sequence[str], batch_size: int = 64, logits: bool = False) -> Probs:
        """Offline use: encode and predict in length-sorted batches, in input order.

        Calibrated probabilities by default; ``logits=True`` gives the raw logits (what calibration is fitted on).
        """
        ids = self.encode(texts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        run = self.logits_ids if logits else self.predict_ids
        out = np.zeros((len(ids), len(self.labels)), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            out[chunk] = run([ids[i] for i in chunk])
        return out

    def warmup(self, batch_sizes: Sequence[int] = (1, 8)) -> None:
        """Run a few forward passes so the first real request does not pay for lazy initialisation."""
        sample = self.encode(["warm-up ticket: the app crashes when I open a recipe"])[0]
        for size in batch_sizes:
            self.predict_ids([sample] * size)
        self.warmed_up = True

    def measure_batch_overhead(self, shapes: Sequence[tuple[int, int]] = ((1, 16), (1, 64), (4, 64), (8, 32))) -> float:
        """The fixed cost of one forward pass, in tokens: what the batcher weighs against padding.

        Times a forward pass at each (batch, length) shape (best of two) and fits ``seconds = fixed + per_token *
        batch * length``; returns ``fixed / per_token``. Large for small models (Python overhead dominates: fill
        batches; launch overhead should do the same on GPUs), smaller for big models on CPUs (about 100 tokens for
        mDeBERTa-base on 2 cores: keep long tickets apart from short ones).
        """
        sample = self.encode(["warm-up ticket: the app crashes when I open a recipe, error E-1234 on my TV"])[0]
        points = []
        for size, length in shapes:
            length = min(length, self.max_length)
            ids = (sample[:-1] * (length // max(1, len(sample) - 1) + 1))[: length - 1] + sample[-1:]
            seconds = []
            for _ in range(2):
                start = time.perf_counter()
                self.predict_ids([ids] * size)
                seconds.append(time.perf_counter() - start)
            points.append((size * length, min(seconds)))
        tokens, times = np.asarray(points, dtype=np.float64).T
        per_token, fixed = np.polyfit(tokens, times, 1)
        overhead = float(fixed / per_token) if per_token > 0 else float("inf")
        return float(np.clip(overhead, 0.0, 16_384.0))

    def health(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "base_model": self.manifest.base_model,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "precision": self.precision,
            "fast_path": self.precision_choice.as_dict() if self.precision_choice else None,
            "warmed_up": self.warmed_up,
            "parameters": sum(p.numel() for p in self.model.parameters()),
        }


def load_for_serving(
    path: str | Path,
    device: str,
    dtype: str,
    threads: int | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
) -> EncoderClassifier:
    """Load an encoder for the server in the precision ``dtype`` resolves to (``models.fast_path``), warmed up.

    ``threads``: CPU threads for inference (default torch's); ``tolerance`` and ``sample_size``: the fast path's
    agreement gate.
    """
    if threads:
        torch.set_num_threads(threads)
    on_cpu = resolve_device(device).type == "cpu"
    if dtype == "int8" and not on_cpu:
        raise HardwareError("TRIAGE_DTYPE=int8 runs on the CPU only; on a GPU use auto or bfloat16")
    load_dtype = "float32" if dtype in ("auto", "int8") and on_cpu else dtype  # the fast path starts from float32
    encoder = EncoderClassifier.load(path, device=device, dtype=load_dtype)
    encoder.precision_choice = choose_precision(encoder, dtype, path, tolerance, sample_size)
    encoder.warmup()
    return encoder
