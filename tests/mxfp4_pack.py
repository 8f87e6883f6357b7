"""Write tensors the way openai/gpt-oss-* ships its MoE experts: MXFP4 ``*_blocks`` + ``*_scales``.

The inverse of transformers' own decoder (``transformers.integrations.mxfp4.convert_moe_packed_tensors``): a weight
``(E, in, out)`` is stored transposed as ``(E, out, in / 32, 16)`` bytes, two FP4 (e2m1) codes per byte, low nibble
first, and one biased 8-bit exponent per 32 values. ``test_quantize`` checks the round trip against that decoder, so
the hub-layout checkpoints the tests build are the layout the real loader meets.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

FP4_VALUES = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]
HUB_QUANTIZATION = {
    "modules_to_not_convert": [
        "model.layers.*.self_attn",
        "model.layers.*.mlp.router",
        "model.embed_tokens",
        "lm_head",
    ],
    "quant_method": "mxfp4",
}


def pack_mxfp4(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(E, in, out)`` -> blocks ``(E, out, in/32, 16)`` uint8 and scales ``(E, out, in/32)`` uint8."""
    experts, rows_in, rows_out = weight.shape
    if rows_in % 32:
        raise ValueError(f"the input dimension {rows_in} is not a multiple of 32")
    values = weight.detach().float().transpose(1, 2).reshape(experts, rows_out, rows_in // 32, 32)
    amax = values.abs().amax(dim=-1, keepdim=True).clamp(min=2.0**-126)
    exponent = torch.ceil(torch.log2(amax / 6.0)).clamp(-127, 127)
    scaled = values / torch.exp2(exponent)
    lut = torch.tensor(FP4_VALUES)
    codes = (scaled[..., None] - lut).abs().argmin(dim=-1).to(torch.uint8)
    blocks = codes[..., 0::2] | (codes[..., 1::2] << 4)
    scales = (exponent[..., 0] + 127).to(torch.uint8)
    return blocks.contiguous(), scales.contiguous()


def write_hub_layout(plain: Path, out: Path) -> Path:
    """Copy a plain GPT-OSS folder with its expert weights in MXFP4 and the hub's ``quantization_config``."""
    out.mkdir(parents=True, exist_ok=True)
    for item in plain.iterdir():
        if item.suffix != ".safetensors" and item.is_file():
            shutil.copy2(item, out / item.name)
    tensors: dict[str, torch.Tensor] = {}
    for name, tensor in load_file(str(plain / "model.safetensors")).items():
        if name.endswith((".experts.gate_up_proj", ".experts.down_proj")):
            tensors[f"{name}_blocks"], tensors[f"{name}_scales"] = pack_mxfp4(tensor)
        else:
            tensors[name] = tensor.to(torch.bfloat16) if tensor.is_floating_point() else tensor
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((plain / "config.json").read_text())
    config["quantization_config"] = HUB_QUANTIZATION
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out
