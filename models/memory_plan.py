"""Memory plans: what serving and QLoRA training need on one GPU, counted from the real model configurations.

Weights are counted, not guessed: the models are built on the ``meta`` device from their published configs (shipped
in ``models/configs/``, no weights), every parameter gets the storage ``models.quantize.param_storage`` gives it (the
same decision the loader applies), and LoRA is counted by wrapping the meta model in PEFT with the adapter's
settings. KV cache, activations and optimizer state are arithmetic over the configured batch and context, each
line saying how it was counted. ``triage doctor`` prints a plan; the server refuses to start on a CUDA GPU a plan
says it cannot fit, and the trainer refuses to start a QLoRA run that cannot fit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from models.errors import CheckpointError, HardwareError
from models.quantize import (
    Storage,
    is_expert_weight,
    is_moe_config,
    named_parameter_modules,
    param_storage,
    prequantized_method,
    resolve_quantization,
    storage_bytes,
)

GIB = 1024**3
CONFIG_DIR = Path(__file__).parent / "configs"
SHIPPED_CONFIGS = {
    "openai/gpt-oss-20b": CONFIG_DIR / "openai--gpt-oss-20b.json",
    "microsoft/mdeberta-v3-base": CONFIG_DIR / "microsoft--mdeberta-v3-base.json",
}
"""Published ``config.json`` files (no weights), so plans for the production models need no download."""
CUDA_CONTEXT_BYTES = int(0.6 * GIB)
"""CUDA context, cuBLAS workspace and kernels loaded by torch: about 0.4-0.6 GiB on a 40-series card."""
FRAGMENTATION = 0.05
"""Share of the allocated bytes the caching allocator loses to fragmentation."""
HEADROOM_BYTES = int(1.5 * GIB)
"""What a plan leaves free of the card's memory: a display, another process, a spike nobody counted."""


@dataclass(frozen=True)
class GPU:
    name: str
    memory_bytes: int
    compute_capability: tuple[int, int]


GPUS = {
    "rtx4090": GPU("NVIDIA GeForce RTX 4090", 24564 * 2**20, (8, 9)),
    "rtx3090": GPU("NVIDIA GeForce RTX 3090", 24576 * 2**20, (8, 6)),
    "l4": GPU("NVIDIA L4", 23034 * 2**20, (8, 9)),
    "a10g": GPU("NVIDIA A10G", 23028 * 2**20, (8, 6)),
    "a100-40gb": GPU("NVIDIA A100-SXM4-40GB", 40960 * 2**20, (8, 0)),
    "a100-80gb": GPU("NVIDIA A100-SXM4-80GB", 81920 * 2**20, (8, 0)),
    "h100": GPU("NVIDIA H100 80GB HBM3", 81559 * 2**20, (9, 0)),
}
"""Memory as ``nvidia-smi`` reports it (MiB)."""


def detected_gpu() -> GPU | None:
    """The first CUDA GPU torch sees, or None."""
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return GPU(props.name, int(props.total_memory), (props.major, props.minor))


def named_gpu(name: str) -> GPU:
    if name not in GPUS:
        raise HardwareError(f"unknown GPU {name!r}; choose one of {', '.join(GPUS)}")
    return GPUS[name]


# -- configs and meta models ---------------------------------------------------------------------------------------


def load_config(model: str | Path) -> Any:
    """A model's config: a local folder, a config shipped here (published production models), else the HF cache."""
    from transformers import AutoConfig

    folder = Path(model)
    if (folder / "config.json").exists():
        return AutoConfig.from_pretrained(folder)
    if str(model) in SHIPPED_CONFIGS:
        data = json.loads(SHIPPED_CONFIGS[str(model)].read_text())
        return AutoConfig.for_model(**data)
    try:
        return AutoConfig.from_pretrained(str(model))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"no config for {model!r}: not a local folder, not shipped, not cached ({exc})") from exc


