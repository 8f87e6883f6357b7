"""A checkpoint folder as a plain transformers sequence classifier, for the peers that run their own Python.

Texts in, a sigmoid score per label out, one padded forward pass per call: what a user of BentoML, Ray Serve or a
hand-written FastAPI server would write around ``AutoModelForSequenceClassification``. The model class is
:func:`models.pooling.load_classifier`'s: the stock one for a stock checkpoint (the random mDeBERTa-v3-base), the
mean-pooling class for the tiny default, whose config.json names it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer

from models.pooling import load_classifier


def max_length(checkpoint: Path, tokenizer: Any) -> int:
    """Where triage truncates: the manifest's ``max_length``, else the tokenizer's own limit (at most 512)."""
    manifest = checkpoint / "triage_manifest.json"
    if manifest.exists():
        return int(json.loads(manifest.read_text())["max_length"])
    return int(min(tokenizer.model_max_length, 512))


class Classifier:
    """One model on the CPU, in ``dtype``, with ``threads`` intra-op threads when given."""

    def __init__(self, checkpoint: Path, dtype: str = "float32", threads: int | None = None) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
        self.model = load_classifier(str(checkpoint), dtype=getattr(torch, dtype)).eval()
        config = self.model.config
        self.labels = [str(config.id2label[i]) for i in range(config.num_labels)]
        self.max_length = max_length(checkpoint, self.tokenizer)

    @torch.inference_mode()
    def scores(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """Sigmoid scores per label for each text, in order (one forward pass, padded to the longest)."""
        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        probs = torch.sigmoid(self.model(**batch).logits.float())
        return [dict(zip(self.labels, row, strict=True)) for row in probs.tolist()]
