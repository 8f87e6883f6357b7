"""``triage evaluate``: encoder alone, LLM alone, the hybrid and an n-gram baseline on one labelled test set.

Prediction and routing go through the code the server runs: ``EncoderClassifier`` for probabilities,
``router.pipeline.HybridPipeline`` for labels, confidence, escalation and merging, and the LLM tier built from the
same ``Settings`` by ``app.server.llm_tier.build_llm``. Offline there is no traffic, so the escalation budget does
not apply; the report gives the escalation rate the threshold implies instead.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from app.server.llm_tier import build_llm
from app.server.settings import Settings
from models.datasets import Example, multi_hot, read_examples
from models.errors import DataError
from models.scoring import Scores, score
from router.pipeline import HybridPipeline, LLMAnswers, escalation_rate, resolve_merge_policy, resolve_threshold

logger = logging.getLogger(__name__)

PUBLISHED = {
    "mDeBERTa-v3-base (published)": {"f1_micro": 0.810, "f1_macro": 0.810, "exact_match": 0.354, "ms_per_ticket": 4.3},
    "GPT-OSS-20B + LoRA (published)": {"f1_micro": 0.802, "exact_match": 0.409, "ms_per_ticket": 740.0},
}
"""The published experiment's figures (1,000 synthetic EuroChef+ tickets, RTX 4090): other models, other data."""


@dataclass(frozen=True)
class EvalConfig:
    data: Path
    encoder: Path
    out: Path
    adapter: Path | None = None
    settings: Settings = field(default_factory=lambda: Settings(llm_backend="local"))
    """The server's settings object: LLM backend and quantisation, device, escalation threshold, merge policy."""
    label_map: Path | None = None
    baseline: bool = True
    baseline_data: Path | None = None
    """Dataset folder whose train/validation splits fit the n-gram baseline; default: the test file's folder.
    For a test set with no training data beside it (``evalsets/proxy``), point it at the generated data."""
    llm_batch_size: int = 16


@dataclass
class System:
    """One system's predictions on the test set."""

    name: str
    predictions: list[list[str]]
    seconds: float
    escalation_rate: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def resolve_test_file(data: Path) -> Path:
    """``data`` may be a JSONL/CSV file or a dataset folder (its ``test.jsonl``)."""
    if data.is_dir():
        for name in ("test.jsonl", "test.csv"):
            if (data / name).exists():
                return data / name
        raise DataError(f"{data}: no test.jsonl or test.csv in this folder")
    return data


def load_label_map(path: Path | None, ours: Sequence[str]) -> dict[str, str] | None:
    """``{their_label: our_label}`` from a JSON file; every target must be one of our labels."""
    if path is None:
        return None
    try:
        mapping = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read the label map ({exc}); expected a JSON object their->ours") from exc
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise DataError(f'{path}: the label map must be a JSON object of strings, e.g. {{"refund": "billing"}}')
    unknown = sorted(set(mapping.values()) - set(ours))
    if unknown:
        raise DataError(f"{path}: maps to unknown label(s) {', '.join(unknown)}; ours are {', '.join(ours)}")
    return dict(mapping)


def map_examples(examples: Sequence[Example], mapping: dict[str, str] | None) -> list[Example]:
    if mapping is None:
        return list(examples)
    return [
        Example(ex.id, ex.text, tuple(dict.fromkeys(mapping[x] for x in ex.labels if x in mapping)), ex.language)
        for ex in examples
    ]


def fixed_answers(answers: Sequence[Sequence[str]]) -> LLMAnswers:
    """The pipeline's LLM seam over answers computed once for every ticket."""
    return lambda rows: [answers[i] for i in rows]


def hybrid(
    pipeline: HybridPipeline, probs: np.ndarray, llm_labels: Sequence[Sequence[str]]
) -> tuple[list[list[str]], float]:
    """The hybrid's labels at the pipeline's threshold (the server's routing rule) and the escalation rate."""
    decisions = pipeline.run(probs, fixed_answers(llm_labels))
    return [d.labels for d in decisions], escalation_rate(decisions)