def meta_model(config: Any, kind: str) -> Any:
    """The model built on the ``meta`` device: shapes and dtypes, no memory. ``kind``: causal-lm or classifier."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    config = _plain(config)
    with torch.device("meta"):
        if kind == "causal-lm":
            return AutoModelForCausalLM.from_config(config)
        return AutoModelForSequenceClassification.from_config(config)


def _plain(config: Any) -> Any:
    """A copy without ``quantization_config``: the plan applies quantisation itself, per parameter."""
    import copy

    config = copy.deepcopy(config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    return config


# -- plans ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    component: str
    bytes: int
    how: str


@dataclass
class Plan:
    """Line items that add up to what one GPU must hold, and whether that fits."""

    title: str
    gpu: GPU
    items: list[Item] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, component: str, nbytes: int, how: str) -> None:
        self.items.append(Item(component, int(nbytes), how))

    @property
    def allocated(self) -> int:
        return sum(item.bytes for item in self.items)

    @property
    def total(self) -> int:
        """Allocated bytes plus fragmentation plus the CUDA context."""
        return int(self.allocated * (1 + FRAGMENTATION)) + CUDA_CONTEXT_BYTES

    @property
    def budget(self) -> int:
        return self.gpu.memory_bytes - HEADROOM_BYTES

    @property
    def fits(self) -> bool:
        return self.total <= self.budget

    def by_component(self, prefix: str) -> int:
        return sum(item.bytes for item in self.items if item.component.startswith(prefix))

    def render(self) -> str:
        width = max(len(item.component) for item in [*self.items, Item("CUDA context + fragmentation", 0, "")])
        lines = [f"{self.title} on {self.gpu.name} ({self.gpu.memory_bytes / GIB:.1f} GiB)"]
        for item in self.items:
            lines.append(f"  {item.component:<{width}}  {item.bytes / GIB:7.2f} GiB  {item.how}")
        lines.append(
            f"  {'CUDA context + fragmentation':<{width}}  {(self.total - self.allocated) / GIB:7.2f} GiB  "
            f"{CUDA_CONTEXT_BYTES / GIB:.1f} GiB context + {FRAGMENTATION:.0%} of the allocations"
        )
        verdict = "fits" if self.fits else "DOES NOT FIT"
        lines.append(
            f"  {'total':<{width}}  {self.total / GIB:7.2f} GiB  {verdict}: budget {self.budget / GIB:.1f} GiB "
            f"(card minus {HEADROOM_BYTES / GIB:.1f} GiB headroom)"
        )
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "gpu": self.gpu.name,
            "gpu_gib": round(self.gpu.memory_bytes / GIB, 2),
            "items": [{"component": i.component, "gib": round(i.bytes / GIB, 3), "how": i.how} for i in self.items],
            "total_gib": round(self.total / GIB, 2),
            "budget_gib": round(self.budget / GIB, 2),
            "fits": self.fits,
            "notes": list(self.notes),
        }


def weight_bytes_by_storage(model: Any, mode: str, device_type: str) -> dict[Storage, tuple[int, int]]:
    """(parameters, bytes) per storage kind for a (meta) model under a quantisation mode."""
    moe = is_moe_config(model.config)
    totals: dict[Storage, tuple[int, int]] = {}
    for name, param, owner in named_parameter_modules(model):
        storage = param_storage(name, owner, mode, moe, device_type)
        count, nbytes = totals.get(storage, (0, 0))
        totals[storage] = (count + param.numel(), nbytes + storage_bytes(param.numel(), storage))
    return totals


def lora_parameters(model: Any, r: int, target_modules: Sequence[str], target_parameters: Sequence[str]) -> int:
    """LoRA parameters PEFT adds to ``model`` (a meta model) for these settings."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r,
        target_modules=list(target_modules),
        target_parameters=list(target_parameters) or None,
        task_type="CAUSAL_LM",
    )
    wrapped = get_peft_model(model, config)
    return sum(p.numel() for n, p in wrapped.named_parameters() if "lora_" in n)


def largest_expert_layer(model: Any) -> int:
    """Elements of the largest layer's expert weights: what NF4 dequantises at once in that layer's forward."""
    per_layer: dict[str, int] = {}
    for name, param in model.named_parameters():
        if is_expert_weight(name):
            layer = name.split(".mlp.")[0]
            per_layer[layer] = per_layer.get(layer, 0) + param.numel()
    return max(per_layer.values(), default=0)


def kv_bytes_per_token(config: Any, dtype_bytes: int, context: int) -> int:
    """KV cache per sequence token, all layers; a sliding-window layer holds at most its window."""
    layers = int(config.num_hidden_layers)
    heads = int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
    per_layer = 2 * heads * head_dim * dtype_bytes
    layer_types = list(getattr(config, "layer_types", None) or ["full_attention"] * layers)
    window = int(getattr(config, "sliding_window", None) or context)
    held = sum(min(window, context) if t == "sliding_attention" else context for t in layer_types)
    return per_layer * held // max(1, context)


