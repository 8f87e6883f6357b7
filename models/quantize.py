"""How a causal-LM base is held in memory: one storage decision per parameter, shared by the loader, the trainer
and the memory plan (``models.memory_plan``), so the bytes a plan counts are the bytes a load allocates.

Modes (``LLMConfig.quantization`` after ``resolve_quantization``):

- ``nf4`` on a mixture-of-experts base (GPT-OSS): the expert weights (gate_up_proj, down_proj: 19.1B of
  gpt-oss-20b's 20.9B parameters) are stored in bitsandbytes NF4 through a parametrisation
  (``bitsandbytes.nn.parametrize.replace_parameter_4bit``, double-quantised statistics); attention, router,
  embeddings and norms stay in the compute dtype. ``load_moe_nf4`` streams the checkpoint tensor by tensor, so a
  hub checkpoint whose experts ship in MXFP4 is dequantised one tensor at a time and re-quantised on arrival: the
  device never holds more than one bf16 expert tensor beside the 4-bit model, and the host never holds the model.
- ``nf4`` on a dense base: bitsandbytes ``Linear4bit`` on every linear layer but the output head
  (``BitsAndBytesConfig``, transformers' own loader).
- ``mxfp4``: GPT-OSS's native MXFP4 experts through transformers' kernels (CUDA, triton, the ``kernels`` package).
- ``none``: the compute dtype (bf16 on CUDA, fp32 on the CPU); a GPT-OSS hub checkpoint is dequantised to bf16.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from models.errors import CheckpointError, HardwareError

logger = logging.getLogger(__name__)

Storage = Literal["nf4", "mxfp4", "linear4bit", "bf16", "fp32"]
EXPERT_WEIGHTS = ("gate_up_proj", "down_proj")
"""GPT-OSS's MoE expert weights: raw 3-D parameters of ``mlp.experts`` (``Linear4bit`` cannot hold them)."""
NF4_BLOCKSIZE = 64
"""bitsandbytes' 4-bit block size: one absmax per 64 weights (double-quantised to 8 bits, one fp32 per 256 blocks)."""
MXFP4_BLOCK = 32
"""MXFP4: 32 FP4 values share one 8-bit exponent."""
KEEP_FP32 = ("input_layernorm", "post_attention_layernorm", "model.norm")
"""GPT-OSS keeps its RMS norms in fp32 (``_keep_in_fp32_modules``)."""


def is_expert_weight(name: str) -> bool:
    """``model.layers.3.mlp.experts.gate_up_proj`` (not its bias)."""
    return ".experts." in name and name.rsplit(".", 1)[-1] in EXPERT_WEIGHTS


def is_moe_config(config: Any) -> bool:
    return int(getattr(config, "num_local_experts", 0) or 0) > 1


def prequantized_method(model_config: Any) -> str | None:
    """The quantisation a checkpoint ships in (``mxfp4`` for openai/gpt-oss-*), or None for plain weights."""
    config = getattr(model_config, "quantization_config", None)
    if config is None:
        return None
    method = config.get("quant_method") if isinstance(config, dict) else getattr(config, "quant_method", None)
    return str(getattr(method, "value", method)) if method is not None else None


def mxfp4_kernels_available() -> bool:
    """Whether transformers could run native MXFP4 here: triton 3.4+ and the ``kernels`` package (plus a CUDA GPU)."""
    from transformers.utils import is_kernels_available, is_triton_available

    return bool(is_triton_available("3.4.0") and is_kernels_available())


def resolve_quantization(requested: str, device_type: str, moe: bool, prequantized: str | None) -> str:
    """``auto``: on CUDA, native MXFP4 for an MXFP4 checkpoint when its kernels are installed, else NF4; on the CPU,
    none. Other modes stay as asked. ``auto`` never resolves to a bf16-dequantised GPT-OSS on CUDA."""
    if requested != "auto":
        return requested
    if device_type != "cuda":
        return "none"
    if prequantized == "mxfp4" and moe and mxfp4_kernels_available():
        return "mxfp4"
    return "nf4"


def compute_dtype(device_type: str) -> torch.dtype:
    return torch.bfloat16 if device_type == "cuda" else torch.float32


