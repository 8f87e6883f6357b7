"""Offline LoRA training of the escalation tier's adapter (GPT-OSS-20B QLoRA on CUDA, a tiny GPT-OSS offline).

On CUDA with a hub model: the base loads in 4-bit NF4 (bitsandbytes), LoRA trains on the attention projections
(and, with ``train_experts``, on the MoE expert weights through ``target_parameters``), with gradient checkpointing
and a paged 8-bit AdamW. With ``--base-model tiny``: a byte-level BPE tokenizer and a tiny GPT-OSS are built from
the training data, pre-trained briefly (next-token loss on the tickets plus their answers, without the system
prompt), saved into ``<out>/base/``, and the adapter is trained on top exactly as on the real path.

Either way the loss covers only the answer tokens (``constrained.AnswerGrammar.answer_token_ids``, EOS included;
the prompt is masked), early stopping watches the validation answer loss, and validation/test/test_heldout are
scored with the same constrained generation the server runs. The folder is written atomically.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from models.checkpoint import Manifest, atomic_folder, write_model_card
from models.constrained import AnswerGrammar
from models.datasets import Dataset, Example, label_matrix, load_dataset, multi_hot
from models.device import resolve_device
from models.errors import CheckpointError, DataError, HardwareError, ModelError, check_arguments
from models.llm_local import (
    PromptEncoder,
    answer_loss,
    base_config_summary,
    build_batch,
    generate_labels,
    prefix_sharing_exact,
)
from models.memory_plan import detected_gpu, load_config, training_plan
from models.prompt import NONE_ANSWER, PROMPT_VERSION, SEPARATOR, system_prompt
from models.quantize import load_causal_lm, require_bitsandbytes
from models.scoring import score
from models.tiny import TINY
from models.tiny_llm import tiny_gpt_oss_config, train_llm_tokenizer

logger = logging.getLogger(__name__)

DEFAULT_BASE_MODEL = "openai/gpt-oss-20b"
ATTENTION_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"]
EXPERT_PARAMETERS = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]
BASE_FOLDER = "base"
EVAL_SPLITS = ("validation", "test", "test_heldout")


@dataclass
class AdapterTrainingArgs:
    """Validated training arguments, saved in the adapter manifest."""

    base_model: str = DEFAULT_BASE_MODEL
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(ATTENTION_MODULES))
    train_experts: bool = False
    """Also train the MoE experts (``target_parameters`` gate_up_proj / down_proj)."""
    epochs: int = 2
    batch_size: int = 2
    grad_accumulation: int = 8
    """2 x 8: an effective batch of 16 whose QLoRA plan for gpt-oss-20b at 1,024 tokens is 19 GiB (4 x 4: 20.5)."""
    learning_rate: float = 2e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    max_length: int = 1024
    """Prompt tokens (system prompt + ticket); the ticket is truncated to fit."""
    patience: int = 2
    seed: int = 0
    device: str = "auto"
    gradient_checkpointing: bool = True
    quantization: Literal["nf4", "none"] = "nf4"
    """How the base is held while training: 4-bit NF4 (QLoRA) or unquantised (bf16 on CUDA, fp32 on CPU)."""
    share_prefix: bool = True
    """Run the shared prompt prefix once per batch when that is exact (never with gradient checkpointing)."""
    eval_batch_size: int = 32
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    """Score at most this many tickets per split (recorded in the manifest); None scores them all."""
    tiny_vocab_size: int = 4000
    tiny_hidden_size: int = 128
    tiny_pretrain_epochs: int = 9
    tiny_pretrain_lr: float = 3e-3
    tiny_text_loss_weight: float = 0.3
    """Weight of the next-token loss on the ticket text during tiny pre-training (the answer's weight is 1)."""

    def __post_init__(self) -> None:
        checks = {
            "base_model": bool(self.base_model.strip()),
            "lora_r": self.lora_r >= 1,
            "lora_alpha": self.lora_alpha >= 1,
            "lora_dropout": 0 <= self.lora_dropout < 1,
            "target_modules": bool(self.target_modules) and all(isinstance(m, str) and m for m in self.target_modules),
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "grad_accumulation": self.grad_accumulation >= 1,
            "learning_rate": 0 < self.learning_rate < 1,
            "weight_decay": self.weight_decay >= 0,
            "warmup_ratio": 0 <= self.warmup_ratio < 1,
            "max_length": 64 <= self.max_length <= 131072,
            "patience": self.patience >= 1,
            "quantization": self.quantization in ("nf4", "none"),
            "eval_batch_size": self.eval_batch_size >= 1,
            "max_train_examples": self.max_train_examples is None or self.max_train_examples >= 1,
            "max_eval_examples": self.max_eval_examples is None or self.max_eval_examples >= 1,
            "tiny_vocab_size": self.tiny_vocab_size >= 300,
            "tiny_hidden_size": self.tiny_hidden_size >= 32 and self.tiny_hidden_size % 32 == 0,
            "tiny_pretrain_epochs": self.tiny_pretrain_epochs >= 0,
            "tiny_pretrain_lr": 0 < self.tiny_pretrain_lr < 1,
            "tiny_text_loss_weight": self.tiny_text_loss_weight >= 0,
        }
        check_arguments(self, checks, "adapter training argument")
        if self.train_experts and self.quantization == "nf4":
            raise DataError(
                "train_experts needs quantization 'none': with quantization 'nf4' the experts are held in 4 bits, "
                "and PEFT's target_parameters cannot wrap a 4-bit parameter (it would match nothing)"
            )
        wrong = [m for m in self.target_modules if m in ("experts", "router", "mlp")]
        if wrong:
            raise DataError(
                f"target_modules {wrong} are not linear layers (GPT-OSS experts are raw parameters); "
                "keep q_proj/k_proj/v_proj/o_proj and set train_experts=True to train the experts"
            )

    @classmethod
    def for_base_model(cls, base_model: str, **overrides: Any) -> AdapterTrainingArgs:
        """Defaults that suit the base: the tiny model trains unquantised on CPU at a higher rate, in minutes."""
        defaults: dict[str, Any] = {"base_model": base_model}
        if base_model == TINY:
            defaults.update(
                lora_dropout=0.0,
                epochs=2,
                batch_size=16,
                grad_accumulation=1,
                learning_rate=3e-3,
                warmup_ratio=0.05,
                max_length=640,
                gradient_checkpointing=False,
                quantization="none",
            )
        defaults.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**defaults)

    @property
    def target_parameters(self) -> list[str]:
        return list(EXPERT_PARAMETERS) if self.train_experts else []