def _add_llm_weights(plan: Plan, model: Any, mode: str, device_type: str, label: str) -> None:
    for storage, (count, nbytes) in sorted(weight_bytes_by_storage(model, mode, device_type).items()):
        what = {"nf4": "MoE experts", "mxfp4": "MoE experts", "linear4bit": "linear layers", "fp32": "norms"}.get(
            storage, "weights"
        )
        plan.add(f"{label} {what} ({storage})", nbytes, f"{_count(count)} params on the meta device")


def _count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


@dataclass(frozen=True)
class ServingShape:
    """What the server is configured to hold at once (from ``Settings``)."""

    encoder_max_batch_tokens: int = 8192
    encoder_max_length: int = 512
    llm_batch: int = 8
    llm_input_tokens: int = 1024
    llm_new_tokens: int = 48
    lora_r: int = 16
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


def serving_plan(
    encoder: Any | None, llm: Any | None, gpu: GPU, shape: ServingShape, llm_quantization: str = "auto"
) -> Plan:
    """Encoder (bf16) + LLM (quantised as the server would) + LoRA + KV cache + activations, on one GPU."""
    plan = Plan("serving", gpu)
    if encoder is not None:
        model = meta_model(encoder, "classifier")
        params = sum(p.numel() for p in model.parameters())
        plan.add("encoder weights (bf16)", 2 * params, f"{_count(params)} params on the meta device")
        tokens = shape.encoder_max_batch_tokens
        heads, hidden = int(encoder.num_attention_heads), int(encoder.hidden_size)
        length = min(shape.encoder_max_length, tokens)
        # one layer at a time in inference: c2c + c2p + p2c scores and the softmax (bf16), hidden and FFN states
        attention = 4 * tokens * length * heads * 2
        states = tokens * (8 * hidden + 2 * int(encoder.intermediate_size)) * 2
        plan.add(
            "encoder activations",
            attention + states,
            f"{tokens} tokens per pass (TRIAGE_MAX_BATCH_TOKENS) up to {length} long, one layer live",
        )
    if llm is not None:
        mode = resolve_quantization(llm_quantization, "cuda", is_moe_config(llm), prequantized_method(llm))
        model = meta_model(llm, "causal-lm")
        _add_llm_weights(plan, model, mode, "cuda", "LLM")
        lora = lora_parameters(model, shape.lora_r, shape.lora_targets, ())
        plan.add("LoRA adapter (fp32)", 4 * lora, f"r={shape.lora_r} on {', '.join(shape.lora_targets)}")
        if mode == "nf4" and is_moe_config(llm):
            transient = 2 * largest_expert_layer(model)
            plan.add("NF4 expert dequantisation", transient, "one layer's experts in bf16 during its forward")
        context = shape.llm_input_tokens + shape.llm_new_tokens
        per_token = kv_bytes_per_token(llm, 2, context)
        plan.add(
            "LLM KV cache (bf16)",
            per_token * context * shape.llm_batch,
            f"{shape.llm_batch} tickets x {context} tokens (TRIAGE_LLM_MAX_BATCH_SIZE, max input + new tokens)",
        )
        heads, hidden = int(llm.num_attention_heads), int(llm.hidden_size)
        # eager attention with sinks: scores, scores+sink, softmax (bf16), one layer at a time; hidden/MLP states
        attention = 3 * shape.llm_batch * heads * shape.llm_input_tokens * (shape.llm_input_tokens + 1) * 2
        states = shape.llm_batch * shape.llm_input_tokens * (6 * hidden + 4 * int(llm.intermediate_size)) * 2
        plan.add("LLM prefill activations", attention + states, "eager attention (sinks), one layer live")
        plan.notes.append(f"LLM quantization '{llm_quantization}' resolves to '{mode}' on CUDA here")
    return plan


