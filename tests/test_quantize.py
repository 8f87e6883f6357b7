"""4-bit experts on the tiny GPT-OSS, on the CPU: the NF4 loader, the MXFP4 hub layout it streams, and the byte
count the memory plan predicts for it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.integrations.mxfp4 import convert_moe_packed_tensors
from transformers.utils.quantization_config import Mxfp4Config

from models.errors import CheckpointError
from models.memory_plan import weight_bytes_by_storage
from models.quantize import (
    expert_storage_report,
    is_expert_weight,
    load_causal_lm,
    load_moe_nf4,
    param_storage,
    storage_bytes,
)
from tests.llm_fixtures import adapter_dir  # noqa: F401
from tests.mxfp4_pack import pack_mxfp4, write_hub_layout

CPU = torch.device("cpu")


def _prompts(vocab: int) -> torch.Tensor:
    return torch.randint(5, vocab, (4, 24), generator=torch.Generator().manual_seed(0))


def _logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0))


def _top1_agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.argmax(-1) == b.argmax(-1)).float().mean())


def test_mxfp4_packer_is_the_inverse_of_transformers_decoder() -> None:
    weight = torch.randn(3, 64, 96, generator=torch.Generator().manual_seed(1))
    blocks, scales = pack_mxfp4(weight)
    assert blocks.shape == (3, 96, 2, 16) and scales.shape == (3, 96, 2) and blocks.dtype == torch.uint8
    decoded = convert_moe_packed_tensors(blocks, scales, dtype=torch.float32)
    assert decoded.shape == weight.shape
    # FP4 keeps about one significant bit: each value within half a step of its block's scale
    assert _cosine(decoded, weight) > 0.98
    assert torch.equal(convert_moe_packed_tensors(*pack_mxfp4(decoded), dtype=torch.float32), decoded)


def test_nf4_experts_are_4_bit_and_answer_like_the_dense_model(adapter_dir: Path) -> None:  # noqa: F811
    base = adapter_dir / "base"
    config = AutoConfig.from_pretrained(base)
    dense = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model, used = load_causal_lm(str(base), "nf4", CPU, config)
    assert used == "nf4"
    assert expert_storage_report(model) == {"nf4": 2 * config.num_hidden_layers, "dense": 0}
    for name, param in model.named_parameters():  # no expert weight is held densely anywhere
        assert not is_expert_weight(name), name
        if ".parametrizations." in name:
            assert param.dtype == torch.uint8 and param.numel() * 2 >= 1
    ids = _prompts(config.vocab_size)
    ours, reference = _logits(model, ids), _logits(dense, ids)
    assert _cosine(ours, reference) > 0.99
    assert _top1_agreement(ours, reference) >= 0.9


def test_hub_mxfp4_checkpoint_streams_into_nf4_like_transformers_loads_it(
    adapter_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The openai/gpt-oss-* layout (MXFP4 experts, quantization_config) decoded per tensor and re-quantised, against
    transformers' own dequantising load of the same files."""
    hub = write_hub_layout(adapter_dir / "base", tmp_path / "hub")
    config = AutoConfig.from_pretrained(hub)
    reference = AutoModelForCausalLM.from_pretrained(
        hub, quantization_config=Mxfp4Config(dequantize=True), dtype=torch.float32, device_map={"": "cpu"}
    )
    model, used = load_causal_lm(str(hub), "nf4", CPU, config)
    assert used == "nf4"
    assert expert_storage_report(model) == {"nf4": 2 * config.num_hidden_layers, "dense": 0}
    ids = _prompts(config.vocab_size)
    ours, theirs = _logits(model, ids), _logits(reference, ids)
    assert _cosine(ours, theirs) > 0.98
    assert _top1_agreement(ours, theirs) >= 0.85


def test_a_checkpoint_missing_weights_or_half_a_pair_is_refused(adapter_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    from safetensors.torch import load_file, save_file

    hub = write_hub_layout(adapter_dir / "base", tmp_path / "hub")
    tensors = load_file(str(hub / "model.safetensors"))
    del tensors["model.layers.0.mlp.experts.down_proj_scales"]
    save_file(tensors, str(hub / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"MXFP4 tensors without their pair: .*layers\.0\.mlp\.experts\.down"):
        load_moe_nf4(hub, CPU)
    del tensors["model.layers.0.mlp.experts.down_proj_blocks"]
    save_file(tensors, str(hub / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"lacks 1 weight\(s\), e\.g\. model\.layers\.0\.mlp\.experts\.down_proj"):
        load_moe_nf4(hub, CPU)


def test_the_plan_counts_the_bytes_the_loader_allocates(adapter_dir: Path) -> None:  # noqa: F811
    """The memory plan's storage decision is the loader's: on the tiny model, planned bytes == allocated bytes."""
    base = adapter_dir / "base"
    config = AutoConfig.from_pretrained(base)
    model, _ = load_causal_lm(str(base), "nf4", CPU, config)
    allocated, seen = 0, set()
    for module in model.modules():
        for name, param in module._parameters.items():
            if param is not None and name != "original" and id(param) not in seen:  # tied weights once
                seen.add(id(param))
                allocated += param.numel() * param.element_size()
        for parametrizations in getattr(module, "parametrizations", {}).values():
            state = parametrizations[0].quant_state
            allocated += parametrizations.original.numel() * parametrizations.original.element_size()
            allocated += state.absmax.numel() * state.absmax.element_size()
            allocated += state.state2.absmax.numel() * state.state2.absmax.element_size()
    with torch.device("meta"):
        meta = AutoModelForCausalLM.from_config(config)
    planned = sum(nbytes for _, nbytes in weight_bytes_by_storage(meta, "nf4", "cpu").values())
    assert planned == allocated


def test_storage_decisions() -> None:
    expert = "model.layers.3.mlp.experts.gate_up_proj"
    assert param_storage(expert, "GptOssExperts", "nf4", True, "cuda") == "nf4"
    assert param_storage(expert, "GptOssExperts", "mxfp4", True, "cuda") == "mxfp4"
    assert param_storage(expert, "GptOssExperts", "none", True, "cuda") == "bf16"
    assert param_storage(expert + "_bias", "GptOssExperts", "nf4", True, "cuda") == "bf16"
    assert param_storage("model.layers.0.self_attn.q_proj.weight", "Linear", "nf4", True, "cuda") == "bf16"
    assert param_storage("model.layers.0.self_attn.q_proj.weight", "Linear", "nf4", False, "cuda") == "linear4bit"
    assert param_storage("lm_head.weight", "Linear", "nf4", False, "cuda") == "bf16"
    assert param_storage("model.layers.0.input_layernorm.weight", "GptOssRMSNorm", "nf4", True, "cuda") == "fp32"
    assert storage_bytes(128, "nf4") == 64 + 2 + 4 and storage_bytes(64, "mxfp4") == 32 + 2
    assert storage_bytes(10, "bf16") == 20 and storage_bytes(10, "fp32") == 40
