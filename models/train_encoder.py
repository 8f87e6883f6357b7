"""Offline fine-tuning of a multi-label encoder (mDeBERTa-v3 in production, a tiny DeBERTa-v2 offline).

Weighted BCE (per-label ``pos_weight`` for rare labels), AdamW with linear warm-up and decay, early stopping on
validation macro-F1, bf16 autocast on CUDA (never fp16: DeBERTa-v3 overflows), temperature scaling and per-label
thresholds fitted on validation (``models.calibrate``), and an atomically written checkpoint. A tiny model first
trains the bag of embeddings it computes with its residual branches at zero (the warm start, ``models.pooling``).
"""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoTokenizer

from models.augment import augment
from models.calibrate import calibrate_logits
from models.checkpoint import Manifest, atomic_folder, write_model_card
from models.datasets import Dataset, Example, label_matrix, load_dataset, multi_hot, read_examples
from models.device import resolve_device
from models.encoder import load_for_serving, pad_batch
from models.errors import CheckpointError, DataError, check_arguments
from models.fast_path import write_agreement_sample
from models.pooling import POOLINGS, build_classifier, load_classifier, warm_start_parameters
from models.scoring import score
from models.tiny import TINY, TOKENIZER_KINDS, bpe_dropout, tiny_deberta_config, train_bpe_tokenizer
from router.pipeline import HybridPipeline

logger = logging.getLogger(__name__)

DEFAULT_BASE_MODEL = "microsoft/mdeberta-v3-base"


@dataclass
class EncoderTrainingArgs:
    """Validated training arguments, saved in the checkpoint manifest."""

    base_model: str = DEFAULT_BASE_MODEL
    epochs: int = 10
    batch_size: int = 16
    learning_rate: float = 3e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_length: int = 256
    patience: int = 3
    max_pos_weight: float = 10.0
    seed: int = 0
    device: str = "auto"
    bf16: bool | None = None
    """bf16 autocast for forward passes; None: on CUDA only (on a 2-core CPU it measured slower and worse)."""
    tiny_vocab_size: int = 8000
    tiny_tokenizer: str = "bpe"
    """``bpe`` (pieces over the characters seen in training) or ``bytelevel`` (no text is ever unknown)."""
    tiny_lowercase: bool = False
    """Tiny tokenizer only: lower-case every text before it is split (the normaliser is saved with the tokenizer)."""
    bpe_dropout: float = 0.0
    """Tiny tokenizer only: BPE-dropout, the probability that a merge is skipped when a training ticket is split,
    drawn afresh per epoch, so the model also sees the smaller pieces an unseen or misspelt word falls apart into.
    Validation, calibration and serving split without it."""
    tiny_hidden_size: int = 128
    tiny_layers: int = 4
    dropout: float | None = None
    """Hidden and attention dropout of a tiny model (None: the architecture's 0.1); a real base keeps its own."""
    augment: float = 0.0
    """Probability that a training ticket is augmented (typos, case, accents, word dropout...), fresh per epoch."""
    pooling: str | None = None
    """``cls`` (the architecture's own head: the first token) or ``mean`` (masked mean of the last hidden states);
    None: ``mean`` for a tiny model, ``cls`` for a pretrained base (the published recipe)."""
    warm_start_epochs: int = 0
    """Tiny models only: epochs of the bag-of-embeddings model (``bag_logits``: the residual branches at zero) before
    the whole transformer trains from it. Needs ``mean`` pooling."""
    warm_start_learning_rate: float = 3e-3
    select_on: str | None = None
    """A labelled file (tickets people wrote, e.g. the proxy's validation half) whose micro average precision picks
    the best epoch instead of the generated validation split's macro-F1. Threshold-free, so calibration later
    still has its own say; never the test half."""

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "learning_rate": 0 < self.learning_rate < 1,
            "weight_decay": self.weight_decay >= 0,
            "warmup_ratio": 0 <= self.warmup_ratio < 1,
            "max_length": 8 <= self.max_length <= 4096,
            "patience": self.patience >= 1,
            "max_pos_weight": self.max_pos_weight >= 1,
            "tiny_vocab_size": self.tiny_vocab_size >= 100,
            "tiny_tokenizer": self.tiny_tokenizer in TOKENIZER_KINDS,
            "tiny_hidden_size": self.tiny_hidden_size >= 32 and self.tiny_hidden_size % 32 == 0,
            "tiny_layers": 1 <= self.tiny_layers <= 24,
            "dropout": self.dropout is None or 0 <= self.dropout < 1,
            "augment": 0 <= self.augment <= 1,
            "bpe_dropout": 0 <= self.bpe_dropout < 1,
            "pooling": self.pooling is None or self.pooling in POOLINGS,
            "warm_start_epochs": self.warm_start_epochs >= 0,
            "warm_start_learning_rate": 0 < self.warm_start_learning_rate < 1,
        }
        check_arguments(self, checks, "training argument")
        if self.warm_start_epochs and (self.base_model != TINY or self.resolved_pooling != "mean"):
            raise DataError(
                "warm_start_epochs needs --base-model tiny with mean pooling: it sets every residual branch to zero, "
                f"which would erase a pretrained model's layers (found base {self.base_model!r}, pooling "
                f"{self.resolved_pooling!r})"
            )
        if (self.tiny_lowercase or self.bpe_dropout) and self.base_model != TINY:
            raise DataError(
                "tiny_lowercase and bpe_dropout shape the tokenizer a tiny model trains; a pretrained base keeps its "
                f"own (found base {self.base_model!r})"
            )

    @property
    def resolved_pooling(self) -> str:
        """``pooling``, or its default for the base model."""
        return self.pooling or ("mean" if self.base_model == TINY else "cls")

    @classmethod
    def for_base_model(cls, base_model: str, **overrides: Any) -> EncoderTrainingArgs:
        """Defaults that suit the base model: a from-scratch tiny model needs a higher rate and more epochs."""
        defaults: dict[str, Any] = {"base_model": base_model}
        if base_model == TINY:
            defaults.update(
                epochs=24,
                batch_size=32,
                learning_rate=5e-4,  # 1e-3 stalled on a plateau twice in the ablation (README)
                max_length=160,
                patience=4,
                warmup_ratio=0.06,
                # measured on the proxy's validation half (README, ablation): a longer warm start, a case-blind
                # tokenizer, BPE-dropout and more dropout all trade fit to the generator for fit to real tickets
                warm_start_epochs=6,
                tiny_lowercase=True,
                bpe_dropout=0.3,
                dropout=0.2,
            )
        defaults.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**defaults)


