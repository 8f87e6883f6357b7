"""``triage retrain``: train, calibrate, choose the operating point, evaluate, and promote only if not worse.

Layout under ``--out`` (e.g. ``checkpoints/``)::

    versions/<version>/encoder      candidate checkpoints (kept for rollback)
    versions/<version>/adapter      (with --with-adapter)
    versions/<version>/report/      its evaluation report and comparison.md
    default -> versions/<version>   the served pointer (a symlink switched atomically); the server's default
                                    TRIAGE_ENCODER_PATH is checkpoints/default/encoder
    history.json                    every promotion, newest last

The candidate is compared with the current version on the same test split; it is promoted when its metric is
at least the current one minus ``margin``. A server started afterwards serves the promoted version.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.jobs.evaluate import EvalConfig, run_evaluation
from app.jobs.operating_point import RouterTarget, calibrate_router
from models.checkpoint import read_manifest
from models.errors import DataError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainConfig:
    data: Path
    out: Path = Path("checkpoints")
    pointer: str = "default"
    base_model: str = "tiny"
    with_adapter: bool = False
    adapter_base_model: str = "tiny"
    metric: str = "f1_micro"
    margin: float = 0.0
    target_escalation: float = 0.15
    epochs: int | None = None
    seed: int = 0


def switch_pointer(link: Path, target: Path) -> None:
    """Point ``link`` at ``target`` atomically (a new symlink renamed over the old one)."""
    tmp = link.with_name(f".{link.name}.switch-{os.getpid()}")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(os.path.relpath(target, link.parent), tmp)
    os.replace(tmp, link)


def adopt_current(out: Path, pointer: str) -> Path | None:
    """The version folder the pointer serves; a plain folder (from ``build-default``) is moved under versions/."""
    link = out / pointer
    if link.is_symlink():
        return link.resolve()
    if not link.exists():
        return None
    version = read_manifest(link / "encoder", kind="encoder").version
    target = out / "versions" / version
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(link, target)
    switch_pointer(link, target)
    logger.info("moved %s to %s and made %s a pointer to it", link, target, link)
    return target


def _stage(number: int, total: int, name: str) -> float:
    logger.info("retrain stage %d/%d: %s", number, total, name)
    print(f"[{number}/{total}] {name}", flush=True)
    return time.perf_counter()


def retrain(config: RetrainConfig, progress: bool = True) -> dict[str, Any]:
    """Run every stage; return the decision (promoted or not, both metrics, paths)."""
    from models.train_encoder import EncoderTrainingArgs, train_encoder

    if not (config.data / "test.jsonl").exists():
        raise DataError(f"{config.data}: retrain compares versions on test.jsonl, which this folder lacks")
    current = adopt_current(config.out, config.pointer)
    version = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    candidate = config.out / "versions" / version
    total = 5 if config.with_adapter else 4
    stage = 0
    timings: dict[str, float] = {}

    stage += 1
    started = _stage(stage, total, "train-encoder (with temperature scaling and thresholds on validation)")
    args = EncoderTrainingArgs.for_base_model(config.base_model, epochs=config.epochs, seed=config.seed)
    train_encoder(config.data, candidate / "encoder", args, progress=progress)
    timings["train_encoder"] = time.perf_counter() - started
    adapter = None
    if config.with_adapter:
        from models.train_adapter import AdapterTrainingArgs, train_adapter

        stage += 1
        started = _stage(stage, total, "train-adapter")
        adapter_args = AdapterTrainingArgs.for_base_model(config.adapter_base_model, seed=config.seed)
        train_adapter(config.data, candidate / "adapter", adapter_args, progress=progress)
        adapter = candidate / "adapter"
        timings["train_adapter"] = time.perf_counter() - started

    stage += 1
    started = _stage(stage, total, f"calibrate-router (target escalation {config.target_escalation:.0%})")
    calibrate_router(candidate / "encoder", config.data, RouterTarget(escalation=config.target_escalation))
    timings["calibrate_router"] = time.perf_counter() - started

    stage += 1
    started = _stage(stage, total, "evaluate candidate and current on the same test split")
    test = config.data / "test.jsonl"
    cand_report = run_evaluation(
        EvalConfig(data=test, encoder=candidate / "encoder", adapter=adapter, out=candidate / "report", baseline=False),
        progress=progress,
    )
    cur_report = None
    if current is not None:
        cur_adapter = current / "adapter" if adapter is not None and (current / "adapter").exists() else None
        cur_report = run_evaluation(
            EvalConfig(
                data=test,
                encoder=current / "encoder",
                adapter=cur_adapter,
                out=candidate / "report-current",
                baseline=False,
            ),
            progress=progress,
        )
    timings["evaluate"] = time.perf_counter() - started

    stage += 1
    _stage(stage, total, "compare and promote")
    system = (
        "hybrid" if adapter is not None and cur_report is not None and "hybrid" in cur_report["overall"] else "encoder"
    )
    cand_value = float(cand_report["overall"][system][config.metric])
    cur_value = None if cur_report is None else float(cur_report["overall"][system][config.metric])
    promote = cur_value is None or cand_value >= cur_value - config.margin
    decision = {
        "candidate": str(candidate),
        "current": str(current) if current else None,
        "system": system,
        "metric": config.metric,
        "margin": config.margin,
        "candidate_value": cand_value,
        "current_value": cur_value,
        "promoted": promote,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if promote:
        switch_pointer(config.out / config.pointer, candidate)
        history_file = config.out / "history.json"
        history = json.loads(history_file.read_text()) if history_file.exists() else []
        history.append(decision)
        history_file.write_text(json.dumps(history, indent=2) + "\n")
    (candidate / "comparison.md").write_text(render_comparison(decision, cand_report, cur_report))
    verdict = "PROMOTED" if promote else "REFUSED (kept the current version)"
    shown = "none" if cur_value is None else f"{cur_value:.4f}"
    print(f"{verdict}: {config.metric} {cand_value:.4f} vs current {shown}")
    if not promote:
        logger.info("candidate kept at %s for inspection; delete it with: rm -r %s", candidate, candidate)
    return decision


def render_comparison(decision: dict[str, Any], candidate: dict[str, Any], current: dict[str, Any] | None) -> str:
    system = decision["system"]
    rows = ["f1_micro", "f1_macro", "precision_micro", "recall_micro", "exact_match", "hamming_loss", "ms_per_ticket"]
    lines = [
        "# Retrain comparison",
        "",
        f"- decision: **{'promoted' if decision['promoted'] else 'refused'}** "
        f"({decision['metric']} of the {system}, margin {decision['margin']})",
        f"- candidate: `{decision['candidate']}`",
        f"- current: `{decision['current']}`",
        f"- at: {decision['at']}",
        "",
        "| metric | candidate | current | Δ |",
        "|---|---|---|---|",
    ]
    for key in rows:
        cand = candidate["overall"][system][key]
        cur = current["overall"][system][key] if current else None
        delta = "" if cur is None else f"{cand - cur:+.4f}"
        lines.append(f"| {key} | {cand:.4f} | {'–' if cur is None else f'{cur:.4f}'} | {delta} |")
    return "\n".join(lines) + "\n"


def rollback(out: Path, pointer: str = "default") -> Path:
    """Point back at the version served before the last promotion."""
    history_file = out / "history.json"
    history = json.loads(history_file.read_text()) if history_file.exists() else []
    if not history or not history[-1].get("current"):
        raise DataError(f"{history_file}: no earlier version to roll back to")
    last = history.pop()
    previous = Path(last["current"])
    if not (previous / "encoder").exists():
        raise DataError(f"previous version {previous} is gone; nothing to roll back to")
    switch_pointer(out / pointer, previous)
    history_file.write_text(json.dumps(history, indent=2) + "\n")
    return previous