# -- checks before anything heavy -------------------------------------------------------------------------------


def check_hardware(args: AdapterTrainingArgs) -> torch.device:
    """Fail fast, before any download: a hub base needs a CUDA GPU, NF4 needs bitsandbytes."""
    device = resolve_device(args.device)
    is_local = args.base_model == TINY or Path(args.base_model).is_dir()
    if not is_local and device.type != "cuda":
        raise HardwareError(
            f"training an adapter on {args.base_model!r} needs a CUDA GPU (QLoRA: 4-bit NF4 base, LoRA, gradient "
            "checkpointing; gpt-oss-20b plans at about 19 GiB, see `triage doctor`), but the device is "
            f"{device.type} "
            f"(torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}). "
            "On this machine use --base-model tiny, which trains a tiny GPT-OSS offline in a few minutes."
        )
    if args.quantization == "nf4":
        require_bitsandbytes()
    if not is_local and device.type == "cuda":
        check_training_fits(args)
    return device


def training_plan_for(args: AdapterTrainingArgs, gpu: Any) -> Any:
    """The QLoRA memory plan of these arguments on ``gpu`` (see ``models.memory_plan``)."""
    return training_plan(
        load_config(args.base_model),
        gpu,
        batch_size=args.batch_size,
        max_length=args.max_length,
        lora_r=args.lora_r,
        target_modules=args.target_modules,
        target_parameters=args.target_parameters,
        quantization=args.quantization,
        gradient_checkpointing=args.gradient_checkpointing,
    )


def check_training_fits(args: AdapterTrainingArgs) -> None:
    """Refuse, before loading 20B parameters, a run whose memory plan does not fit the GPU."""
    gpu = detected_gpu()
    if gpu is None:
        return
    plan = training_plan_for(args, gpu)
    if not plan.fits:
        raise HardwareError(
            "this training run does not fit the GPU; lower --batch-size or --max-length, or use a larger GPU:\n"
            + plan.render()
        )
    logger.info("memory plan:\n%s", plan.render())