def param_storage(name: str, module_type: str, mode: str, moe: bool, device_type: str) -> Storage:
    """How one parameter of the base is stored under ``mode``: the single decision the loader and the plan share.

    ``module_type`` is the class name of the module that owns the parameter (``Linear`` for bitsandbytes' choice).
    """
    dense: Storage = "bf16" if device_type == "cuda" else "fp32"
    if moe and any(part in name for part in KEEP_FP32):
        return "fp32"
    if moe and is_expert_weight(name):
        if mode == "nf4":
            return "nf4"
        if mode == "mxfp4":
            return "mxfp4"
        return dense
    if mode == "nf4" and not moe and module_type == "Linear" and name.endswith(".weight") and "lm_head" not in name:
        return "linear4bit"
    return dense


def storage_bytes(numel: int, storage: Storage) -> int:
    """Bytes one parameter takes on the device, quantisation statistics included."""
    if storage == "bf16":
        return 2 * numel
    if storage == "fp32":
        return 4 * numel
    if storage in ("nf4", "linear4bit"):  # 4-bit codes, 8-bit absmax per block, fp32 per 256 blocks (double quant)
        blocks = -(-numel // NF4_BLOCKSIZE)
        return -(-numel // 2) + blocks + 4 * -(-blocks // 256)
    if storage == "mxfp4":  # 4-bit codes, one 8-bit exponent per 32 values
        return -(-numel // 2) + -(-numel // MXFP4_BLOCK)
    raise ValueError(f"unknown storage {storage!r}")


def named_parameter_modules(model: nn.Module) -> Iterator[tuple[str, nn.Parameter, str]]:
    """(name, parameter, owning module's class name) for every parameter, tied ones once."""
    owners = {name: type(module).__name__ for name, module in model.named_modules()}
    for name, param in model.named_parameters():
        owner = name.rsplit(".", 1)[0] if "." in name else ""
        yield name, param, owners.get(owner, "")


# -- 4-bit experts -------------------------------------------------------------------------------------------------


def require_bitsandbytes() -> Any:
    """Import bitsandbytes or say how to get it."""
    try:
        import bitsandbytes
    except ImportError as exc:
        raise HardwareError(
            f"4-bit NF4 needs bitsandbytes, which cannot be imported ({exc}); `pip install 'bitsandbytes>=0.45'` "
            "or use quantization 'none'"
        ) from exc
    return bitsandbytes


def quantize_expert(module: nn.Module, name: str) -> None:
    """Store ``module.<name>`` (an expert weight) in NF4; reading the attribute dequantises it (cached per forward)."""
    require_bitsandbytes()
    from bitsandbytes.nn.parametrize import replace_parameter_4bit

    replace_parameter_4bit(module, name, compress_statistics=True, quant_type="nf4", blocksize=NF4_BLOCKSIZE)


def quantize_experts(model: nn.Module) -> int:
    """Put every MoE expert weight of an already loaded model in NF4; returns how many tensors were quantised."""
    count = 0
    for module_name, module in model.named_modules():
        for name in EXPERT_WEIGHTS:
            param = module._parameters.get(name)
            if param is not None and is_expert_weight(f"{module_name}.{name}"):
                quantize_expert(module, name)
                count += 1
    return count


def expert_storage_report(model: nn.Module) -> dict[str, int]:
    """How many expert weights are held in 4 bits and how many are not (for tests and ``/info``)."""
    from torch.nn.utils import parametrize

    report = {"nf4": 0, "dense": 0}
    for module_name, module in model.named_modules():
        for name in EXPERT_WEIGHTS:
            if not is_expert_weight(f"{module_name}.{name}"):
                continue
            if parametrize.is_parametrized(module, name):
                original = module.parametrizations[name].original
                report["nf4" if original.dtype == torch.uint8 else "dense"] += 1
            elif name in module._parameters:
                report["dense"] += 1
    return report


# -- streaming loader ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Shard:
    path: Path
    keys: list[str]


def _shards(folder: Path) -> list[_Shard]:
    """The safetensors files of a checkpoint folder and the tensor names in each (from the index when sharded)."""
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    if index.exists():
        weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
        by_file: dict[str, list[str]] = {}
        for key, file in weight_map.items():
            by_file.setdefault(file, []).append(key)
        return [_Shard(folder / file, keys) for file, keys in sorted(by_file.items())]
    single = folder / "model.safetensors"
    if not single.exists():
        raise CheckpointError(f"{folder} has no model.safetensors nor model.safetensors.index.json")
    with safe_open(str(single), framework="pt") as f:
        return [_Shard(single, list(f.keys()))]


def resolve_local_checkpoint(base: str) -> Path:
    """A local folder, or the hub id's snapshot folder in the Hugging Face cache (downloading it if allowed).

    Only the top-level weights: openai/gpt-oss-* also ship ``original/`` and ``metal/`` copies nobody here reads."""
    if Path(base).is_dir():
        return Path(base)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(base, allow_patterns=["*.json", "model*.safetensors", "*.jinja"]))
    except Exception as exc:  # the hub client raises many types (offline, not found, auth)
        raise CheckpointError(f"cannot find base model {base!r} locally or download it: {exc}") from exc


def _set_param(model: nn.Module, name: str, tensor: torch.Tensor) -> tuple[nn.Module, str]:
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name)
    old = module._parameters.get(attr)
    if old is None:
        raise CheckpointError(f"the checkpoint has tensor {name!r}, which the model has no parameter for")
    if tuple(old.shape) != tuple(tensor.shape):
        raise CheckpointError(f"tensor {name!r} has shape {tuple(tensor.shape)}, the model expects {tuple(old.shape)}")
    module._parameters[attr] = nn.Parameter(tensor, requires_grad=False)
    return module, attr


def load_moe_nf4(base: str | Path, device: torch.device, progress: bool = False) -> Any:
    """Load a mixture-of-experts causal LM with its experts in NF4, streaming the checkpoint one tensor at a time.

    Expert tensors arrive either plain (``gate_up_proj``) or in MXFP4 (``gate_up_proj_blocks`` + ``_scales``, as in
    openai/gpt-oss-*): the latter are dequantised on ``device`` with transformers' own MXFP4 decoder, then quantised
    to NF4 before the next tensor is read. Everything else is cast to the dtype the model declares for it.
    """
    from accelerate import init_empty_weights
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    require_bitsandbytes()
    folder = resolve_local_checkpoint(str(base))
    config = AutoConfig.from_pretrained(folder)
    if not is_moe_config(config):
        raise CheckpointError(f"{base} is not a mixture-of-experts model; load it with BitsAndBytesConfig instead")
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the experts are decoded here, not by transformers' quantiser
    dtype = compute_dtype(device.type)
    with init_empty_weights(include_buffers=False):
        model: Any = AutoModelForCausalLM.from_config(config, dtype=dtype)
    expected = {name for name, _ in model.named_parameters()}
    loaded: set[str] = set()
    pending: dict[str, torch.Tensor] = {}
    for shard in _shards(folder):
        keys = shard.keys
        if progress:
            logger.info("loading %s (%d tensors)", shard.path.name, len(keys))
        with safe_open(str(shard.path), framework="pt", device="cpu") as f:
            for key in keys:
                tensor = f.get_tensor(key)
                if key.endswith(("_blocks", "_scales")):
                    stem, kind = key.rsplit("_", 1)
                    pending[f"{stem}_{kind}"] = tensor
                    if f"{stem}_blocks" in pending and f"{stem}_scales" in pending:
                        blocks = pending.pop(f"{stem}_blocks").to(device)
                        scales = pending.pop(f"{stem}_scales").to(device)
                        dense = convert_moe_packed_tensors(blocks, scales, dtype=dtype)
                        del blocks, scales
                        _load_one(model, stem, dense)
                        loaded.add(stem)
                    continue
                _load_one(model, key, tensor.to(device))
                loaded.add(key)
    if pending:
        raise CheckpointError(f"{base}: MXFP4 tensors without their pair: {', '.join(sorted(pending))}")
    if getattr(config, "tie_word_embeddings", False) and "lm_head.weight" not in loaded:
        model.tie_weights()
        loaded.add("lm_head.weight")
    missing = sorted(expected - loaded)
    if missing:
        raise CheckpointError(f"{base} lacks {len(missing)} weight(s), e.g. {', '.join(missing[:4])}")
    model.to(device)  # the buffers (rotary frequencies) were built on the CPU
    return model


def _load_one(model: nn.Module, name: str, tensor: torch.Tensor) -> None:
    current = model.get_parameter(name)
    target = torch.float32 if any(part in name for part in KEEP_FP32) else current.dtype
    module, attr = _set_param(model, name, tensor.to(target) if tensor.is_floating_point() else tensor)
    if is_expert_weight(name):
        quantize_expert(module, attr)


# -- the one loader ------------------------------------------------------------------------------------------------


def check_mxfp4(device: torch.device) -> None:
    """Native MXFP4 (GPT-OSS's own weights) needs a CUDA GPU of compute capability 7.5+, triton 3.4+ and kernels."""
    from transformers.utils import is_kernels_available, is_triton_available

    missing = []
    if device.type != "cuda" or not torch.cuda.is_available():
        missing.append(f"a CUDA GPU (device is {device.type})")
    elif torch.cuda.get_device_capability(device) < (7, 5):
        missing.append(f"compute capability 7.5+ (found {torch.cuda.get_device_capability(device)})")
    if not is_triton_available("3.4.0"):
        missing.append("triton>=3.4")
    if not is_kernels_available():
        missing.append("the kernels package (pip install 'triage[mxfp4]')")
    if missing:
        raise HardwareError(
            f"quantization 'mxfp4' runs GPT-OSS's native MXFP4 kernels, which need {', '.join(missing)}; "
            "use quantization 'nf4' (bitsandbytes, works on CPU too) or 'none'"
        )


def from_pretrained_kwargs(mode: str, device: torch.device, prequantized: str | None) -> tuple[dict[str, Any], str]:
    """``from_pretrained`` keyword arguments for a resolved mode on a device (transformers' own loader), and the
    mode actually used. Not for ``nf4`` on a mixture-of-experts base: that is ``load_moe_nf4``."""
    from transformers import BitsAndBytesConfig
    from transformers.utils.quantization_config import Mxfp4Config

    compute = compute_dtype(device.type)
    device_map: dict[str, Any] = {"": str(device) if device.type != "cuda" else device.index or 0}
    if mode not in ("nf4", "mxfp4", "none"):
        raise HardwareError(f"unknown quantization {mode!r}; use auto, nf4, mxfp4 or none")
    if mode == "mxfp4":
        check_mxfp4(device)
        return {"quantization_config": Mxfp4Config(), "dtype": torch.bfloat16, "device_map": device_map}, "mxfp4"
    if prequantized == "mxfp4":  # 'none' on a GPT-OSS hub checkpoint: the experts decoded to bf16 (~39 GiB)
        kwargs = {"quantization_config": Mxfp4Config(dequantize=True), "dtype": torch.bfloat16}
        return {**kwargs, "device_map": device_map}, "bf16-dequantized-mxfp4"
    if mode == "nf4":
        require_bitsandbytes()
        config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )
        return {"quantization_config": config, "dtype": compute, "device_map": device_map}, "nf4"
    return {"dtype": compute, "device_map": device_map}, "none"


def load_causal_lm(base: str, requested: str, device: torch.device, model_config: Any) -> tuple[Any, str]:
    """Load a causal-LM base held as ``requested`` (auto, nf4, mxfp4, none) on ``device``; returns the model and
    the mode used. ``nf4`` on a mixture-of-experts base streams it with NF4 experts (``load_moe_nf4``)."""
    from transformers import AutoModelForCausalLM

    moe, prequantized = is_moe_config(model_config), prequantized_method(model_config)
    mode = resolve_quantization(requested, device.type, moe, prequantized)
    try:
        if mode == "nf4" and moe:
            return load_moe_nf4(base, device), "nf4"
        kwargs, used = from_pretrained_kwargs(mode, device, prequantized)
        return AutoModelForCausalLM.from_pretrained(base, **kwargs), used
    except OSError as exc:
        raise CheckpointError(f"cannot load base model {base!r}: {exc}") from exc
