"""``triage ablate``: what each training lever buys, measured on tickets the generator did not write.

Each variant is a dataset folder plus overrides of :class:`models.train_encoder.EncoderTrainingArgs` (tokenizer,
shape, dropout, augmentation, epochs...). Every variant is trained by ``train_encoder`` (thresholds and
temperatures fitted on the dataset's own validation split, as the build does), then scored through the serving
pipeline on one evaluation file, normally the proxy's *validation* half: the test half stays unseen until the
final report. Writes ``ablation.json``, ``ablation.md`` and ``ablation.png``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.datasets import multi_hot, read_examples
from models.errors import DataError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Variant:
    """One row of the ablation: a name, the generated dataset it trains on and its training overrides."""

    name: str
    data: Path
    overrides: dict[str, Any] = field(default_factory=dict)


def _coerce(name: str, raw: str, annotation: str) -> Any:
    if raw.lower() in ("none", "null"):
        return None
    try:
        if "bool" in annotation:
            if raw.lower() not in ("true", "false"):
                raise ValueError(raw)
            return raw.lower() == "true"
        if "int" in annotation and "float" not in annotation:
            return int(raw)
        if "float" in annotation:
            return float(raw)
    except ValueError:
        raise DataError(f"variant setting {name}={raw!r}: expected {annotation}") from None
    return raw


def parse_variant(spec: str, default_data: Path) -> Variant:
    """``name:key=value,key=value`` with keys of ``EncoderTrainingArgs`` plus ``data`` (a dataset folder)."""
    from models.train_encoder import EncoderTrainingArgs

    name, _, settings = spec.partition(":")
    if not name.strip():
        raise DataError(f"variant {spec!r}: expected name:key=value,..., found no name")
    fields = {f.name: str(f.type) for f in dataclasses.fields(EncoderTrainingArgs)}
    data, overrides = default_data, {}
    for item in filter(None, (part.strip() for part in settings.split(","))):
        key, eq, raw = item.partition("=")
        if not eq:
            raise DataError(f"variant {name!r}: expected key=value, found {item!r}")
        if key == "data":
            data = Path(raw)
        elif key in fields and key not in ("base_model", "device"):
            overrides[key] = _coerce(key, raw, fields[key])
        else:
            allowed = ", ".join(k for k in fields if k not in ("base_model", "device"))
            raise DataError(f"variant {name!r}: unknown setting {key!r}; expected data or one of {allowed}")
    return Variant(name.strip(), data, overrides)


def score_encoder(encoder_dir: Path, eval_file: Path) -> dict[str, Any]:
    """F1, exact match and mean ECE of one encoder checkpoint on a labelled file, through the serving pipeline.

    Two readings: with the checkpoint's own calibration and thresholds (fitted on generated validation data), and
    *cross-fitted* (``xfit_*``): temperatures, biases and thresholds fitted by ``calibrate_logits`` on one half of
    the file and scored on the other, both ways, pooled. The second is what the default build does (it calibrates on
    the proxy's validation half) without ever scoring on tickets it calibrated on.
    """
    from models.calibrate import calibrate_logits
    from models.calibration import apply_temperatures, mean_ece
    from models.encoder import EncoderClassifier
    from models.scoring import score
    from router.pipeline import HybridPipeline

    encoder = EncoderClassifier.load(encoder_dir)
    examples = read_examples(eval_file, encoder.taxonomy)
    labels = list(encoder.labels)
    logits = encoder.predict_texts([ex.text for ex in examples], logits=True)
    probs = apply_temperatures(logits, encoder.manifest.temperatures, encoder.manifest.biases)
    y = multi_hot([ex.labels for ex in examples], labels)

    def labelled(rows: np.ndarray, p: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
        decisions = HybridPipeline.for_taxonomy(encoder.taxonomy, thresholds).decide_batch(p[rows])
        return multi_hot([d.labels for d in decisions], labels)

    everything = np.arange(len(examples))
    scores = score(y, labelled(everything, probs, encoder.thresholds), labels)
    folds = [everything[0::2], everything[1::2]]
    predicted, calibrated = np.zeros_like(y), np.zeros_like(probs)
    for fit, held in (folds, folds[::-1]):
        temperatures, biases, thresholds, _ = calibrate_logits(logits[fit], y[fit], labels, min_positives=8)
        calibrated[held] = apply_temperatures(logits[held], temperatures, biases)
        predicted[held] = labelled(held, calibrated, thresholds)
    xfit = score(y, predicted, labels)
    return {
        "f1_micro": scores.f1_micro,
        "f1_macro": scores.f1_macro,
        "exact_match": scores.exact_match,
        "mean_ece": mean_ece(probs, y),
        "xfit_f1_micro": xfit.f1_micro,
        "xfit_f1_macro": xfit.f1_macro,
        "xfit_exact_match": xfit.exact_match,
        "xfit_mean_ece": mean_ece(calibrated, y),
        "per_label_f1": {label: scores.per_label[label]["f1"] for label in labels},
        "xfit_per_label_f1": {label: xfit.per_label[label]["f1"] for label in labels},
    }


def run_ablation(
    variants: Sequence[Variant], eval_file: Path, out: Path, progress: bool = True
) -> list[dict[str, Any]]:
    """Train and score every variant; write the table and its chart to ``out``; return the rows."""
    from models.train_encoder import EncoderTrainingArgs, train_encoder

    if not variants:
        raise DataError("no variants to run: pass at least one --variant")
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise DataError(f"variant names must be distinct, found {', '.join(names)}")
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for i, variant in enumerate(variants, 1):
        logger.info("ablation %d/%d: %s", i, len(variants), variant.name)
        if progress:
            print(f"[{i}/{len(variants)}] {variant.name}: training on {variant.data} {variant.overrides}", flush=True)
        args = EncoderTrainingArgs.for_base_model("tiny", **variant.overrides)
        encoder_dir = out / variant.name / "encoder"
        manifest = train_encoder(variant.data, encoder_dir, args, progress)
        row = {
            "name": variant.name,
            "data": str(variant.data),
            "overrides": variant.overrides,
            "train_seconds": manifest.metrics["train_seconds"],
            "best_epoch": manifest.metrics["best_epoch"],
            "generated_validation_f1_micro": manifest.metrics["validation"]["f1_micro"],
            **score_encoder(encoder_dir, eval_file),
        }
        rows.append(row)
        (out / "ablation.json").write_text(json.dumps({"eval": str(eval_file), "rows": rows}, indent=2) + "\n")
    (out / "ablation.md").write_text(render_table(rows, eval_file))
    plot_ablation(rows, out / "ablation.png")
    print(render_table(rows, eval_file))
    return rows


def render_table(rows: Sequence[dict[str, Any]], eval_file: Path) -> str:
    """The ablation as a Markdown table, with each row's change against the first."""
    first = rows[0]["f1_micro"] if rows else 0.0
    lines = [
        f"Scored on `{eval_file}`: with each run's own thresholds (fitted on its generated validation split), and "
        "cross-fitted (temperatures and thresholds fitted on one half of the file, scored on the other, both ways).",
        "",
        "| variant | settings | F1 micro | Δ vs first | F1 macro | exact | mean ECE "
        "| cross-fitted F1 micro | cross-fitted exact | cross-fitted ECE | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        settings = ", ".join(f"{k}={v}" for k, v in r["overrides"].items()) or "-"
        lines.append(
            f"| {r['name']} | `{Path(r['data']).name}` {settings} | {r['f1_micro']:.3f} | {r['f1_micro'] - first:+.3f} "
            f"| {r['f1_macro']:.3f} | {r['exact_match']:.3f} | {r['mean_ece']:.3f} | {r['xfit_f1_micro']:.3f} "
            f"| {r['xfit_exact_match']:.3f} | {r['xfit_mean_ece']:.3f} | {r['train_seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def plot_ablation(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """A horizontal bar chart of F1 micro and macro per variant."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 0.5 * len(rows) + 1.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    ax.barh(y - 0.2, [r["f1_micro"] for r in rows], height=0.4, label="F1 micro (own thresholds)")
    ax.barh(y + 0.2, [r["xfit_f1_micro"] for r in rows], height=0.4, label="F1 micro (cross-fitted calibration)")
    ax.set_yticks(y, [r["name"] for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("score on the evaluation file")
    ax.legend(loc="lower right")  # the bars end well below 1.0: the corner stays clear
    ax.set_title("Encoder ablation")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