def escalation_curve(
    pipeline: HybridPipeline,
    probs: np.ndarray,
    llm_labels: Sequence[Sequence[str]],
    y: np.ndarray,
    labels: list[str],
    points: int = 41,
) -> list[dict[str, float]]:
    """Hybrid F1 micro and exact match against escalation rate, from none escalated to all.

    The thresholds are quantiles of the tickets' confidences, so the points spread evenly over escalation rates
    whatever the scale of the confidences (calibrated ones can all sit close to 0).
    """
    confidences = np.asarray([d.confidence for d in pipeline.decide_batch(probs)], dtype=np.float64)
    quantiles = np.quantile(confidences, np.linspace(0.0, 1.0, points)) if len(confidences) else np.zeros(0)
    top = float(np.nextafter(confidences.max(), np.inf)) if len(confidences) else 1.0
    curve = []
    for threshold in sorted({0.0, *(float(q) for q in quantiles), top}):
        preds, rate = hybrid(pipeline.with_threshold(float(threshold)), probs, llm_labels)
        s = score(y, multi_hot(preds, labels), labels)
        curve.append(
            {
                "threshold": round(float(threshold), 4),
                "rate": rate,
                "f1_micro": s.f1_micro,
                "exact_match": s.exact_match,
            }
        )
    return curve


