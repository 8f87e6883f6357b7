"""Multi-label metrics and threshold tuning over 0/1 matrices. Pure numpy, shared by training and evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Matrix = NDArray[np.float64] | NDArray[np.float32] | NDArray[np.int_] | NDArray[np.bool_]


def _f1(tp: float, fp: float, fn: float) -> float:
    denom = 2 * tp + fp + fn
    return float(2 * tp / denom) if denom else 0.0


@dataclass(frozen=True)
class Scores:
    f1_micro: float
    f1_macro: float
    precision_micro: float
    recall_micro: float
    exact_match: float
    hamming_loss: float
    per_label: dict[str, dict[str, float]]

    def summary(self) -> dict[str, float]:
        return {
            "f1_micro": self.f1_micro,
            "f1_macro": self.f1_macro,
            "precision_micro": self.precision_micro,
            "recall_micro": self.recall_micro,
            "exact_match": self.exact_match,
            "hamming_loss": self.hamming_loss,
        }


def score(y_true: Matrix, y_pred: Matrix, names: list[str]) -> Scores:
    """Micro/macro F1, micro precision/recall, exact match and Hamming loss for (n, labels) 0/1 arrays.

    Macro F1 averages over labels that occur in ``y_true`` or ``y_pred`` (a label absent from both is skipped,
    as it carries no evidence either way).
    """
    t = np.asarray(y_true).astype(bool)
    p = np.asarray(y_pred).astype(bool)
    if t.shape != p.shape or t.ndim != 2 or t.shape[1] != len(names):
        raise ValueError(f"shapes differ: y_true {t.shape}, y_pred {p.shape}, {len(names)} names")
    tp = (t & p).sum(axis=0).astype(float)
    fp = (~t & p).sum(axis=0).astype(float)
    fn = (t & ~p).sum(axis=0).astype(float)
    per_label: dict[str, dict[str, float]] = {}
    f1s = []
    for i, name in enumerate(names):
        prec = tp[i] / (tp[i] + fp[i]) if tp[i] + fp[i] else 0.0
        rec = tp[i] / (tp[i] + fn[i]) if tp[i] + fn[i] else 0.0
        f1 = _f1(tp[i], fp[i], fn[i])
        per_label[name] = {"precision": float(prec), "recall": float(rec), "f1": f1, "support": float(t[:, i].sum())}
        if tp[i] + fp[i] + fn[i]:
            f1s.append(f1)
    ttp, tfp, tfn = tp.sum(), fp.sum(), fn.sum()
    n = max(len(t), 1)
    return Scores(
        f1_micro=_f1(ttp, tfp, tfn),
        f1_macro=float(np.mean(f1s)) if f1s else 0.0,
        precision_micro=float(ttp / (ttp + tfp)) if ttp + tfp else 0.0,
        recall_micro=float(ttp / (ttp + tfn)) if ttp + tfn else 0.0,
        exact_match=float((t == p).all(axis=1).sum() / n),
        hamming_loss=float((t != p).sum() / (n * max(len(names), 1))),
        per_label=per_label,
    )


def tune_thresholds(
    y_true: Matrix, probs: Matrix, grid: NDArray[np.float64] | None = None, default: float = 0.5
) -> list[float]:
    """Per-label threshold maximising that label's F1 on held-out data; ``default`` for labels without positives."""
    t = np.asarray(y_true).astype(bool)
    p = np.asarray(probs, dtype=np.float64)
    grid = np.round(np.arange(0.05, 0.96, 0.05), 2) if grid is None else grid
    thresholds = []
    for i in range(t.shape[1]):
        if not t[:, i].any():
            thresholds.append(default)
            continue
        best, best_f1 = default, -1.0
        for g in grid:
            pred = p[:, i] >= g
            f1 = _f1(float((pred & t[:, i]).sum()), float((pred & ~t[:, i]).sum()), float((~pred & t[:, i]).sum()))
            # prefer the threshold closest to 0.5 among ties, to stay robust on small validation sets
            if f1 > best_f1 + 1e-12 or (abs(f1 - best_f1) <= 1e-12 and abs(g - 0.5) < abs(best - 0.5)):
                best, best_f1 = float(g), f1
        thresholds.append(best)
    return thresholds