# -- batches and losses -----------------------------------------------------------------------------------------


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length (sorted inside random chunks of 50 batches) to cut padding."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: lengths[i])
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def _schedule(total: int, warmup_ratio: float) -> Callable[[int], float]:
    warmup = max(1, int(total * warmup_ratio))
    return lambda step: min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup)))


def pretrain_loss(
    model: Any, rows: Sequence[Sequence[int]], answers: Sequence[Sequence[int]], pad_id: int, text_weight: float
) -> torch.Tensor:
    """Next-token loss on short rows (user turn + answer): answer tokens weigh 1, the other tokens ``text_weight``."""
    batch = build_batch([], rows, pad_id, shared=False).to(next(model.parameters()).device)
    logits = model(input_ids=batch.rows, attention_mask=batch.attention_mask, position_ids=batch.position_ids).logits
    logits = logits[:, :-1].float()
    targets = batch.rows[:, 1:]
    valid = batch.attention_mask[:, 1:].bool()
    is_answer = torch.zeros_like(valid)
    width = targets.shape[1]
    for i, answer in enumerate(answers):
        is_answer[i, width - len(answer) :] = True
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    ce = ce.view_as(targets)
    loss = ce[is_answer].mean()
    text = valid & ~is_answer
    if text_weight > 0 and bool(text.any()):
        loss = loss + text_weight * ce[text].mean()
    return loss


def _linear4bit_class() -> type[torch.nn.Module] | None:
    try:
        import bitsandbytes as bnb
    except ImportError:
        return None
    cls: type[torch.nn.Module] = bnb.nn.Linear4bit
    return cls


@contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """Eval mode for a no-grad pass in the middle of training (validation loss).

    On CPU, bitsandbytes repacks 4-bit weights for inference on the first eval-mode no-grad forward, and training
    that model afterwards fails or silently learns nothing (FACTS.md). Keeping the ``Linear4bit`` layers in train
    mode only skips that repack; everything else (dropout) is in eval mode.
    """
    model.eval()
    linear4bit = _linear4bit_class()
    if linear4bit is not None:
        for module in model.modules():
            if isinstance(module, linear4bit):
                module.train()
    try:
        yield
    finally:
        model.train()


def lora_gradient_report(model: Any) -> dict[str, int]:
    """How many LoRA tensors exist, have a gradient, and have a non-zero one (call after ``backward``)."""
    tensors = [(n, p) for n, p in model.named_parameters() if "lora_" in n and p.requires_grad]
    with_grad = [p for _, p in tensors if p.grad is not None]
    nonzero = [p for p in with_grad if bool(p.grad.detach().abs().sum() > 0)]
    return {"lora_tensors": len(tensors), "with_grad": len(with_grad), "nonzero_grad": len(nonzero)}


def check_lora_gradients(model: Any) -> dict[str, int]:
    """Raise unless every LoRA tensor received a gradient and some are non-zero (B starts at zero, so A's is 0)."""
    report = lora_gradient_report(model)
    if report["lora_tensors"] == 0 or report["with_grad"] < report["lora_tensors"] or report["nonzero_grad"] == 0:
        raise ModelError(
            f"LoRA is not learning: {report['with_grad']} of {report['lora_tensors']} LoRA tensors got a gradient, "
            f"{report['nonzero_grad']} non-zero. Put the model in train() before any forward (a 4-bit model that ran "
            "an eval-mode forward on CPU has repacked its weights for inference) and check target_modules."
        )
    return report


# -- models ----------------------------------------------------------------------------------------------------


def _build_tiny(dataset: Dataset, train: Sequence[Example], args: AdapterTrainingArgs) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM

    taxonomy = dataset.taxonomy
    extra = [system_prompt(taxonomy), "Ticket:", *taxonomy.names, SEPARATOR, NONE_ANSWER]
    tokenizer = train_llm_tokenizer(
        (ex.text for ex in train), extra, vocab_size=args.tiny_vocab_size, max_length=args.max_length
    )
    config = tiny_gpt_oss_config(
        len(tokenizer),
        int(tokenizer.pad_token_id),
        int(tokenizer.eos_token_id),
        max_length=max(2048, args.max_length + 128),
        hidden_size=args.tiny_hidden_size,
    )
    return AutoModelForCausalLM.from_config(config), tokenizer