def _build_model(args: EncoderTrainingArgs, dataset: Dataset) -> tuple[Any, Any]:
    labels = dataset.taxonomy.names
    if args.base_model == TINY:
        tokenizer: Any = train_bpe_tokenizer(
            (ex.text for ex in dataset.split("train")),
            vocab_size=args.tiny_vocab_size,
            max_length=args.max_length,
            kind=args.tiny_tokenizer,
            lowercase=args.tiny_lowercase,
        )
        config = tiny_deberta_config(
            len(tokenizer),
            len(labels),
            int(tokenizer.pad_token_id),
            args.max_length,
            hidden_size=args.tiny_hidden_size,
            layers=args.tiny_layers,
            dropout=0.1 if args.dropout is None else args.dropout,
        )
        config.id2label = dict(enumerate(labels))
        config.label2id = {name: i for i, name in enumerate(labels)}
        config.pooling = args.resolved_pooling
        return build_classifier(config), tokenizer
    try:
        tokenizer = AutoTokenizer.from_pretrained(args.base_model)
        config = AutoConfig.from_pretrained(
            args.base_model,
            num_labels=len(labels),
            problem_type="multi_label_classification",
            id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)},
        )
        config.pooling = args.resolved_pooling
        model = load_classifier(args.base_model, config=config)
    except OSError as exc:
        raise CheckpointError(
            f"cannot load base model {args.base_model!r}: {exc}. It must be in the Hugging Face cache or "
            "downloadable; on an offline machine use --base-model tiny."
        ) from exc
    return model, tokenizer


