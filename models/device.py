"""Device and dtype selection, with errors that say what is missing and how to fix it."""

from __future__ import annotations

import logging

import torch

from models.errors import HardwareError

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def resolve_device(requested: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cuda`` without a GPU raises HardwareError."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise HardwareError(
                f"device {requested!r} was requested but torch {torch.__version__} sees no CUDA GPU "
                "(torch.cuda.is_available() is False). Install a CUDA build of torch on a GPU machine "
                "(see README, 'CUDA machines') or set TRIAGE_DEVICE=cpu."
            )
        return torch.device(requested)
    if requested == "cpu":
        return torch.device("cpu")
    raise HardwareError(f"unknown device {requested!r}; use auto, cpu, cuda or cuda:N")


def resolve_dtype(requested: str, device: torch.device) -> torch.dtype:
    """``auto`` is bf16 on CUDA GPUs that support it, else float32. float16 is refused: DeBERTa-v3 overflows in it."""
    if requested == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if requested in ("float16", "fp16", "half"):
        raise HardwareError("float16 is not supported: DeBERTa-v3 overflows in fp16. Use bfloat16 or float32.")
    if requested not in DTYPES:
        raise HardwareError(f"unknown dtype {requested!r}; use auto, float32 or bfloat16")
    return DTYPES[requested]
