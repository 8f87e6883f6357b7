"""The ``triage`` command: serve, generate-data, train-encoder, build-default, bench.

Each subcommand is a thin wrapper over an importable function; heavy imports happen inside the command.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from app.server.logging_setup import configure_logging

C = TypeVar("C")

if TYPE_CHECKING:
    from app.server.settings import Settings

logger = logging.getLogger("triage")

DEFAULT_DATA = Path("data/eurochef")
DEFAULT_CHECKPOINTS = Path("checkpoints/default")
DEFAULT_TARGET_ESCALATION = 0.15
DEFAULT_CALIBRATION = Path("evalsets/proxy/validation.jsonl")
"""Tickets people wrote, never trained on: the default build calibrates confidence and routing on them."""
DEFAULT_BUILD_N = 40000
"""Generated tickets of the default build: many distinct tickets for a few epochs beat few tickets for many (the
ablation in README), at the same training time."""
DEFAULT_ENCODER = {
    "epochs": 1,
    "learning_rate": 5e-4,
    "augment": 0.3,
    "tiny_vocab_size": 3000,
}
"""The tiny encoder's settings for DEFAULT_BUILD_N tickets, on top of the tiny defaults (a case-blind tokenizer,
BPE-dropout 0.3, dropout 0.2, 6 epochs of the bag of embeddings): one epoch of the whole model over 28,000 distinct
tickets, on the proxy's validation half as good as five epochs over 8,400 (within noise) in less time (README,
ablation). At 1e-3 a from-scratch run can stall on a plateau (loss ≈ 1.0, macro-F1 < 0.1 after 8 epochs)."""
DEFAULT_ADAPTER = {"max_train_examples": 2000, "max_eval_examples": 300, "tiny_pretrain_epochs": 6}
"""The tiny adapter pre-trains and trains on the first 2,000 tickets and scores 300 per split: version 2's tickets
are longer, and encoder + adapter must train within the 8-minute build budget on 2 cores."""


def _serve(args: argparse.Namespace) -> int:
    import uvicorn
    from pydantic import ValidationError

    from app.server.auth import KeyFileError
    from app.server.drain import DrainingServer
    from app.server.main import create_app
    from app.server.settings import Settings
    from models.checkpoint import read_manifest
    from models.errors import ModelError

    overrides = {"encoder_path": args.encoder} if args.encoder else {}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        print(f"triage serve: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_json or args.log_json)
    _library_logs_through_ours()
    try:
        read_manifest(settings.encoder_path, kind="encoder")
    except ModelError as exc:
        print(f"triage serve: {exc}", file=sys.stderr)
        return 2
    try:
        app = create_app(settings)
    except KeyFileError as exc:
        print(f"triage serve: {exc}", file=sys.stderr)
        return 2
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=settings.log_level,
        timeout_keep_alive=args.timeout_keep_alive,
        access_log=args.access_log,
        log_config=None,  # uvicorn's lines go through configure_logging's handler: JSON with --log-json
    )
    server = DrainingServer(config, app.state.drain, settings.drain_timeout_s)  # SIGTERM drains first
    server.run()
    return 0 if server.started else 3  # 3: uvicorn's start-up failure status (the port taken, ...)


def _library_logs_through_ours() -> None:
    """transformers logs through its own handler and draws progress bars on stderr: route its records to ours
    and drop the bars, so a served process writes only log lines (all JSON with --log-json)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_default_handler()
    hf_logging.enable_propagation()
    hf_logging.disable_progress_bar()