def run_evaluation(config: EvalConfig, progress: bool = True) -> dict[str, Any]:
    """Score every system, write ``report.json``, ``report.md`` and PNG plots to ``config.out``; return the report."""
    from models.calibration import apply_temperatures, expected_calibration_error, plot_reliability, reliability_curve
    from models.encoder import load_for_serving

    settings = config.settings
    encoder = load_for_serving(config.encoder, **settings.encoder_options())  # the precision served
    ours = encoder.labels
    mapping = load_label_map(config.label_map, ours)
    test_file = resolve_test_file(config.data)
    examples = map_examples(read_examples(test_file, None if mapping else encoder.taxonomy), mapping)
    labels = sorted(set(mapping.values()), key=ours.index) if mapping else list(ours)
    texts = [ex.text for ex in examples]
    y = multi_hot([ex.labels for ex in examples], labels)
    threshold, threshold_source = resolve_threshold(settings.escalation_threshold, encoder.manifest.router_threshold())
    merge_policy, merge_source = resolve_merge_policy(settings.merge_policy, encoder.manifest.router_merge_policy())
    pipeline = HybridPipeline.for_taxonomy(encoder.taxonomy, encoder.thresholds, threshold, merge_policy)

    start = time.perf_counter()
    logits = encoder.predict_texts(texts, logits=True)
    enc_seconds = time.perf_counter() - start
    raw = apply_temperatures(logits, [1.0] * len(ours))
    probs = apply_temperatures(logits, encoder.manifest.temperatures, encoder.manifest.biases)
    decisions = pipeline.decide_batch(probs)
    systems = [System("encoder", [d.labels for d in decisions], enc_seconds, escalation_rate=0.0)]

    columns = [ours.index(name) for name in labels]
    y_ours = multi_hot([ex.labels for ex in examples], ours)[:, columns]
    ece_before = expected_calibration_error(raw[:, columns], y_ours)
    ece_after = expected_calibration_error(probs[:, columns], y_ours)
    config.out.mkdir(parents=True, exist_ok=True)
    plot_reliability(
        reliability_curve(raw[:, columns], y_ours),
        reliability_curve(probs[:, columns], y_ours),
        config.out / "reliability.png",
        ece_before=float(np.mean(ece_before)),
        ece_after=float(np.mean(ece_after)),
    )

    curve: list[dict[str, float]] = []
    if config.adapter is not None:
        llm_labels, llm_seconds, llm_info = _run_llm(config, texts, progress)
        llm_labels = [pipeline.llm_labels(answer) for answer in llm_labels]
        systems.append(System("llm", llm_labels, llm_seconds, escalation_rate=1.0, extra=llm_info))
        preds, rate = hybrid(pipeline, probs, llm_labels)
        hybrid_seconds = enc_seconds + rate * llm_seconds
        systems.append(System("hybrid", preds, hybrid_seconds, escalation_rate=rate))
        curve = escalation_curve(pipeline, probs, llm_labels, y, labels)
    if config.baseline:
        baseline = _run_baseline(config.baseline_data or test_file.parent, texts, ours)
        if baseline is not None:
            systems.append(baseline)

    report = build_report(config, examples, labels, y, systems, threshold, threshold_source, curve)
    report["merge_policy"], report["merge_policy_source"] = pipeline.merge_policy.spec(), merge_source
    report["calibration"] = {
        "temperatures": dict(zip(ours, encoder.manifest.temperatures, strict=True)),
        "biases": dict(zip(ours, encoder.manifest.biases or [0.0] * len(ours), strict=True)),
        "ece_before": dict(zip(labels, ece_before, strict=True)),
        "ece_after": dict(zip(labels, ece_after, strict=True)),
        "mean_ece_before": float(np.mean(ece_before)),
        "mean_ece_after": float(np.mean(ece_after)),
        "validation": encoder.manifest.metrics.get("calibration"),
    }
    report["encoder"] = {
        "version": encoder.version,
        "base_model": encoder.manifest.base_model,
        "precision": encoder.precision,
    }
    if curve:
        tiers = {name: report["overall"][name]["f1_micro"] for name in ("encoder", "llm")}
        plot_escalation_curve(curve, threshold, report["overall"]["hybrid"], config.out / "escalation_curve.png", tiers)
    plot_per_label(report, config.out / "per_label_f1.png")
    (config.out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (config.out / "report.md").write_text(render_markdown(report))
    print(render_overall(report))
    return report


def _run_llm(config: EvalConfig, texts: Sequence[str], progress: bool) -> tuple[list[list[str]], float, dict[str, Any]]:
    llm = build_llm(config.settings, adapter_path=config.adapter)
    llm.load()
    llm.warmup()
    out: list[list[str]] = []
    start = time.perf_counter()
    for i in tqdm(range(0, len(texts), config.llm_batch_size), desc="LLM", unit="batch", disable=not progress):
        out.extend(llm.classify_batch(texts[i : i + config.llm_batch_size]))
    seconds = time.perf_counter() - start
    info = llm.health()
    llm.unload()
    return out, seconds, info


def _run_baseline(folder: Path, texts: Sequence[str], labels: list[str]) -> System | None:
    """Fit the n-gram baseline on ``folder``'s train/validation splits, if there are any."""
    from models.baseline import NgramBaseline

    train, val = folder / "train.jsonl", folder / "validation.jsonl"
    if not (train.exists() and val.exists()):
        logger.info("no train.jsonl/validation.jsonl in %s: skipping the n-gram baseline (see --baseline-data)", folder)
        return None
    baseline = NgramBaseline().fit(read_examples(train), read_examples(val), labels)
    start = time.perf_counter()
    predicted = baseline.predict(texts)
    seconds = time.perf_counter() - start
    preds = [[labels[j] for j in np.flatnonzero(row)] for row in predicted]
    return System("ngram_baseline", preds, seconds, extra={"fit_seconds": round(baseline.fit_seconds, 1)})


def build_report(
    config: EvalConfig,
    examples: Sequence[Example],
    labels: list[str],
    y: np.ndarray,
    systems: Sequence[System],
    threshold: float,
    threshold_source: str,
    curve: list[dict[str, float]],
) -> dict[str, Any]:
    n = len(examples)
    overall: dict[str, dict[str, Any]] = {}
    per_language: dict[str, dict[str, float]] = {}
    per_label: dict[str, dict[str, dict[str, float]]] = {}
    languages = sorted({ex.language or "unknown" for ex in examples})
    for system in systems:
        pred = multi_hot(system.predictions, labels)
        s: Scores = score(y, pred, labels)
        overall[system.name] = {
            **s.summary(),
            "escalation_rate": system.escalation_rate,
            "ms_per_ticket": 1000 * system.seconds / max(n, 1),
            "tickets_per_s": n / system.seconds if system.seconds > 0 else math.inf,
            **system.extra,
        }
        per_label[system.name] = s.per_label
        per_language[system.name] = {}
        for language in languages:
            rows = [i for i, ex in enumerate(examples) if (ex.language or "unknown") == language]
            per_language[system.name][language] = score(y[rows], pred[rows], labels).f1_micro
    return {
        "data": str(config.data),
        "tickets": n,
        "labels": labels,
        "label_map": str(config.label_map) if config.label_map else None,
        "threshold": threshold,
        "threshold_source": threshold_source,
        "overall": overall,
        "per_language": per_language,
        "per_label": per_label,
        "escalation_curve": curve,
        "published": PUBLISHED,
    }


OVERALL_COLUMNS = (
    ("f1_micro", "F1 micro", "{:.3f}"),
    ("f1_macro", "F1 macro", "{:.3f}"),
    ("precision_micro", "precision", "{:.3f}"),
    ("recall_micro", "recall", "{:.3f}"),
    ("exact_match", "exact match", "{:.3f}"),
    ("hamming_loss", "Hamming loss", "{:.4f}"),
    ("escalation_rate", "escalated", "{:.1%}"),
    ("ms_per_ticket", "ms/ticket", "{:.2f}"),
    ("tickets_per_s", "tickets/s", "{:.0f}"),
)


def _cell(value: Any, fmt: str) -> str:
    return "–" if value is None else fmt.format(value)


def render_overall(report: dict[str, Any]) -> str:
    header = f"{'system':<16}" + "".join(f"{title:>14}" for _, title, _ in OVERALL_COLUMNS)
    rows = [
        f"{name:<16}" + "".join(f"{_cell(values.get(key), fmt):>14}" for key, _, fmt in OVERALL_COLUMNS)
        for name, values in report["overall"].items()
    ]
    return "\n".join([header, *rows])


def render_markdown(report: dict[str, Any]) -> str:
    systems = list(report["overall"])
    lines = [
        "# triage evaluation report",
        "",
        f"- data: `{report['data']}` ({report['tickets']} tickets)",
        f"- encoder: `{report['encoder']['version']}` ({report['encoder']['base_model']})",
        f"- escalation threshold: {report['threshold']:.3f} ({report['threshold_source']}); "
        f"merge policy `{report['merge_policy']}`",
        "",
        "## Overall",
        "",
        "| system | " + " | ".join(title for _, title, _ in OVERALL_COLUMNS) + " |",
        "|---|" + "---|" * len(OVERALL_COLUMNS),
    ]
    for name in systems:
        values = report["overall"][name]
        lines.append(f"| {name} | " + " | ".join(_cell(values.get(k), f) for k, _, f in OVERALL_COLUMNS) + " |")
    lines += ["", "Published figures (other models, other data: 1,000 synthetic tickets, RTX 4090):", ""]
    lines += ["| system | F1 micro | F1 macro | exact match | ms/ticket |", "|---|---|---|---|---|"]
    for name, values in report["published"].items():
        lines.append(
            f"| {name} | {_cell(values.get('f1_micro'), '{:.3f}')} | {_cell(values.get('f1_macro'), '{:.3f}')} | "
            f"{_cell(values.get('exact_match'), '{:.3f}')} | {_cell(values.get('ms_per_ticket'), '{:.1f}')} |"
        )
    languages = sorted({lang for per in report["per_language"].values() for lang in per})
    lines += ["", "## F1 micro per language", "", "| system | " + " | ".join(languages) + " |"]
    lines.append("|---|" + "---|" * len(languages))
    for name in systems:
        per = report["per_language"][name]
        lines.append(f"| {name} | " + " | ".join(f"{per.get(lang, float('nan')):.3f}" for lang in languages) + " |")
    lines += ["", "## Per label (precision / recall / F1, support)", ""]
    lines += ["| label | support | " + " | ".join(systems) + " |", "|---|---|" + "---|" * len(systems)]
    for label in report["labels"]:
        cells = []
        for name in systems:
            m = report["per_label"][name][label]
            cells.append(f"{m['precision']:.2f} / {m['recall']:.2f} / **{m['f1']:.2f}**")
        support = int(report["per_label"][systems[0]][label]["support"])
        lines.append(f"| {label} | {support} | " + " | ".join(cells) + " |")
    cal = report["calibration"]
    lines += [
        "",
        "## Calibration (encoder)",
        "",
        f"Mean expected calibration error on this data: {cal['mean_ece_before']:.4f} before calibration "
        f"(temperature and bias), {cal['mean_ece_after']:.4f} after. ![reliability](reliability.png)",
        "",
        "| label | temperature | bias | ECE before | ECE after |",
        "|---|---|---|---|---|",
    ]
    for label in report["labels"]:
        lines.append(
            f"| {label} | {cal['temperatures'][label]:.2f} | {cal['biases'][label]:+.2f} | "
            f"{cal['ece_before'][label]:.4f} | {cal['ece_after'][label]:.4f} |"
        )
    if report["escalation_curve"]:
        lines += [
            "",
            "## Escalation curve",
            "",
            "Hybrid quality against the share of tickets sent to the LLM; the marker is the configured threshold.",
            "",
            "![escalation curve](escalation_curve.png)",
        ]
    lines += ["", "![per-label F1](per_label_f1.png)", ""]
    return "\n".join(lines)


def _figure() -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5))
    FigureCanvasAgg(fig)
    return fig