def _pretrain_tiny(
    model: Any,
    tokenizer: Any,
    grammar: AnswerGrammar,
    dataset: Dataset,
    train: Sequence[Example],
    args: AdapterTrainingArgs,
    device: torch.device,
    progress: bool,
) -> dict[str, Any]:
    """Short pre-training of the tiny base: user turn (no system prompt) + answer, next-token loss."""
    started = time.perf_counter()
    short = PromptEncoder(tokenizer, dataset.taxonomy, args.max_length, system=False)
    tickets = short.ticket_ids([ex.text for ex in train])
    answers = [grammar.answer_token_ids(ex.labels) for ex in train]
    rows = [[*short.prefix_ids, *t, *a] for t, a in zip(tickets, answers, strict=True)]
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.tiny_pretrain_lr, weight_decay=0.01)
    batch_size = 32
    steps = math.ceil(len(rows) / batch_size) * args.tiny_pretrain_epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(steps, 0.05))
    rng = random.Random(args.seed)
    pad_id = int(tokenizer.pad_token_id)
    losses: list[float] = []
    bar = tqdm(total=steps, desc="pretrain-tiny", unit="step", disable=not progress)
    for epoch in range(1, args.tiny_pretrain_epochs + 1):
        running, count = 0.0, 0
        for batch in _batches([len(r) for r in rows], batch_size, rng):
            loss = pretrain_loss(
                model, [rows[i] for i in batch], [answers[i] for i in batch], pad_id, args.tiny_text_loss_weight
            )
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            running, count = running + loss.item(), count + 1
            bar.update(1)
        losses.append(round(running / max(count, 1), 4))
        bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.3f}")
        logger.info("tiny pre-training epoch %d loss %.4f", epoch, losses[-1])
    bar.close()
    return {"epochs": args.tiny_pretrain_epochs, "loss": losses, "seconds": round(time.perf_counter() - started, 1)}


def _load_hub_base(args: AdapterTrainingArgs, device: torch.device) -> tuple[Any, Any, str]:
    from transformers import AutoConfig, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(args.base_model)
        tokenizer = AutoTokenizer.from_pretrained(args.base_model)
    except OSError as exc:
        raise CheckpointError(
            f"cannot load base model {args.base_model!r}: {exc}. It must be a local folder, in the Hugging Face "
            "cache or downloadable; on an offline machine use --base-model tiny."
        ) from exc
    model, used = load_causal_lm(args.base_model, args.quantization, device, config)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, used


def _prepare_for_training(model: Any, args: AdapterTrainingArgs) -> Any:
    """Freeze the base, upcast small half-precision tensors, enable gradient checkpointing; then wrap in LoRA.

    This is what ``peft.prepare_model_for_kbit_training`` does, except that GPT-OSS's MoE expert weights (stay
    unquantised by bitsandbytes, ~20B parameters for gpt-oss-20b) are left in bf16 instead of being cast to fp32,
    which alone would need ~80 GB.
    """
    from peft import LoraConfig, get_peft_model

    for param in model.parameters():
        param.requires_grad_(False)
    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
        for name, param in model.named_parameters():
            is_half = param.dtype in (torch.float16, torch.bfloat16)
            if is_half and type(param).__name__ != "Params4bit" and ".experts." not in name:
                param.data = param.data.float()
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
        model.config.use_cache = False
    config = LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=list(args.target_modules),
        target_parameters=args.target_parameters or None,
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        peft_model = get_peft_model(model, config)
    except ValueError as exc:
        raise DataError(f"LoRA cannot target {args.target_modules} / {args.target_parameters}: {exc}") from exc
    peft_model.peft_config["default"].base_model_name_or_path = args.base_model
    return peft_model


def _optimizer(model: Any, args: AdapterTrainingArgs, device: torch.device) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if device.type == "cuda":  # paged 8-bit AdamW: optimizer state in 8 bits, paged out under memory pressure
        bnb = require_bitsandbytes()
        optimizer: torch.optim.Optimizer = bnb.optim.PagedAdamW8bit(
            params, lr=args.learning_rate, weight_decay=args.weight_decay
        )
        return optimizer
    return torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.weight_decay)


# -- training ---------------------------------------------------------------------------------------------------