def _generate_data(args: argparse.Namespace) -> int:
    from models.generate import write_generated_dataset

    counts = write_generated_dataset(args.out, n=args.n, seed=args.seed, progress=not args.quiet)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def _train_encoder(args: argparse.Namespace) -> int:
    from models.train_encoder import EncoderTrainingArgs, train_encoder

    training_args = EncoderTrainingArgs.for_base_model(
        args.base_model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_length=args.max_length,
        seed=args.seed,
        device=args.device,
        augment=args.augment,
        pooling=args.pooling,
        warm_start_epochs=args.warm_start_epochs,
        tiny_lowercase=args.lowercase,
        bpe_dropout=args.bpe_dropout,
        select_on=str(args.select_on) if args.select_on else None,
    )
    manifest = train_encoder(args.data, args.out, training_args, progress=not args.quiet)
    _print_metrics(manifest.metrics, args.out, manifest.version)
    return 0


def _train_adapter(args: argparse.Namespace) -> int:
    from models.train_adapter import AdapterTrainingArgs, train_adapter

    training_args = AdapterTrainingArgs.for_base_model(
        args.base_model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        train_experts=args.train_experts or None,
        quantization=args.quantization,
        max_length=args.max_length,
        max_train_examples=args.max_train_examples,
        max_eval_examples=args.max_eval_examples,
        seed=args.seed,
        device=args.device,
    )
    manifest = train_adapter(args.data, args.out, training_args, progress=not args.quiet)
    _print_metrics(manifest.metrics, args.out, manifest.version)
    return 0


def _print_metrics(metrics: dict[str, object], out: Path, version: str) -> None:
    print(f"checkpoint {version} written to {out}")
    print(f"{'split':<14} {'F1 micro':>9} {'F1 macro':>9} {'exact':>7}")
    for split, values in metrics.items():
        if isinstance(values, dict) and "f1_micro" in values:
            print(f"{split:<14} {values['f1_micro']:>9.3f} {values['f1_macro']:>9.3f} {values['exact_match']:>7.3f}")


def build_default(
    data: Path,
    checkpoints: Path,
    if_missing: bool,
    n: int,
    seed: int,
    progress: bool,
    adapter: bool = True,
    calibration: Path | None = DEFAULT_CALIBRATION,
) -> bool:
    """Generate the EuroChef+ data, train the tiny encoder and the tiny adapter into ``checkpoints``, then fit the
    encoder's temperatures and thresholds, the escalation threshold (15 %) and the per-label merge policy on
    ``calibration``: tickets people wrote (the proxy's validation half), so that confidence transfers to real
    traffic. Without that file the generated validation split is used, with a warning.

    With ``if_missing``, each checkpoint that already exists is kept. Returns False if nothing was built.
    """
    from models.generate import write_generated_dataset
    from models.train_encoder import EncoderTrainingArgs, train_encoder

    encoder_dir, adapter_dir = checkpoints / "encoder", checkpoints / "adapter"
    need_encoder = not (if_missing and (encoder_dir / "triage_manifest.json").exists())
    need_adapter = adapter and not (if_missing and (adapter_dir / "triage_manifest.json").exists())
    if not (need_encoder or need_adapter):
        logger.info("default checkpoints already in %s; skipping (drop --if-missing to rebuild)", checkpoints)
        return False
    if not (data / "train.jsonl").exists() or not if_missing:
        write_generated_dataset(data, n=n, seed=seed, progress=progress)
    if need_encoder:
        encoder_args = EncoderTrainingArgs.for_base_model("tiny", seed=seed, **DEFAULT_ENCODER)
        manifest = train_encoder(data, encoder_dir, encoder_args, progress)
        _print_metrics(manifest.metrics, encoder_dir, manifest.version)
    if need_adapter:
        from models.train_adapter import AdapterTrainingArgs, train_adapter

        adapter_args = AdapterTrainingArgs.for_base_model("tiny", seed=seed, **DEFAULT_ADAPTER)
        adapter_manifest = train_adapter(data, adapter_dir, adapter_args, progress)
        _print_metrics(adapter_manifest.metrics, adapter_dir, adapter_manifest.version)
    if need_encoder:
        calibrate_default(encoder_dir, adapter_dir if adapter else None, data, calibration)
    return True