def plot_escalation_curve(
    curve: list[dict[str, float]],
    threshold: float,
    chosen: dict[str, Any],
    path: Path,
    tiers: dict[str, float] | None = None,
) -> None:
    """Hybrid F1 micro and exact match against the escalation rate, the operating point in red, and each tier
    alone (``tiers``: name -> F1 micro) as a dashed line: where the curve is above both lines, the hybrid wins."""
    fig = _figure()
    ax = fig.add_subplot()
    points = sorted(curve, key=lambda p: p["rate"])
    rates = [100 * p["rate"] for p in points]
    ax.plot(rates, [p["f1_micro"] for p in points], marker=".", label="hybrid F1 micro")
    ax.plot(rates, [p["exact_match"] for p in points], marker=".", label="hybrid exact match")
    for (name, f1), style in zip((tiers or {}).items(), ("--", ":"), strict=False):
        ax.axhline(f1, color="grey", linestyle=style, linewidth=1, label=f"{name} alone: F1 {f1:.3f}")
    rate = 100 * (chosen["escalation_rate"] or 0.0)
    ax.scatter(
        [rate, rate],
        [chosen["f1_micro"], chosen["exact_match"]],
        color="red",
        zorder=5,
        label=f"threshold {threshold:.2f}: {rate:.0f}% escalated",
    )
    ax.set_xlabel("tickets escalated to the LLM (%)")
    ax.set_ylabel("score")
    ax.set_title("Hybrid quality vs escalation rate")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_per_label(report: dict[str, Any], path: Path) -> None:
    fig = _figure()
    ax = fig.add_subplot()
    labels = report["labels"]
    systems = list(report["overall"])
    width = 0.8 / max(len(systems), 1)
    for k, name in enumerate(systems):
        values = [report["per_label"][name][label]["f1"] for label in labels]
        ax.bar([i + k * width for i in range(len(labels))], values, width=width, label=name)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))], labels, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("F1")
    ax.set_title("F1 per label")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