def _validation_loss(
    model: Any,
    encoder: PromptEncoder,
    rows: Sequence[Sequence[int]],
    answers: Sequence[Sequence[int]],
    args: AdapterTrainingArgs,
    shared: bool,
    device: torch.device,
) -> float:
    total, count = 0.0, 0
    pad_id = int(encoder.tokenizer.pad_token_id)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    with eval_mode(model), torch.no_grad():
        for start in range(0, len(order), args.eval_batch_size):
            chunk = order[start : start + args.eval_batch_size]
            batch = build_batch(encoder.prefix_ids, [[*rows[i], *answers[i]] for i in chunk], pad_id, shared)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = answer_loss(model, batch.to(device), [answers[i] for i in chunk])
            total, count = total + float(loss) * len(chunk), count + len(chunk)
    return total / max(count, 1)


def _score_splits(
    model: Any,
    encoder: PromptEncoder,
    grammar: AnswerGrammar,
    dataset: Dataset,
    args: AdapterTrainingArgs,
) -> tuple[dict[str, Any], dict[str, int], float]:
    """Constrained generation on every evaluation split; ``(metrics, tickets scored per split, ms per ticket)``."""
    labels = dataset.taxonomy.names
    metrics: dict[str, Any] = {}
    counts: dict[str, int] = {}
    seconds, tickets = 0.0, 0
    model.eval()
    for split in EVAL_SPLITS:
        if split not in dataset.splits:
            continue
        examples = dataset.split(split)[: args.max_eval_examples]
        started = time.perf_counter()
        predicted = generate_labels(
            model,
            encoder,
            grammar,
            [ex.text for ex in examples],
            batch_size=args.eval_batch_size,
            max_new_tokens=grammar.max_answer_tokens,
            share_prefix=args.share_prefix,
        )
        seconds += time.perf_counter() - started
        tickets += len(examples)
        metrics[split] = score(label_matrix(examples, labels), multi_hot(predicted, labels), labels).summary()
        counts[split] = len(examples)
        logger.info(
            "%s: F1 micro %.3f, exact match %.3f", split, metrics[split]["f1_micro"], metrics[split]["exact_match"]
        )
    return metrics, counts, 1000 * seconds / max(tickets, 1)