def calibrate_default(encoder_dir: Path, adapter_dir: Path | None, data: Path, calibration: Path | None) -> None:
    """Calibrate the built default on ``calibration`` (else, with a warning, the generated validation split)."""
    from app.jobs.operating_point import calibrate_for_traffic

    if calibration is None or not calibration.exists():
        logger.warning(
            "calibration file %s not found: calibrating on the generated validation split, whose confidence does "
            "not transfer to real tickets",
            calibration,
        )
        calibration = data / "validation.jsonl"
    router = calibrate_for_traffic(encoder_dir, calibration, DEFAULT_TARGET_ESCALATION, adapter_dir)
    print(
        f"calibrated on {calibration}: escalation threshold {router['escalation_threshold']:.4f}, "
        f"merge policy {router.get('merge_policy', 'default')}"
    )


def _build_default(args: argparse.Namespace) -> int:
    built = build_default(
        args.data,
        args.checkpoints,
        args.if_missing,
        args.n,
        args.seed,
        not args.quiet,
        adapter=not args.no_adapter,
        calibration=args.calibration,
    )
    if not built:
        print(f"default checkpoint present in {args.checkpoints}; nothing to do")
    return 0


def _ablate(args: argparse.Namespace) -> int:
    from app.jobs.ablation import parse_variant, run_ablation

    variants = [parse_variant(spec, args.data) for spec in args.variant]
    run_ablation(variants, args.eval, args.out, progress=not args.quiet)
    return 0


def _model_arguments(p: argparse.ArgumentParser, data_help: str) -> None:
    """--architecture, --encoder and --data: what the benchmarks serve and send."""
    p.add_argument(
        "--architecture",
        choices=["checkpoint", "mdeberta-v3-base"],
        default="checkpoint",
        help="checkpoint: the --encoder checkpoint; mdeberta-v3-base: that architecture, random weights",
    )
    p.add_argument("--encoder", type=Path, default=DEFAULT_CHECKPOINTS / "encoder")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help=data_help)


