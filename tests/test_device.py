import pytest
import torch

from models.device import resolve_device, resolve_dtype
from models.errors import HardwareError


def test_auto_is_cpu_float32_without_a_gpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    device = resolve_device("auto")
    assert device.type == "cpu"
    assert resolve_dtype("auto", device) == torch.float32


def test_cuda_without_gpu_says_how_to_fix() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(HardwareError, match="TRIAGE_DEVICE=cpu"):
        resolve_device("cuda")


def test_fp16_is_refused_for_deberta() -> None:
    with pytest.raises(HardwareError, match="overflows in fp16"):
        resolve_dtype("float16", torch.device("cpu"))
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
