"""The escalation tier's seam: an LLM classifier that returns labels from the taxonomy for each ticket.

Backends register by name (``TRIAGE_LLM_BACKEND``): ``local`` loads a causal-LM base plus a PEFT LoRA adapter
in-process (4-bit NF4 on CUDA or CPU through bitsandbytes, or native MXFP4 / bf16 / fp32); ``openai`` calls an
OpenAI-compatible server (vLLM with ``--enable-lora``). Both obey ``LLMClassifier``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from models.errors import ModelError

Quantization = Literal["auto", "nf4", "mxfp4", "none"]
"""``auto``: resolved by the backend for the device it loads on (see ``models.llm_local.resolve_quantization``)."""


@dataclass(frozen=True)
class LLMConfig:
    """Everything a backend needs; built from server settings or CLI flags."""

    adapter_path: Path = Path("checkpoints/default/adapter")
    """Adapter folder written by ``triage train-adapter`` (PEFT files + triage manifest)."""
    base_model: str | None = None
    """Override the base model recorded in the adapter manifest (a hub id or a local folder)."""
    quantization: Quantization = "auto"
    device: str = "auto"
    max_new_tokens: int = 48
    max_input_tokens: int = 1024
    # remote backend
    endpoint: str = "http://127.0.0.1:8001/v1"
    api_key: str | None = None
    remote_model: str = "triage-adapter"
    timeout_s: float = 30.0
    max_retries: int = 2


class LLMClassifier(Protocol):
    """Load, warm up, classify a batch, report health. ``load`` is blocking: call it off the event loop."""

    labels: list[str]

    def load(self) -> None: ...

    def warmup(self) -> None: ...

    def classify_batch(self, texts: Sequence[str], deadline: float | None = None) -> list[list[str]]:
        """Labels per ticket, each a subset of ``labels``, in input order.

        ``deadline`` (``time.monotonic()``, optional): stop work for the batch once it passes (raise).
        """
        ...

    def health(self) -> dict[str, Any]: ...

    def unload(self) -> None: ...


BACKEND_MODULES = ("models.llm_local", "models.llm_remote")
LLM_BACKENDS: dict[str, Callable[[LLMConfig], LLMClassifier]] = {}


def register_backend(
    name: str,
) -> Callable[[Callable[[LLMConfig], LLMClassifier]], Callable[[LLMConfig], LLMClassifier]]:
    def wrap(factory: Callable[[LLMConfig], LLMClassifier]) -> Callable[[LLMConfig], LLMClassifier]:
        LLM_BACKENDS[name] = factory
        return factory

    return wrap


def create_llm(backend: str, config: LLMConfig) -> LLMClassifier:
    """Build (not load) the named backend. Importing the backend modules registers them."""
    for module in BACKEND_MODULES:  # importing a backend module registers it
        importlib.import_module(module)

    if backend not in LLM_BACKENDS:
        raise ModelError(f"unknown LLM backend {backend!r}; choose one of {', '.join(sorted(LLM_BACKENDS))}")
    return LLM_BACKENDS[backend](config)
