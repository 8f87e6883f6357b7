"""``triage retrain``: train, calibrate, choose the operating point, evaluate, and promote only if not worse.

Versions live in a ``models.store.VersionStore`` under ``--out`` (e.g. ``checkpoints/``)::

    versions/<version>/encoder      candidate checkpoints (kept for rollback: the newest ``--keep`` and the served)
    versions/<version>/adapter      trained with --with-adapter on the served adapter's base model, else the
                                    served adapter carried forward unchanged: a promotion never drops the LLM tier
    versions/<version>/report/      its evaluation report and comparison.md
    default -> versions/<version>   the served pointer (a symlink switched atomically); the server's default
                                    TRIAGE_ENCODER_PATH is checkpoints/default/encoder
    history.json                    every promotion, newest last

The candidate is built beside ``versions/`` and appears there whole; it is compared with the current version on
the same test split and promoted when its metric is at least the current one minus ``margin``. A running server
keeps serving the pair it resolved at start-up until it is restarted.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.jobs.evaluate import EvalConfig, run_evaluation
from app.jobs.operating_point import RouterTarget, calibrate_for_traffic, calibrate_router
from app.server.settings import Settings
from models.checkpoint import read_manifest
from models.errors import DataError
from models.store import DEFAULT_KEEP, VersionStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainConfig:
    data: Path
    out: Path = Path("checkpoints")
    pointer: str = "default"
    base_model: str = "tiny"
    with_adapter: bool = False
    adapter_base_model: str | None = None
    """Base model of a retrained adapter; default: the served adapter's base (``tiny`` when none is served)."""
    metric: str = "f1_micro"
    margin: float = 0.0
    target_escalation: float = 0.15
    calibration: Path | None = None
    """Labelled tickets that look like traffic: temperatures, thresholds and the operating point are fitted on them
    (``calibrate_for_traffic``), so the candidate's escalation rate holds on real tickets; None: the generated
    validation split (thresholds from training, the operating point on it)."""
    epochs: int | None = None
    seed: int = 0
    keep: int = DEFAULT_KEEP


def _stage(number: int, total: int, name: str) -> float:
    logger.info("retrain stage %d/%d: %s", number, total, name)
    print(f"[{number}/{total}] {name}", flush=True)
    return time.perf_counter()


def adapter_base(config: RetrainConfig, current: Path | None) -> str:
    """The base model a retrained adapter uses: the flag, else the served adapter's, else the tiny one."""
    if config.adapter_base_model:
        return config.adapter_base_model
    if current is not None and (current / "adapter" / "triage_manifest.json").exists():
        return read_manifest(current / "adapter", kind="adapter").base_model
    return "tiny"


def retrain(config: RetrainConfig, progress: bool = True) -> dict[str, Any]:
    """Run every stage; return the decision (promoted or not, both metrics, paths)."""
    from models.train_encoder import EncoderTrainingArgs, train_encoder

    if config.calibration is not None and not config.calibration.is_file():
        raise DataError(f"{config.calibration}: the calibration file does not exist")
    if not (config.data / "test.jsonl").exists():
        raise DataError(f"{config.data}: retrain compares versions on test.jsonl, which this folder lacks")
    store = VersionStore(config.out, config.pointer, keep=config.keep)
    current = store.served()
    total = 5 if config.with_adapter else 4
    stage = 0
    timings: dict[str, float] = {}
    with store.new_version() as (building, candidate):
        stage += 1
        started = _stage(stage, total, "train-encoder (with temperature scaling and thresholds on validation)")
        args = EncoderTrainingArgs.for_base_model(config.base_model, epochs=config.epochs, seed=config.seed)
        train_encoder(config.data, building / "encoder", args, progress=progress)
        timings["train_encoder"] = time.perf_counter() - started
        if config.with_adapter:
            from models.train_adapter import AdapterTrainingArgs, train_adapter

            stage += 1
            base = adapter_base(config, current)
            started = _stage(stage, total, f"train-adapter (base {base})")
            adapter_args = AdapterTrainingArgs.for_base_model(base, seed=config.seed)
            train_adapter(config.data, building / "adapter", adapter_args, progress=progress)
            timings["train_adapter"] = time.perf_counter() - started
        elif current is not None and (current / "adapter").is_dir():
            shutil.copytree(current / "adapter", building / "adapter")
            logger.info("carried the served adapter forward unchanged from %s", current)

        stage += 1
        target = f"target escalation {config.target_escalation:.0%}"
        if config.calibration is not None:
            started = _stage(stage, total, f"calibrate on {config.calibration} ({target})")
            calibrate_for_traffic(
                building / "encoder", config.calibration, config.target_escalation, building / "adapter"
            )
        else:
            started = _stage(stage, total, f"calibrate-router ({target})")
            calibrate_router(building / "encoder", config.data, RouterTarget(escalation=config.target_escalation))
        timings["calibrate_router"] = time.perf_counter() - started

        stage += 1
        started = _stage(stage, total, "evaluate candidate and current on the same test split")
        test = config.data / "test.jsonl"
        settings = Settings(llm_backend="local")
        adapter = building / "adapter" if config.with_adapter else None
        cand_report = run_evaluation(
            EvalConfig(test, building / "encoder", building / "report", adapter, settings, baseline=False),
            progress=progress,
        )
        cur_report = None
        if current is not None:
            cur_adapter = current / "adapter" if adapter is not None and (current / "adapter").exists() else None
            cur_report = run_evaluation(
                EvalConfig(
                    test, current / "encoder", building / "report-current", cur_adapter, settings, baseline=False
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
    (candidate / "comparison.md").write_text(render_comparison(decision, cand_report, cur_report))
    if promote:
        store.promote(candidate, {"by": "retrain", **decision})
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
    return VersionStore(out, pointer).rollback()