def training_plan(
    llm: Any,
    gpu: GPU,
    batch_size: int,
    max_length: int,
    lora_r: int,
    target_modules: Sequence[str],
    target_parameters: Sequence[str] = (),
    quantization: str = "nf4",
    gradient_checkpointing: bool = True,
    answer_tokens: int = 48,
) -> Plan:
    """QLoRA: the quantised base, LoRA weights + grads + paged 8-bit AdamW state, checkpointed activations."""
    plan = Plan("QLoRA training", gpu)
    mode = resolve_quantization(quantization, "cuda", is_moe_config(llm), prequantized_method(llm))
    model = meta_model(llm, "causal-lm")
    _add_llm_weights(plan, model, mode, "cuda", "base")
    lora = lora_parameters(model, lora_r, target_modules, target_parameters)
    plan.add(
        "LoRA weights + grads (fp32)",
        8 * lora,
        f"{_count(lora)} params, r={lora_r} on {', '.join([*target_modules, *target_parameters])}",
    )
    plan.add("optimizer state (paged 8-bit AdamW)", 2 * lora, "two 8-bit moments per LoRA parameter")
    tokens = batch_size * (max_length + answer_tokens)
    hidden, heads = int(llm.hidden_size), int(llm.num_attention_heads)
    layers = int(llm.num_hidden_layers)
    seq = max_length + answer_tokens
    if gradient_checkpointing:
        plan.add("checkpointed layer inputs", tokens * hidden * 2 * layers, f"{batch_size} x {seq} tokens x {layers}")
        live_layers = 1
    else:
        live_layers = layers
    attention = 4 * batch_size * heads * seq * (seq + 1) * 2  # scores, +sinks, softmax, its saved output (bf16)
    mlp = tokens * (10 * hidden + 6 * int(llm.intermediate_size)) * 2
    plan.add(
        "activations of the recomputed layer" if gradient_checkpointing else "activations of every layer",
        live_layers * (attention + mlp),
        "eager attention with sinks kept for backward, MLP states",
    )
    if mode == "nf4" and is_moe_config(llm):
        plan.add(
            "NF4 expert dequantisation",
            2 * 2 * largest_expert_layer(model),
            "one layer's experts in bf16, held by forward and by backward",
        )
    vocab = int(llm.vocab_size)
    plan.add("answer logits (fp32)", 2 * batch_size * (answer_tokens + 1) * vocab * 4, "logits_to_keep: answers only")
    plan.notes.append(f"base quantization '{quantization}' resolves to '{mode}' on CUDA here")
    return plan


# -- what the server and the doctor ask ----------------------------------------------------------------------------


def adapter_base_and_lora(adapter_path: Path, base_override: str | None = None) -> tuple[str, int, tuple[str, ...]]:
    """The base an adapter folder is served on, and its LoRA rank and target modules (from its manifest)."""
    from models.checkpoint import read_manifest
    from models.llm_local import resolve_base

    manifest = read_manifest(adapter_path, kind="adapter")
    args = manifest.training_args
    targets = tuple(args.get("target_modules") or ServingShape.lora_targets)
    return resolve_base(adapter_path, manifest, base_override), int(args.get("lora_r", 16)), targets


def plan_serving(
    encoder_path: Path | str,
    adapter_path: Path | None,
    gpu: GPU,
    shape: ServingShape,
    llm_quantization: str = "auto",
    base_override: str | None = None,
) -> Plan:
    """The serving plan of an encoder checkpoint (or a model id) and, when the LLM runs in this process, an adapter."""
    llm = None
    if adapter_path is not None:
        base, rank, targets = adapter_base_and_lora(adapter_path, base_override)
        llm = load_config(base)
        shape = ServingShape(**{**shape.__dict__, "lora_r": rank, "lora_targets": targets})
    return serving_plan(load_config(encoder_path), llm, gpu, shape, llm_quantization)


def check_serving_fits(
    encoder_path: Path | str,
    adapter_path: Path | None,
    shape: ServingShape,
    llm_quantization: str = "auto",
    base_override: str | None = None,
    gpu: GPU | None = None,
) -> Plan | None:
    """Raise ``HardwareError`` with the plan when serving cannot fit ``gpu`` (default: the CUDA GPU torch sees;
    without one there is nothing to check and None is returned)."""
    gpu = gpu or detected_gpu()
    if gpu is None:
        return None
    plan = plan_serving(encoder_path, adapter_path, gpu, shape, llm_quantization, base_override)
    if not plan.fits:
        raise HardwareError(
            "this configuration cannot fit the GPU; lower TRIAGE_LLM_MAX_BATCH_SIZE or TRIAGE_MAX_BATCH_TOKENS, use "
            "TRIAGE_LLM_QUANTIZATION=auto or nf4, or serve the LLM remotely (TRIAGE_LLM_BACKEND=openai):\n"
            + plan.render()
        )
    return plan