def _batches(ids: list[list[int]], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length: sort within random chunks of 50 batches to cut padding."""
    order = list(range(len(ids)))
    rng.shuffle(order)
    chunk = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: len(ids[i]))
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def use_bf16(requested: bool | None, device: torch.device) -> bool:
    """Autocast to bf16 on CUDA GPUs that support it, unless ``requested`` says otherwise."""
    if requested is not None:
        return requested
    return device.type == "cuda" and bool(torch.cuda.is_bf16_supported())


@torch.inference_mode()
def _logits(model: Any, ids: list[list[int]], pad_id: int, device: torch.device, num_labels: int) -> np.ndarray:
    model.eval()
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = np.zeros((len(ids), num_labels), dtype=np.float32)
    for start in range(0, len(order), 64):
        chunk = order[start : start + 64]
        input_ids, mask = pad_batch([ids[i] for i in chunk], pad_id)
        logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
        out[chunk] = logits.float().cpu().numpy()
    return out


def _selection(
    path: str | None, encode: Callable[[Sequence[Example]], list[list[int]]], labels: list[str]
) -> tuple[list[list[int]], np.ndarray] | None:
    """Token ids and labels of the model-selection file, if one was given."""
    if path is None:
        return None
    examples = read_examples(Path(path))
    return encode(examples), label_matrix(examples, labels)


def _average_precision(y: np.ndarray, logits: np.ndarray) -> float:
    """Micro-averaged average precision: how well the scores rank true labels above false ones, at any threshold."""
    order = np.argsort(-logits.ravel(), kind="stable")
    truth = y.ravel()[order]
    if not truth.any():
        return 0.0
    hits = np.cumsum(truth)
    return float(np.sum((hits / np.arange(1, len(truth) + 1))[truth == 1]) / truth.sum())


def _warm_start(
    model: Any,
    epoch_ids: Callable[[], list[list[int]]],
    y_train: np.ndarray,
    pad_id: int,
    loss_fn: torch.nn.Module,
    args: EncoderTrainingArgs,
    rng: random.Random,
    device: torch.device,
    bar: Any,
) -> list[dict[str, float]]:
    """Train the bag of embeddings a zero-branch model computes, so the whole model starts from a classifier.

    Sets every residual branch to zero, then trains only the embeddings, pooler and classifier through
    ``bag_logits`` (no encoder layer runs: seconds per epoch). The model's forward then gives the same logits, and
    the full training moves on from there (``models.pooling`` says why). ``epoch_ids`` gives each epoch's token ids
    (split afresh under BPE-dropout). Returns the per-epoch losses.
    """
    if not args.warm_start_epochs:
        return []
    model.zero_residual_branches()
    optimizer = torch.optim.AdamW(warm_start_parameters(model), lr=args.warm_start_learning_rate, weight_decay=0.0)
    history: list[dict[str, float]] = []
    model.train()
    for epoch in range(1, args.warm_start_epochs + 1):
        train_ids = epoch_ids()
        batches = _batches(train_ids, args.batch_size, rng)
        running = 0.0
        for batch in batches:
            input_ids, mask = pad_batch([train_ids[i] for i in batch], pad_id)
            logits = model.bag_logits(input_ids.to(device), mask.to(device))
            loss = loss_fn(logits.float(), torch.as_tensor(y_train[batch]).to(device))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            running += float(loss.detach())
            bar.update(1)
        history.append({"epoch": epoch, "loss": running / max(1, len(batches))})
        bar.set_postfix(warm_start=epoch, loss=f"{history[-1]['loss']:.3f}")
        logger.info("warm start epoch %d loss %.4f", epoch, history[-1]["loss"])
    return history


def train_encoder(data: str | Path, out: str | Path, args: EncoderTrainingArgs, progress: bool = True) -> Manifest:
    """Fine-tune, tune thresholds, score every split and write the checkpoint to ``out`` atomically."""
    started = time.perf_counter()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    dataset = load_dataset(data)
    labels = dataset.taxonomy.names
    device = resolve_device(args.device)
    bf16 = use_bf16(args.bf16, device)
    model, tokenizer = _build_model(args, dataset)
    model = model.to(device)
    pad_id = int(tokenizer.pad_token_id)

    def encode(examples: Sequence[Example], augment_p: float = 0.0, dropout: float = 0.0) -> list[list[int]]:
        texts = [augment(ex.text, rng, augment_p) for ex in examples]
        with bpe_dropout(tokenizer, dropout):
            enc = tokenizer(texts, truncation=True, max_length=args.max_length)
        return [list(x) for x in enc["input_ids"]]

    train, val = dataset.split("train"), dataset.split("validation")
    train_ids, val_ids = encode(train), encode(val)
    y_train, y_val = label_matrix(train, labels), label_matrix(val, labels)
    positives = y_train.sum(axis=0)
    missing = [labels[i] for i in np.flatnonzero(positives == 0)]
    if missing:
        logger.warning("labels with no training examples: %s", ", ".join(missing))
    pos_weight = torch.tensor(
        np.clip((len(y_train) - positives) / np.maximum(positives, 1), 1.0, args.max_pos_weight), dtype=torch.float32
    ).to(device)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    steps_per_epoch = (len(train_ids) + args.batch_size - 1) // args.batch_size
    total = steps_per_epoch * args.epochs
    warmup = max(1, int(total * args.warmup_ratio))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup)))
    )

    selection = _selection(args.select_on, encode, labels)
    best_f1, best_state, best_epoch, bad_epochs = -1.0, None, 0, 0
    history: list[dict[str, float]] = []
    bar = tqdm(
        total=total + steps_per_epoch * args.warm_start_epochs, desc="train-encoder", unit="step", disable=not progress
    )

    def warm_ids() -> list[list[int]]:
        return encode(train, dropout=args.bpe_dropout) if args.bpe_dropout else train_ids

    warm_history = _warm_start(model, warm_ids, y_train, pad_id, loss_fn, args, rng, device, bar)
    for epoch in range(1, args.epochs + 1):
        model.train()
        running = 0.0
        if (args.augment > 0 or args.bpe_dropout) and (epoch > 1 or warm_history):  # clean first, then noise
            train_ids = encode(train, args.augment, args.bpe_dropout)
        for batch in _batches(train_ids, args.batch_size, rng):
            input_ids, mask = pad_batch([train_ids[i] for i in batch], pad_id)
            target = torch.as_tensor(y_train[batch]).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
            loss = loss_fn(logits.float(), target)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            running += float(loss.detach())
            bar.update(1)
        val_logits = _logits(model, val_ids, pad_id, device, len(labels))
        val_f1 = score(y_val, val_logits >= 0.0, labels).f1_macro  # probability >= 0.5
        history.append({"epoch": epoch, "loss": running / steps_per_epoch, "val_f1_macro": val_f1})
        criterion = val_f1
        if selection is not None:
            sel_ids, y_sel = selection
            criterion = _average_precision(y_sel, _logits(model, sel_ids, pad_id, device, len(labels)))
            history[-1]["selection_average_precision"] = criterion
        bar.set_postfix(epoch=epoch, loss=f"{running / steps_per_epoch:.3f}", val_macro_f1=f"{val_f1:.3f}")
        logger.info(
            "epoch %d loss %.4f val macro-F1 %.4f%s",
            epoch,
            running / steps_per_epoch,
            val_f1,
            f" selection average precision {criterion:.4f}" if selection is not None else "",
        )
        if criterion > best_f1:
            best_f1, best_epoch, bad_epochs = criterion, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
            if bad_epochs >= args.patience:
                logger.info("early stopping after epoch %d (best %d)", epoch, best_epoch)
                break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)

    val_logits = _logits(model, val_ids, pad_id, device, len(labels))
    temperatures, biases, thresholds, calibration = calibrate_logits(val_logits, y_val, labels)
    metrics: dict[str, Any] = {"calibration": calibration}
    train_seconds = time.perf_counter() - started
    metrics["train_seconds"] = round(train_seconds, 1)
    metrics["best_epoch"] = best_epoch
    metrics["history"] = history
    if warm_history:
        metrics["warm_start"] = warm_history

    short = "tiny" if args.base_model == TINY else args.base_model.split("/")[-1]
    manifest = Manifest(
        kind="encoder",
        version=f"{short}-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}-{dataset.fingerprint()[:8]}",
        base_model=args.base_model,
        taxonomy=dataset.taxonomy.to_dict(),
        thresholds=thresholds,
        temperatures=temperatures,
        biases=biases,
        max_length=args.max_length,
        training_args=asdict(args),
        metrics=metrics,
        data_fingerprint=dataset.fingerprint(),
    )
    with atomic_folder(out) as tmp:
        model.to("cpu").save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        manifest.write(tmp)
        write_agreement_sample(tmp, [ex.text for ex in val])  # what the start-up fast-path gate compares on
        # Split metrics come from the written checkpoint through the serving pipeline, in the precision the server
        # would serve it in on this machine (TRIAGE_DTYPE=auto), as `triage evaluate` does.
        served = load_for_serving(tmp, device=args.device, dtype="auto")
        metrics["precision"] = served.precision
        pipeline = HybridPipeline.for_taxonomy(served.taxonomy, served.thresholds)
        for split, examples in dataset.splits.items():
            if split != "train":
                decisions = pipeline.decide_batch(served.predict_texts([ex.text for ex in examples]))
                predicted = multi_hot([d.labels for d in decisions], labels)
                metrics[split] = score(label_matrix(examples, labels), predicted, labels).summary()
        manifest.write(tmp)  # now with the split metrics (``manifest.metrics`` is ``metrics``)
        write_model_card(tmp, manifest, f"triage encoder ({args.base_model})")
    logger.info("encoder checkpoint written to %s in %.1fs", out, train_seconds)
    return manifest