def config_from_args(cls: type[C], args: argparse.Namespace, **overrides: Any) -> C:
    """A job's config dataclass from the parsed arguments of the same names (``overrides`` win; fields with no
    argument keep their defaults)."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}  # type: ignore[arg-type]
    return cls(**{**given, **overrides})


def _bench(args: argparse.Namespace) -> int:
    if args.peers is not None:
        return _bench_peers(args)
    from app.jobs.bench import BenchConfig, run_bench

    config = BenchConfig(
        architecture=args.architecture,
        encoder=args.encoder,
        concurrency=args.concurrency,
        requests=args.requests,
        raw_batch_sizes=tuple(args.raw_batch_sizes),
        dtype=args.dtype,
        threads=args.threads,
        out=args.out or Path("bench/results.json"),
        data=args.data,
        max_batch_size=args.max_batch_size,
    )
    run_bench(config, progress=not args.quiet)
    return 0


def _bench_precision(args: argparse.Namespace) -> int:
    from app.jobs.precision import PrecisionBenchConfig, run_precision_bench

    run_precision_bench(config_from_args(PrecisionBenchConfig, args), progress=not args.quiet)
    return 0


def _bench_peers(args: argparse.Namespace) -> int:
    from app.jobs.bench_peers import SYSTEMS, PeersConfig, run_peers

    names = SYSTEMS if args.peers == "all" else ("triage", *(n.strip() for n in args.peers.split(",") if n.strip()))
    if unknown := [name for name in names if name not in SYSTEMS]:
        print(
            f"triage bench: unknown peer(s) {', '.join(unknown)}; choose from {', '.join(SYSTEMS[1:])}", file=sys.stderr
        )
        return 2
    config = PeersConfig(
        architecture=args.architecture,
        encoder=args.encoder,
        data=args.data,
        systems=tuple(dict.fromkeys(names)),
        concurrency_levels=tuple(args.concurrency_levels),
        requests=args.requests,
        dtype=args.peer_dtype,
        triage_dtype=args.dtype,
        threads=args.threads,
        max_batch_size=args.max_batch_size,
        out=args.out or Path("bench/peers.json"),
    )
    run_peers(config, progress=not args.quiet)
    return 0


def _int_list(value: str) -> list[int]:
    """``1,8,32,128`` -> [1, 8, 32, 128] (positive integers)."""
    try:
        numbers = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from None
    if not numbers or min(numbers) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {value!r}")
    return numbers


def job_settings(args: argparse.Namespace) -> Settings:
    """The server's settings (``TRIAGE_*``) with a job's LLM flags on top: jobs build the LLM as serve does."""
    from app.server.settings import Settings

    flags = {
        "llm_backend": args.llm_backend,
        "llm_endpoint": args.llm_endpoint,
        "llm_quantization": args.quantization,
        "device": args.device,
        "merge_policy": args.merge_policy,
        "escalation_threshold": getattr(args, "threshold", None),
    }
    return Settings(**{k: v for k, v in flags.items() if v is not None})


def _evaluate(args: argparse.Namespace) -> int:
    from app.jobs.evaluate import EvalConfig, run_evaluation

    run_evaluation(
        EvalConfig(
            data=args.data,
            encoder=args.encoder,
            adapter=args.adapter,
            out=args.out,
            settings=job_settings(args),
            label_map=args.label_map,
            baseline=not args.no_baseline,
            baseline_data=args.baseline_data,
        ),
        progress=not args.quiet,
    )
    print(f"report written to {args.out}/report.md")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from models.calibrate import calibrate_checkpoint
    from models.store import in_new_version

    manifest, written = in_new_version(
        args.encoder, "calibrate", lambda folder: calibrate_checkpoint(folder, args.data, args.min_positives)
    )
    report = manifest.metrics["calibration"]
    print(
        f"calibrated {written}: mean ECE {report['mean_ece_before']:.4f} -> {report['mean_ece_after']:.4f}; "
        f"own temperature for {len(report['own_temperature'])} label(s), global T "
        f"{report['global_temperature']:.3f} for the rest"
    )
    return 0


def _calibrate_router(args: argparse.Namespace) -> int:
    from app.jobs.operating_point import RouterTarget, calibrate_router
    from models.store import in_new_version

    target = RouterTarget(escalation=args.target_escalation, f1=args.target_f1)
    settings = job_settings(args)
    router, written = in_new_version(
        args.encoder,
        "calibrate-router",
        lambda folder: calibrate_router(
            folder, args.data, target, adapter=args.adapter, settings=settings, arbitrate_labels=args.arbitrate
        ),
    )
    print(
        f"escalation threshold {router['escalation_threshold']:.4f}: "
        f"{router['validation_escalation_rate']:.1%} of {router['validation_tickets']} validation tickets escalate; "
        f"written to {written}/triage_manifest.json"
    )
    if "merge_policy" in router:
        print(f"merge policy {router['merge_policy']}")
    return 0


def _retrain(args: argparse.Namespace) -> int:
    from app.jobs.retrain import RetrainConfig, retrain

    decision = retrain(
        RetrainConfig(
            data=args.data,
            out=args.out,
            base_model=args.base_model,
            with_adapter=args.with_adapter,
            adapter_base_model=args.adapter_base_model,
            keep=args.keep,
            metric=args.metric,
            margin=args.margin,
            target_escalation=args.target_escalation,
            calibration=args.calibration,
            epochs=args.epochs,
            seed=args.seed,
        ),
        progress=not args.quiet,
    )
    return 0 if decision["promoted"] else 3


def _rollback(args: argparse.Namespace) -> int:
    from app.jobs.retrain import rollback

    print(f"{args.out}/default now serves {rollback(args.out)}")
    return 0


def _llm_flags(p: argparse.ArgumentParser) -> None:
    """Flags over the server's settings; unset ones keep the TRIAGE_* value or the server's default."""
    p.add_argument("--llm-backend", default="local", choices=["local", "openai"])
    p.add_argument("--llm-endpoint", help="openai backend: the /v1 URL (TRIAGE_LLM_ENDPOINT)")
    p.add_argument("--quantization", choices=["auto", "nf4", "mxfp4", "none"], help="TRIAGE_LLM_QUANTIZATION")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (TRIAGE_DEVICE)")
    p.add_argument("--merge-policy", help="e.g. default=llm,emotion=encoder (TRIAGE_MERGE_POLICY)")


def _api_key(args: argparse.Namespace) -> int:
    from app.server.auth import KeyFileError, add_key, read_key_file, revoke_key

    try:
        if args.action == "add":
            key = add_key(args.file, args.name, [s.strip() for s in args.scopes.split(",") if s.strip()])
            print(key)
            print(f"key {args.name!r} added to {args.file}; it is shown only now", file=sys.stderr)
        elif args.action == "revoke":
            revoke_key(args.file, args.name)
            print(f"key {args.name!r} revoked; restart the server to apply", file=sys.stderr)
        else:
            for entry in read_key_file(args.file):
                print(f"{entry['name']}\t{','.join(entry['scopes'])}")
    except KeyFileError as exc:
        print(f"triage api-key: {exc}", file=sys.stderr)
        return 2
    return 0


def _soak(args: argparse.Namespace) -> int:
    from app.jobs.soak import SoakConfig, format_soak, run_soak

    config = SoakConfig(
        encoder=args.encoder,
        data=args.data,
        duration_s=args.duration,
        factor=args.factor,
        capacity_s=args.capacity_seconds,
        max_queue_wait_s=args.max_queue_wait,
        max_active_requests=args.max_active_requests,
        out=args.out,
    )
    result = run_soak(config, progress=not args.quiet)
    print(format_soak(result))
    return 0 if result["lost"] == 0 and result["unexpected"] == 0 and result["refused_without_retry_after"] == 0 else 1


def _load_curve(args: argparse.Namespace) -> int:
    from app.jobs.load_curve import LoadCurveConfig, format_load_curve, run_load_curve

    config = config_from_args(LoadCurveConfig, args, fractions=tuple(args.fractions))
    result = run_load_curve(config, progress=not args.quiet)
    print(format_load_curve(result))
    lost = sum(level["lost"] + level["unexpected"] + level["refused_without_retry_after"] for level in result["levels"])
    return 0 if lost == 0 else 1


def _doctor(args: argparse.Namespace) -> int:
    from app.jobs.doctor import diagnose, render, write_json
    from app.server.settings import Settings

    report = diagnose(Settings(), args.gpu)
    print(render(report))
    if args.json:
        write_json(report, args.json)
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="triage", description=__doc__)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-json", action="store_true", help="one JSON object per log line")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="serve /classify with uvicorn (settings: TRIAGE_* environment variables)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--encoder", type=Path, help="encoder checkpoint (default: TRIAGE_ENCODER_PATH or the default)")
    p.add_argument("--timeout-keep-alive", type=int, default=30, help="idle keep-alive seconds (uvicorn default 5)")
    p.add_argument("--access-log", action="store_true", help="log every request line")
    p.set_defaults(func=_serve)

    p = sub.add_parser("api-key", help="add, list or revoke API keys (hashed in TRIAGE_API_KEYS_FILE)")
    p.add_argument("action", choices=["add", "list", "revoke"])
    p.add_argument("--file", type=Path, required=True, help="the keys file the server reads (TRIAGE_API_KEYS_FILE)")
    p.add_argument("--name", help="add/revoke: the key's name (who uses it)")
    p.add_argument("--scopes", default="classify", help="add: comma-separated, from classify, escalate:force, admin")
    p.set_defaults(func=_api_key)

    p = sub.add_parser("soak", help="a real server at a multiple of its measured capacity: nothing lost, overload 429")
    p.add_argument("--encoder", type=Path, default=DEFAULT_CHECKPOINTS / "encoder")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="tickets to send (test.jsonl in this folder)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of offered load")
    p.add_argument("--factor", type=float, default=2.0, help="offered load as a multiple of the measured capacity")
    p.add_argument("--capacity-seconds", type=float, default=10.0, help="length of the capacity measurement")
    p.add_argument("--max-queue-wait", type=float, default=1.0, help="the server's TRIAGE_MAX_QUEUE_WAIT_S")
    p.add_argument("--max-active-requests", type=int, default=32, help="the server's TRIAGE_MAX_ACTIVE_REQUESTS")
    p.add_argument("--out", type=Path, default=Path("bench/soak.json"))
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_soak)

    p = sub.add_parser(
        "bench-precision", help="the encoder in float32 (stock and cached positions), bf16 and int8: speed and answers"
    )
    _model_arguments(p, "tickets to time (and test.jsonl to score)")
    p.add_argument("--repeats", type=int, default=20, help="batch-of-1 passes per variant (the median is reported)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=4, help="batches per variant for the throughput figure")
    p.add_argument("--sample", type=int, default=256, help="tickets in the agreement sample")
    p.add_argument("--tolerance", type=float, default=0.5, help="the gate's tolerance, F1 points (as the server)")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--out", type=Path, default=Path("bench/precision.json"), help="JSON; the PNG goes beside it")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_bench_precision)

    p = sub.add_parser("load-curve", help="latency against offered load (open loop, Poisson) on a real server")
    _model_arguments(p, "tickets to send (test.jsonl in this folder)")
    p.add_argument("--dtype", default="auto", help="the server's TRIAGE_DTYPE (auto, float32, bfloat16, int8)")
    p.add_argument("--threads", type=int, default=None, help="the server's TRIAGE_TORCH_THREADS")
    p.add_argument("--max-batch-size", type=int, default=32, help="the server's TRIAGE_MAX_BATCH_SIZE")
    p.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        default=[0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.2],
        help="offered load as fractions of the measured capacity (0.5, the acceptance level, is always added)",
    )
    p.add_argument("--requests-per-level", type=int, default=500, help="Poisson requests at each fraction")
    p.add_argument("--capacity-requests", type=int, default=0, help="closed-loop requests (0: about 10 s worth)")
    p.add_argument("--concurrency", type=int, default=0, help="closed-loop clients (0: twice --max-batch-size)")
    p.add_argument("--out", type=Path, default=Path("bench/load_curve.json"), help="JSON; the PNG goes beside it")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_load_curve)

    p = sub.add_parser("doctor", help="installed packages, the GPU, and memory plans for serving and QLoRA training")
    p.add_argument("--gpu", help="plan for this GPU instead of the detected one: rtx4090, rtx3090, l4, a10g, ...")
    p.add_argument("--json", type=Path, help="also write the report as JSON here")
    p.set_defaults(func=_doctor)

    p = sub.add_parser("generate-data", help="write the synthetic multilingual EuroChef+ dataset")
    p.add_argument("--out", type=Path, default=DEFAULT_DATA)
    p.add_argument("--n", type=int, default=4000, help="tickets in train+validation+test (held-out split extra)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_generate_data)

    p = sub.add_parser("train-encoder", help="fine-tune a multi-label encoder and write a checkpoint")
    p.add_argument("--data", type=Path, required=True, help="dataset folder (train/validation[/test].jsonl or .csv)")
    p.add_argument("--base-model", default="microsoft/mdeberta-v3-base", help="Hugging Face id or 'tiny'")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--max-length", type=int)
    p.add_argument("--augment", type=float, help="share of training tickets given fresh noise each epoch (0-1)")
    p.add_argument("--pooling", choices=["cls", "mean"], help="head: first token or mean of all (tiny: mean)")
    p.add_argument(
        "--warm-start-epochs", type=int, help="tiny only: epochs of the bag of embeddings first (default 6; 0: off)"
    )
    p.add_argument(
        "--lowercase",
        action=argparse.BooleanOptionalAction,
        help="tiny only: a case-blind tokenizer (default on; saved with it, so serving lower-cases too)",
    )
    p.add_argument(
        "--bpe-dropout",
        type=float,
        help="tiny only: skip each BPE merge with this probability when splitting training "
        "tickets (default 0.3; 0: off), so unseen and misspelt words' smaller pieces are learnt too",
    )
    p.add_argument("--select-on", type=Path, help="labelled file whose average precision picks the best epoch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_train_encoder)

    p = sub.add_parser("train-adapter", help="train the LoRA adapter of the escalation tier (QLoRA on CUDA)")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--base-model", default="openai/gpt-oss-20b", help="Hugging Face id or 'tiny'")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--lora-r", type=int)
    p.add_argument("--lora-alpha", type=int)
    p.add_argument("--lora-dropout", type=float)
    p.add_argument(
        "--train-experts", action="store_true", help="also adapt the MoE expert weights (needs --quantization none)"
    )
    p.add_argument("--quantization", choices=["nf4", "none"], help="how the base is held (hub default: nf4, QLoRA)")
    p.add_argument("--max-length", type=int, help="prompt tokens; the ticket is cut to fit (hub default: 1024)")
    p.add_argument("--max-train-examples", type=int, help="train on the first N tickets only")
    p.add_argument("--max-eval-examples", type=int, help="score at most N tickets per split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_train_adapter)

    p = sub.add_parser("build-default", help="generate the data and train the embedded tiny default")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--checkpoints", type=Path, default=DEFAULT_CHECKPOINTS)
    p.add_argument("--n", type=int, default=DEFAULT_BUILD_N)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--if-missing", action="store_true", help="build only the checkpoints that are missing")
    p.add_argument("--no-adapter", action="store_true", help="encoder only (the LLM tier then reports unavailable)")
    p.add_argument(
        "--calibration",
        type=Path,
        default=DEFAULT_CALIBRATION,
        help="labelled tickets for temperatures, thresholds, escalation threshold and arbitration",
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_build_default)

    p = sub.add_parser("evaluate", help="encoder, LLM, hybrid and n-gram baseline on a test set: tables and plots")
    p.add_argument("--data", type=Path, required=True, help="test .jsonl/.csv, or a dataset folder (its test split)")
    p.add_argument("--encoder", type=Path, default=DEFAULT_CHECKPOINTS / "encoder")
    p.add_argument("--adapter", type=Path, help="adapter folder: adds the LLM and hybrid rows")
    _llm_flags(p)
    p.add_argument("--out", type=Path, required=True, help="report folder (report.md, report.json, PNG plots)")
    p.add_argument("--threshold", type=float, help="escalation threshold (default: the encoder manifest's)")
    p.add_argument("--label-map", type=Path, help="JSON {their_label: our_label}; scores only the mapped labels")
    p.add_argument("--no-baseline", action="store_true", help="skip the n-gram TF-IDF baseline")
    p.add_argument("--baseline-data", type=Path, help="dataset folder the baseline trains on (default: --data's)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("ablate", help="train encoder variants and score each on tickets people wrote")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="dataset folder of variants that name none")
    p.add_argument("--eval", type=Path, default=DEFAULT_CALIBRATION, help="labelled file to score on")
    p.add_argument(
        "--variant",
        action="append",
        required=True,
        help="name:key=value,... with training settings (augment, pooling, warm_start_epochs, tiny_tokenizer, "
        "tiny_hidden_size, tiny_layers, dropout, epochs...) and data=FOLDER; repeat for each row",
    )
    p.add_argument("--out", type=Path, required=True, help="folder for the checkpoints, ablation.md/json/png")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_ablate)

    p = sub.add_parser("calibrate", help="temperature scaling + threshold re-tuning of an encoder, on validation data")
    p.add_argument("--encoder", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True, help="validation .jsonl, or a dataset folder")
    p.add_argument("--min-positives", type=int, default=20, help="fewer positives: the label shares a global T")
    p.set_defaults(func=_calibrate)

    p = sub.add_parser("calibrate-router", help="choose the escalation threshold on validation data")
    p.add_argument("--encoder", type=Path, required=True)
    p.add_argument("--adapter", type=Path, help="needed for --target-f1")
    _llm_flags(p)
    p.add_argument("--data", type=Path, required=True, help="validation .jsonl, or a dataset folder")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-escalation", type=float, help="share of tickets to escalate, e.g. 0.15")
    target.add_argument("--target-f1", type=float, help="smallest escalation rate whose hybrid F1 micro reaches this")
    p.add_argument(
        "--arbitrate", action="store_true", help="also choose per label whose answer escalations keep (needs --adapter)"
    )
    p.set_defaults(func=_calibrate_router)

    p = sub.add_parser("retrain", help="train, calibrate, evaluate; promote only if not worse than what is served")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("checkpoints"))
    p.add_argument("--base-model", default="tiny")
    p.add_argument("--with-adapter", action="store_true", help="also train the LoRA adapter (else: carry it forward)")
    p.add_argument("--adapter-base-model", help="base of a retrained adapter (default: the served adapter's base)")
    p.add_argument("--keep", type=int, default=5, help="versions kept besides the served one")
    p.add_argument("--metric", default="f1_micro", choices=["f1_micro", "f1_macro", "exact_match"])
    p.add_argument("--margin", type=float, default=0.0, help="promote if candidate >= current - margin")
    p.add_argument("--target-escalation", type=float, default=0.15)
    p.add_argument(
        "--calibration",
        type=Path,
        help="labelled tickets that look like traffic (e.g. evalsets/proxy/validation.jsonl): temperatures, "
        "thresholds and the operating point are fitted on them (default: the dataset's generated validation split)",
    )
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_retrain)

    p = sub.add_parser("rollback", help="serve the version that was current before the last promotion")
    p.add_argument("--out", type=Path, default=Path("checkpoints"))
    p.set_defaults(func=_rollback)

    p = sub.add_parser(
        "bench",
        help="raw encoder vs served (batched and unbatched) throughput, one run; --peers: triage vs serving peers",
    )
    _model_arguments(p, "tickets to send (test.jsonl in this folder)")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--requests", type=int, default=256, help="requests per served run")
    p.add_argument("--raw-batch-sizes", type=int, nargs="+", default=[1, 8, 16, 32, 64])
    p.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "int8"],
        help="triage's TRIAGE_DTYPE (raw and served runs); auto: the precision the server picks (CPU fast path)",
    )
    p.add_argument(
        "--peer-dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="--peers: the precision the peers load the model in (float32: what their CPU docs show)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads for raw and served runs")
    p.add_argument("--max-batch-size", type=int, default=32, help="TRIAGE_MAX_BATCH_SIZE, and the peers' batch size")
    p.add_argument(
        "--peers",
        nargs="?",
        const="all",
        default=None,
        metavar="NAMES",
        help="compare triage with serving peers instead (naive,bentoml,ray,infinity; default all): same model, "
        "tickets and load client; --requests per system and level; writes bench/peers.json and .png",
    )
    p.add_argument(
        "--concurrency-levels",
        type=_int_list,
        default=[1, 8, 32, 128],
        help="with --peers: concurrent clients at each level, comma-separated (default 1,8,32,128)",
    )
    p.add_argument("--out", type=Path, default=None, help="JSON (default bench/results.json, bench/peers.json)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_json)
    from models.errors import ModelError

    try:
        return int(args.func(args))
    except ModelError as exc:
        print(f"triage {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