def train_adapter(data: str | Path, out: str | Path, args: AdapterTrainingArgs, progress: bool = True) -> Manifest:
    """Train a LoRA adapter, score every split with constrained generation, write ``out`` atomically."""
    started = time.perf_counter()
    device = check_hardware(args)
    _seed(args.seed)
    dataset = load_dataset(data)
    train = dataset.split("train")[: args.max_train_examples]
    validation = dataset.split("validation")[: args.max_eval_examples]
    tiny = args.base_model == TINY
    extra: dict[str, Any] = {"prompt_version": PROMPT_VERSION, "quantization_trained": args.quantization}

    with atomic_folder(out) as tmp:
        if tiny:
            model, tokenizer = _build_tiny(dataset, train, args)
            grammar = AnswerGrammar.from_tokenizer(tokenizer, dataset.taxonomy)
            extra["pretrain"] = _pretrain_tiny(model, tokenizer, grammar, dataset, train, args, device, progress)
            model.save_pretrained(tmp / BASE_FOLDER)
            tokenizer.save_pretrained(tmp / BASE_FOLDER)
            extra["base_path"] = BASE_FOLDER
            if args.quantization == "nf4":
                model, extra["quantization_trained"] = load_causal_lm(
                    str(tmp / BASE_FOLDER), "nf4", device, model.config
                )
        else:
            model, tokenizer, extra["quantization_trained"] = _load_hub_base(args, device)
            grammar = AnswerGrammar.from_tokenizer(tokenizer, dataset.taxonomy)
        extra["base_config"] = base_config_summary(model.config)
        model = _prepare_for_training(model, args).to(device)
        model.train()  # before any forward: see eval_mode and FACTS.md

        encoder = PromptEncoder(tokenizer, dataset.taxonomy, args.max_length)
        longest = args.max_length + grammar.max_answer_tokens
        shared = args.share_prefix and not args.gradient_checkpointing and prefix_sharing_exact(model.config, longest)
        train_rows = encoder.ticket_ids([ex.text for ex in train])
        train_answers = [grammar.answer_token_ids(ex.labels) for ex in train]
        val_rows = encoder.ticket_ids([ex.text for ex in validation])
        val_answers = [grammar.answer_token_ids(ex.labels) for ex in validation]
        pad_id = int(tokenizer.pad_token_id)

        optimizer = _optimizer(model, args, device)
        batches_per_epoch = math.ceil(len(train_rows) / args.batch_size)
        steps = math.ceil(batches_per_epoch / args.grad_accumulation) * args.epochs
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(steps, args.warmup_ratio))
        trainable = [p for p in model.parameters() if p.requires_grad]
        rng = random.Random(args.seed)
        best_loss, best_epoch, bad_epochs = math.inf, 0, 0
        best_state: dict[str, torch.Tensor] = {}
        history: list[dict[str, float]] = []
        gradient_report: dict[str, int] | None = None
        bar = tqdm(total=batches_per_epoch * args.epochs, desc="train-adapter", unit="batch", disable=not progress)
        for epoch in range(1, args.epochs + 1):
            model.train()
            running = 0.0
            batches = _batches(
                [len(r) + len(a) for r, a in zip(train_rows, train_answers, strict=True)], args.batch_size, rng
            )
            for number, batch_index in enumerate(batches, start=1):
                rows = [[*train_rows[i], *train_answers[i]] for i in batch_index]
                batch = build_batch(encoder.prefix_ids, rows, pad_id, shared).to(device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    loss = answer_loss(model, batch, [train_answers[i] for i in batch_index])
                (loss / args.grad_accumulation).backward()
                if gradient_report is None:
                    gradient_report = check_lora_gradients(model)
                if number % args.grad_accumulation == 0 or number == len(batches):
                    torch.nn.utils.clip_grad_norm_(trainable, 1.0)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                running += loss.item()
                bar.update(1)
            val_loss = _validation_loss(model, encoder, val_rows, val_answers, args, shared, device)
            history.append({"epoch": epoch, "loss": round(running / len(batches), 4), "val_loss": round(val_loss, 4)})
            bar.set_postfix(epoch=epoch, loss=f"{running / len(batches):.3f}", val_loss=f"{val_loss:.3f}")
            logger.info("adapter epoch %d loss %.4f val loss %.4f", epoch, running / len(batches), val_loss)
            if val_loss < best_loss:
                best_loss, best_epoch, bad_epochs = val_loss, epoch, 0
                best_state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
            else:
                bad_epochs += 1
                if bad_epochs >= args.patience:
                    logger.info("early stopping after epoch %d (best %d)", epoch, best_epoch)
                    break
        bar.close()
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name in best_state:
                    param.copy_(best_state[name])
        train_seconds = time.perf_counter() - started

        metrics, counts, ms_per_ticket = _score_splits(model, encoder, grammar, dataset, args)
        metrics["train_seconds"] = round(train_seconds, 1)
        metrics["total_seconds"] = round(time.perf_counter() - started, 1)
        metrics["best_epoch"] = best_epoch
        metrics["best_val_loss"] = round(best_loss, 4)
        metrics["history"] = history
        metrics["generation_ms_per_ticket"] = round(ms_per_ticket, 2)
        metrics["eval_batch_size"] = args.eval_batch_size
        metrics["evaluated_tickets"] = counts
        extra["prefix_shared"] = shared
        extra["lora_gradients"] = gradient_report

        short = TINY if tiny else args.base_model.rstrip("/").split("/")[-1]
        manifest = Manifest(
            kind="adapter",
            version=f"{short}-lora-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}-{dataset.fingerprint()[:8]}",
            base_model=args.base_model,
            taxonomy=dataset.taxonomy.to_dict(),
            thresholds=[],
            temperatures=[],
            max_length=args.max_length,
            training_args=asdict(args),
            metrics=metrics,
            data_fingerprint=dataset.fingerprint(),
            extra=extra,
        )
        model.save_pretrained(tmp, save_embedding_layers=False)
        tokenizer.save_pretrained(tmp)
        manifest.write(tmp)
        write_model_card(tmp, manifest, f"triage LLM adapter ({args.base_model}, LoRA r={args.lora_r})")
    logger.info("adapter written to %s in %.1fs", out, time.perf_counter() - started)
    return manifest
