"""``triage bench-precision``: what each way of running the encoder costs in time and in answers, in one run.

Variants, all on the same checkpoint and the same ticket stream:
- ``float32 eager (stock)``: transformers' own forward, relative positions projected on every pass (the baseline);
- ``float32``, ``bfloat16``, ``int8``: triage's encoder (relative positions cached, ``models.relpos``) in each
  precision (``models.fast_path.convert``).
For each: batch-of-1 latency (median of ``repeats`` passes over different tickets), tickets/s at batch 32, and
the answers' cost against float32 in F1 points (``models.fast_path.agreement_cost``) on the agreement sample and,
when the checkpoint's dataset has one, F1 micro on its test split through the serving pipeline. The precision
``TRIAGE_DTYPE=auto`` would serve here is reported with the gate's verdict.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm


@dataclass(frozen=True)
class PrecisionBenchConfig:
    architecture: str = "checkpoint"
    encoder: Path = Path("checkpoints/default/encoder")
    data: Path = Path("data/eurochef")
    repeats: int = 20
    batch_size: int = 32
    batches: int = 4
    sample: int = 256
    tolerance: float = 0.5
    threads: int | None = None
    out: Path = Path("bench/precision.json")


def _latency_ms(encoder: Any, ids: Sequence[list[int]], repeats: int) -> float:
    encoder.predict_ids([ids[0]])
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        encoder.predict_ids([ids[i % len(ids)]])
        times.append(time.perf_counter() - start)
    return round(1000 * float(np.median(times)), 2)


def _throughput(encoder: Any, ids: Sequence[list[int]], batch_size: int, batches: int) -> float:
    chunks = [list(ids[i : i + batch_size]) for i in range(0, batch_size * batches, batch_size)]
    encoder.predict_ids(chunks[0])
    start = time.perf_counter()
    for chunk in chunks:
        encoder.predict_ids(chunk)
    return round(sum(len(c) for c in chunks) / (time.perf_counter() - start), 2)


def run_precision_bench(config: PrecisionBenchConfig, progress: bool = True) -> dict[str, Any]:
    """Measure every variant; print a table, write JSON and a PNG beside it; return the result."""
    from app.jobs.bench import load_texts, random_mdeberta_checkpoint
    from models.datasets import label_matrix, multi_hot, read_examples
    from models.encoder import EncoderClassifier
    from models.fast_path import agreement_cost, agreement_sample, convert, cpu_candidate, within_tolerance
    from models.pooling import load_classifier
    from models.scoring import score
    from router.pipeline import HybridPipeline

    if config.threads:
        torch.set_num_threads(config.threads)
    checkpoint = config.encoder
    if config.architecture == "mdeberta-v3-base":
        checkpoint = random_mdeberta_checkpoint(config.encoder)
    encoder = EncoderClassifier.load(checkpoint, device="cpu", dtype="float32")
    fp32_model = encoder.model
    sample, sample_source = agreement_sample(checkpoint, config.sample)
    stream = encoder.encode(load_texts(config.data, max(config.repeats, config.batch_size * config.batches)))
    test_path = config.data / "test.jsonl"
    test = (
        read_examples(test_path, encoder.taxonomy) if config.architecture == "checkpoint" and test_path.exists() else []
    )

    def stock() -> torch.nn.Module:
        return load_classifier(str(checkpoint), dtype=torch.float32).eval()  # no cached positions

    variants: list[tuple[str, str, Any]] = [
        ("float32 eager (stock)", "float32", stock),
        ("float32", "float32", lambda: fp32_model),
        ("bfloat16", "bfloat16", lambda: convert(copy.deepcopy(fp32_model), "bfloat16")),
        ("int8", "int8", lambda: convert(copy.deepcopy(fp32_model), "int8")),
    ]
    rows: list[dict[str, Any]] = []
    reference: np.ndarray | None = None
    for name, precision, build in tqdm(variants, desc="precisions", unit="variant", disable=not progress):
        if name.endswith("(stock)"):
            encoder.model = build()  # as transformers runs it (use_model would cache the positions)
        else:
            encoder.use_model(build(), precision)
        probs = encoder.predict_texts(sample)
        if reference is None:
            reference = probs
        row: dict[str, Any] = {
            "variant": name,
            "precision": precision,
            "batch1_ms": _latency_ms(encoder, stream, config.repeats),
            f"batch{config.batch_size}_tickets_per_s": _throughput(encoder, stream, config.batch_size, config.batches),
            "cost_f1_points": agreement_cost(reference, probs, encoder),
        }
        if test:
            pipeline = HybridPipeline.for_taxonomy(encoder.taxonomy, encoder.thresholds)
            decisions = pipeline.decide_batch(encoder.predict_texts([ex.text for ex in test]))
            predicted = multi_hot([d.labels for d in decisions], encoder.labels)
            row["test_f1_micro"] = round(
                score(label_matrix(test, encoder.labels), predicted, encoder.labels).f1_micro, 4
            )
        rows.append(row)
    base = rows[0]
    for row in rows:
        row["batch1_speedup"] = round(base["batch1_ms"] / row["batch1_ms"], 2)
        row["throughput_speedup"] = round(
            row[f"batch{config.batch_size}_tickets_per_s"] / base[f"batch{config.batch_size}_tickets_per_s"], 2
        )
        if "test_f1_micro" in row:
            row["test_f1_delta_points"] = round(100 * (row["test_f1_micro"] - base["test_f1_micro"]), 2)
    candidate = cpu_candidate()
    gate = next(r for r in rows if r["variant"] == candidate)
    result: dict[str, Any] = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "checkpoint": str(checkpoint),
        "weights": "random (speed only)" if config.architecture == "mdeberta-v3-base" else "trained",
        "threads": torch.get_num_threads(),
        "sample": {"size": len(sample), "source": sample_source},
        "test_split": {"path": str(test_path), "size": len(test)} if test else None,
        "variants": rows,
        "auto": {
            "candidate": candidate,
            "cost_f1_points": gate["cost_f1_points"],
            "served": candidate if within_tolerance(gate["cost_f1_points"], config.tolerance) else "float32",
        },
    }
    config.out.parent.mkdir(parents=True, exist_ok=True)
    config.out.write_text(json.dumps(result, indent=2) + "\n")
    plot_precision(result, config.out.with_suffix(".png"))
    print(format_precision(result))
    return result


def format_precision(result: dict[str, Any]) -> str:
    batch = result["config"]["batch_size"]
    lines = [
        f"{result['checkpoint']} ({result['weights']}), {result['threads']} threads, agreement sample "
        f"{result['sample']['size']} ({result['sample']['source']})",
        f"{'variant':<24}{'batch 1 ms':>11}{'speed-up':>10}{f'b{batch} t/s':>10}{'speed-up':>10}"
        f"{'cost F1 pts':>13}{'test F1':>9}",
    ]
    for r in result["variants"]:
        lines.append(
            f"{r['variant']:<24}{r['batch1_ms']:>11.2f}{r['batch1_speedup']:>9.2f}×"
            f"{r[f'batch{batch}_tickets_per_s']:>10.2f}{r['throughput_speedup']:>9.2f}×"
            f"{r['cost_f1_points']:>13.2f}{r.get('test_f1_micro', float('nan')):>9.4f}"
        )
    auto = result["auto"]
    lines.append(
        f"TRIAGE_DTYPE=auto here: tries {auto['candidate']} (cost {auto['cost_f1_points']:.2f}) -> {auto['served']}"
    )
    return "\n".join(lines)


def plot_precision(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["variants"]
    names = [r["variant"] for r in rows]
    batch = result["config"]["batch_size"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.bar(names, [r["batch1_ms"] for r in rows], color=["#888", "#8b8", "#2a7", "#c85"])
    left.set_ylabel("ms per ticket, batch of 1 (median)")
    right.bar(names, [r[f"batch{batch}_tickets_per_s"] for r in rows], color=["#888", "#8b8", "#2a7", "#c85"])
    right.set_ylabel(f"tickets/s, batches of {batch}")
    for axis, key in ((left, "batch1_speedup"), (right, "throughput_speedup")):
        axis.tick_params(axis="x", labelrotation=15)
        for i, r in enumerate(rows):
            axis.annotate(f"{r[key]:.2f}×", (i, 0), xytext=(0, 4), textcoords="offset points", ha="center")
    fig.suptitle(f"{result['checkpoint']} ({result['weights']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
