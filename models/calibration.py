"""Post-hoc calibration of multi-label sigmoid outputs: per-label temperature scaling, ECE and reliability plots.

Temperatures are fitted on **raw logits**, i.e. the logits the encoder produces before its checkpoint's
temperatures are applied. ``EncoderClassifier.predict_ids`` returns ``sigmoid(logits / T)`` with the manifest's
temperatures ``T``, so either serve a checkpoint whose temperatures are all 1.0 while collecting validation
outputs, or undo them with ``probs_to_logits(probs, temperatures=manifest.temperatures)``. The fitted
``CalibrationResult.temperatures`` then go into ``Manifest.temperatures``.

Pure numpy; matplotlib is imported only by :func:`plot_reliability`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

logger = logging.getLogger(__name__)

T_MIN = 0.05
"""Smallest temperature the fit may return."""
T_MAX = 20.0
"""Largest temperature the fit may return."""

_GRID_POINTS = 97  # log-spaced grid over [T_MIN, T_MAX] before the golden-section refinement
_REFINE_STEPS = 40  # golden-section steps: the bracket shrinks by 0.618**40, far below any useful precision

ReliabilityCurve = tuple[list[float], list[float], list[int]]
"""(mean predicted probability, observed positive rate, count) per bin; NaN rates for empty bins."""


@dataclass(frozen=True)
class CalibrationResult:
    """The outcome of :func:`fit_temperatures`.

    ``temperatures[i]`` is the temperature for label ``i``; ``per_label[i]`` says whether it was fitted on that
    label alone (True) or is the shared ``global_temperature`` (False). ``nll_before`` and ``nll_after`` are the
    mean binary cross-entropy over every (row, label) entry at temperature 1 and at the fitted temperatures.
    """

    temperatures: list[float]
    per_label: list[bool]
    global_temperature: float
    nll_before: float
    nll_after: float


def _as_pair(scores: ArrayLike, y: ArrayLike, what: str) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Check and convert a (rows, labels) score matrix and its 0/1 label matrix."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(y, dtype=np.float64)
    if s.ndim == 1:
        s = s[:, None]
    if t.ndim == 1:
        t = t[:, None]
    if s.ndim != 2 or s.shape != t.shape:
        raise ValueError(
            f"{what} and y must be (rows, labels) matrices of the same shape; found {what} {np.shape(scores)} "
            f"and y {np.shape(y)}"
        )
    if s.shape[0] == 0 or s.shape[1] == 0:
        raise ValueError(f"{what} is empty (shape {s.shape}); pass at least one row and one label")
    if not np.isfinite(s).all():
        bad = int((~np.isfinite(s)).sum())
        raise ValueError(f"{what} has {bad} NaN or infinite value(s); clip or drop those rows first")
    if not np.isin(t, (0.0, 1.0)).all():
        found = np.unique(t[~np.isin(t, (0.0, 1.0))])[:5]
        raise ValueError(f"y must hold only 0 and 1 (a multi-hot label matrix); found values such as {found}")
    return s, t


def _sigmoid(z: NDArray[np.float64]) -> NDArray[np.float64]:
    # the tanh form never overflows, unlike 1 / (1 + exp(-z)) for very negative z
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)), dtype=np.float64)


def _nll(z: NDArray[np.float64], y: NDArray[np.float64], temperature: float) -> float:
    """Mean binary cross-entropy of ``sigmoid(z / temperature)``, computed stably from logits."""
    scaled = z / temperature
    return float(np.mean(np.logaddexp(0.0, scaled) - y * scaled))


def _fit_one(z: NDArray[np.float64], y: NDArray[np.float64]) -> float:
    """The temperature in [T_MIN, T_MAX] minimising the NLL of ``sigmoid(z / T)`` on 1-D data.

    The NLL is convex in 1/T, hence unimodal in log T: a log-spaced grid finds the bracket of the minimum and a
    golden-section search refines it.
    """
    if not y.any() or y.all():
        # one class only: the NLL keeps falling towards a bound, which would be an artefact, not a calibration
        return 1.0
    grid = np.geomspace(T_MIN, T_MAX, _GRID_POINTS)
    losses = [_nll(z, y, float(t)) for t in grid]
    best = int(np.argmin(losses))
    lo = math.log(grid[max(best - 1, 0)])
    hi = math.log(grid[min(best + 1, len(grid) - 1)])
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = _nll(z, y, math.exp(a)), _nll(z, y, math.exp(b))
    for _ in range(_REFINE_STEPS):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = _nll(z, y, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = _nll(z, y, math.exp(b))
    refined = math.exp((lo + hi) / 2.0)
    temperature = refined if _nll(z, y, refined) <= losses[best] else float(grid[best])
    return float(min(max(temperature, T_MIN), T_MAX))


def fit_temperatures(logits: ArrayLike, y: ArrayLike, min_positives: int = 20) -> CalibrationResult:
    """Fit per-label temperatures for multi-label sigmoid outputs on validation data.

    ``logits`` are raw logits (temperature 1), shape (rows, labels); ``y`` the matching 0/1 label matrix. Each
    temperature ``T`` minimises the binary cross-entropy of ``sigmoid(logit / T)`` and lies in [0.05, 20].

    Which temperature a label gets:

    - a label with at least ``min_positives`` positives **and** at least ``min_positives`` negatives in ``y`` gets
      its own temperature, fitted on its column alone (``per_label[i]`` is True);
    - every other label gets the shared global temperature (``per_label[i]`` is False), fitted on the entries of
      all those labels pooled together;
    - if there are no such labels, or their pooled entries themselves hold fewer than ``min_positives`` positives
      or negatives (too little evidence), the global temperature is fitted on every entry of every label instead;
    - data with no positives at all (or no negatives at all) carries no calibration signal and gets T = 1.0.

    T > 1 softens over-confident predictions; T < 1 sharpens under-confident ones. Temperature scaling never
    changes the ranking of a label's predictions, but it moves probabilities across fixed thresholds, so re-tune
    decision thresholds on the calibrated probabilities.
    """
    if isinstance(min_positives, bool) or not isinstance(min_positives, int) or min_positives < 1:
        raise ValueError(f"min_positives must be a positive integer, found {min_positives!r}")
    z, t = _as_pair(logits, y, "logits")
    positives = t.sum(axis=0)
    negatives = t.shape[0] - positives
    own = (positives >= min_positives) & (negatives >= min_positives)

    rare = ~own
    pooled_pos = float(positives[rare].sum())
    pooled_neg = float(negatives[rare].sum())
    if rare.any() and pooled_pos >= min_positives and pooled_neg >= min_positives:
        global_temperature = _fit_one(z[:, rare].ravel(), t[:, rare].ravel())
        source = f"{int(rare.sum())} pooled label(s)"
    else:
        global_temperature = _fit_one(z.ravel(), t.ravel())
        source = "all labels"

    temperatures = [_fit_one(z[:, i], t[:, i]) if own[i] else global_temperature for i in range(z.shape[1])]
    nll_before = _nll(z, t, 1.0)
    nll_after = _nll(z / np.asarray(temperatures), t, 1.0)
    logger.info(
        "temperatures: %d label(s) fitted alone, %d share T=%.3f (fitted on %s); NLL %.4f -> %.4f",
        int(own.sum()),
        int(rare.sum()),
        global_temperature,
        source,
        nll_before,
        nll_after,
    )
    return CalibrationResult(
        temperatures=[float(x) for x in temperatures],
        per_label=[bool(x) for x in own],
        global_temperature=float(global_temperature),
        nll_before=nll_before,
        nll_after=nll_after,
    )


def probs_to_logits(probs: ArrayLike, eps: float = 1e-6, temperatures: Sequence[float] | None = None) -> np.ndarray:
    """Invert the sigmoid: ``log(p / (1 - p))`` with ``p`` clipped to [eps, 1 - eps].

    Calibration must be fitted on raw logits, i.e. on probabilities computed at temperature 1. If ``probs`` come
    from a checkpoint whose manifest already has temperatures other than 1, pass them as ``temperatures`` to undo
    them (the result is multiplied by each label's temperature). Clipping bounds the logits at about ±13.8 for the
    default ``eps``, which loses nothing for float32 probabilities.
    """
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), found {eps!r}")
    p = np.asarray(probs, dtype=np.float64)
    if p.size and (np.isnan(p).any() or p.min() < 0.0 or p.max() > 1.0):
        raise ValueError("probs must be probabilities in [0, 1] without NaN; are these logits already?")
    p = np.clip(p, eps, 1.0 - eps)
    logits = np.log(p) - np.log1p(-p)
    if temperatures is not None:
        logits = logits * _check_temperatures(temperatures, logits)
    return logits


def _check_temperatures(temperatures: Sequence[float], logits: NDArray[np.float64]) -> NDArray[np.float64]:
    temps = np.asarray(temperatures, dtype=np.float64)
    labels = logits.shape[-1] if logits.ndim else 0
    if temps.ndim != 1 or len(temps) != labels:
        raise ValueError(f"expected one temperature per label ({labels}); found {temps.size} temperature(s)")
    if not (np.isfinite(temps).all() and (temps > 0).all()):
        raise ValueError(f"temperatures must be finite and > 0; found {temps.tolist()}")
    return temps


def apply_temperatures(
    logits: ArrayLike, temperatures: Sequence[float], biases: Sequence[float] | None = None
) -> np.ndarray:
    """Calibrated probabilities ``sigmoid(logits / T + b)``, one temperature (and bias) per label (the last
    axis); no biases means zeros."""
    z = np.asarray(logits, dtype=np.float64)
    scaled = z / _check_temperatures(temperatures, z)
    if biases:
        b = np.asarray(biases, dtype=np.float64)
        if b.shape != (scaled.shape[-1],) or not np.isfinite(b).all():
            raise ValueError(f"expected one finite bias per label ({scaled.shape[-1]}); found {b.tolist()}")
        scaled = scaled + b
    return _sigmoid(scaled)


BIAS_LIMIT = 8.0
BIAS_RIDGE = 1e-3
"""The bias of a label with one class only in the data would run off to infinity: a small ridge holds it."""


def fit_biases(
    logits: ArrayLike, y: ArrayLike, temperatures: Sequence[float], ridge: float = BIAS_RIDGE
) -> list[float]:
    """Per label, the bias ``b`` minimising the cross-entropy of ``sigmoid(logit / T + b)`` (plus ``ridge * b**2``).

    Temperature scaling sharpens or softens but cannot move a label's base rate: a model trained with a positive
    class weight, or on data whose label frequencies differ from traffic, predicts a label too often at every
    confidence. The bias corrects that shift (temperature + bias is Platt scaling). Newton's method on a convex
    1-D problem; the result is clipped to ``±BIAS_LIMIT``.
    """
    z, t = _as_pair(logits, y, "logits")
    scaled = z / _check_temperatures(temperatures, z)
    biases = []
    for i in range(scaled.shape[1]):
        b = 0.0
        for _ in range(50):
            p = _sigmoid(scaled[:, i] + b)
            grad = float(np.mean(p - t[:, i])) + 2 * ridge * b
            hess = float(np.mean(p * (1 - p))) + 2 * ridge
            step = grad / hess
            b = float(np.clip(b - step, -BIAS_LIMIT, BIAS_LIMIT))
            if abs(step) < 1e-8:
                break
        biases.append(b)
    return biases


def _bin_index(p: NDArray[np.float64], bins: int) -> NDArray[np.intp]:
    # equal-width bins over [0, 1]; p == 1.0 falls in the last bin
    return np.minimum((p * bins).astype(np.intp), bins - 1)


def _check_probs(probs: ArrayLike, y: ArrayLike, bins: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive integer, found {bins!r}")
    p, t = _as_pair(probs, y, "probs")
    if p.min() < 0.0 or p.max() > 1.0:
        raise ValueError(
            f"probs must lie in [0, 1], found values in [{p.min():.3g}, {p.max():.3g}]; "
            "convert logits with apply_temperatures first"
        )
    return p, t


def expected_calibration_error(probs: ArrayLike, y: ArrayLike, bins: int = 10) -> list[float]:
    """Per-label expected calibration error with ``bins`` equal-width bins over [0, 1].

    For each label: the mean over bins of |observed positive rate − mean predicted probability|, weighted by the
    fraction of rows in the bin. Confidence is the predicted probability of the positive class.
    """
    p, t = _check_probs(probs, y, bins)
    n = p.shape[0]
    out = []
    for i in range(p.shape[1]):
        idx = _bin_index(p[:, i], bins)
        counts = np.bincount(idx, minlength=bins)
        conf = np.bincount(idx, weights=p[:, i], minlength=bins)
        acc = np.bincount(idx, weights=t[:, i], minlength=bins)
        # sum over bins of (n_b / n) * |acc_b / n_b - conf_b / n_b| = sum |acc_sum - conf_sum| / n
        out.append(float(np.abs(acc - conf)[counts > 0].sum() / n))
    return out


def mean_ece(probs: ArrayLike, y: ArrayLike, bins: int = 10) -> float:
    """The unweighted mean over labels of :func:`expected_calibration_error`."""
    return float(np.mean(expected_calibration_error(probs, y, bins)))


def reliability_curve(probs: ArrayLike, y: ArrayLike, bins: int = 10) -> ReliabilityCurve:
    """Points of a reliability diagram, pooled over all labels: per equal-width bin, the mean predicted
    probability, the observed positive rate and the number of (row, label) entries. Empty bins have NaN means
    and a count of 0.
    """
    p, t = _check_probs(probs, y, bins)
    flat_p, flat_t = p.ravel(), t.ravel()
    idx = _bin_index(flat_p, bins)
    counts = np.bincount(idx, minlength=bins)
    conf = np.bincount(idx, weights=flat_p, minlength=bins)
    acc = np.bincount(idx, weights=flat_t, minlength=bins)
    safe = np.maximum(counts, 1)
    mean_pred = np.where(counts > 0, conf / safe, np.nan)
    observed = np.where(counts > 0, acc / safe, np.nan)
    return [float(x) for x in mean_pred], [float(x) for x in observed], [int(c) for c in counts]


def _pooled_ece(curve: ReliabilityCurve) -> float:
    mean_pred, observed, counts = curve
    total = sum(counts)
    if not total:
        return float("nan")
    return sum(c * abs(o - m) for m, o, c in zip(mean_pred, observed, counts, strict=True) if c) / total


def plot_reliability(
    before: ReliabilityCurve,
    after: ReliabilityCurve,
    path: Path,
    *,
    ece_before: float | None = None,
    ece_after: float | None = None,
    title: str = "Reliability (pooled over labels)",
) -> None:
    """Write a PNG reliability diagram: the diagonal, the ``before`` and ``after`` curves from
    :func:`reliability_curve`, and each curve's ECE in the legend.

    Pass ``ece_before`` / ``ece_after`` (e.g. from :func:`mean_ece`) to show the mean per-label ECE; without them
    the legend shows the ECE of the pooled curve itself.
    """
    # an explicit Agg canvas: no pyplot, so the caller's global matplotlib backend and figure list are untouched
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    for name, curve in (("before", before), ("after", after)):
        if len(curve) != 3 or not len(curve[0]) == len(curve[1]) == len(curve[2]):
            raise ValueError(f"{name} must be a (mean predicted, observed, counts) tuple from reliability_curve()")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(5, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    for name, curve, ece, style in (
        ("before", before, ece_before, "o-"),
        ("after", after, ece_after, "s-"),
    ):
        kind = "mean ECE" if ece is not None else "pooled ECE"
        value = ece if ece is not None else _pooled_ece(curve)
        points = [(m, o) for m, o, c in zip(*curve, strict=True) if c > 0]
        xs, ys = [m for m, _ in points], [o for _, o in points]
        ax.plot(xs, ys, style, markersize=4, label=f"{name} ({kind} {value:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed positive rate")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, format="png")
    logger.info("reliability diagram written to %s", path)
