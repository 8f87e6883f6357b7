"""The ``local`` LLM backend: a causal-LM base plus a PEFT LoRA adapter, in-process, with constrained decoding.

Prompts are laid out as a value (:class:`PromptEncoder`, :class:`PromptBatch`): the shared prefix (system prompt
and the start of the user turn), then each ticket's tokens and the fixed end of the prompt. When it is exact (no
sliding-window layer shorter than the sequence), the prefix is run once per batch and its KV cache shared by every
row, which on the tiny model cuts the work per ticket about sixfold. The same layout and loss serve training
(:func:`answer_loss`, used by ``models.train_adapter``) and serving (:func:`generate_labels`).
"""

from __future__ import annotations

import copy
import gc
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.checkpoint import Manifest, read_manifest
from models.constrained import AnswerGrammar
from models.device import resolve_device
from models.errors import CheckpointError, ModelError
from models.llm import LLMConfig, register_backend
from models.prompt import PROMPT_VERSION, build_messages
from models.quantize import check_mxfp4, load_causal_lm
from models.taxonomy import Taxonomy
from models.tiny_llm import render_prompt

logger = logging.getLogger(__name__)

TICKET_SENTINEL = "\u2063TRIAGE-TICKET\u2063"
"""Stands in for the ticket text when splitting the rendered prompt into prefix and end."""
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
BASE_CONFIG_KEYS = ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads")
"""Base-model config fields an adapter records, to catch an adapter loaded on the wrong base."""


# -- prompt layout -----------------------------------------------------------------------------------------------


class PromptEncoder:
    """Turns tickets into prompt token ids: ``prefix_ids + ticket ids (truncated) + end_ids``.

    The prompt is rendered once with a sentinel in place of the ticket and split around it, so every ticket shares
    the same prefix tokens and the ticket is the only part that is truncated to fit ``max_input_tokens``.
    """

    def __init__(self, tokenizer: Any, taxonomy: Taxonomy, max_input_tokens: int, system: bool = True) -> None:
        """``system=False`` drops the system message (the tiny base's pre-training format)."""
        self.tokenizer = tokenizer
        messages = build_messages(TICKET_SENTINEL, taxonomy)
        if not system:
            messages = [m for m in messages if m["role"] != "system"]
        rendered = render_prompt(tokenizer, messages)
        if rendered.count(TICKET_SENTINEL) != 1:
            raise ModelError("the chat template does not place the ticket text exactly once in the prompt")
        prefix, end = rendered.split(TICKET_SENTINEL)
        self.prefix_ids: list[int] = self._encode(prefix)
        self.end_ids: list[int] = self._encode(end)
        self.max_input_tokens = max_input_tokens
        self.text_budget = max_input_tokens - len(self.prefix_ids) - len(self.end_ids)
        if self.text_budget < 8:
            raise ModelError(
                f"max_input_tokens={max_input_tokens} leaves {self.text_budget} tokens for the ticket: the prompt "
                f"alone takes {len(self.prefix_ids) + len(self.end_ids)}; raise max_input_tokens"
            )

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def ticket_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Per ticket: its tokens (cut to the budget) followed by the end of the prompt; the prefix is apart."""
        encoded = self.tokenizer([t.strip() for t in texts], add_special_tokens=False)["input_ids"]
        truncated = sum(len(ids) > self.text_budget for ids in encoded)
        if truncated:
            logger.debug("%d of %d tickets truncated to %d tokens", truncated, len(texts), self.text_budget)
        return [list(ids[: self.text_budget]) + self.end_ids for ids in encoded]


@dataclass(frozen=True)
class PromptBatch:
    """Left-padded rows after a shared prefix. ``attention_mask`` and ``position_ids`` cover prefix + rows."""

    prefix_ids: torch.Tensor
    """(P,) the shared prefix."""
    rows: torch.Tensor
    """(B, W) each row's own tokens, left-padded to width W."""
    attention_mask: torch.Tensor
    """(B, P + W)."""
    position_ids: torch.Tensor
    """(B, P + W): positions count real tokens only, so padding never shifts a row."""

    @property
    def full_ids(self) -> torch.Tensor:
        """(B, P + W): prefix then row, per row (with a shared prefix the padding sits between the two)."""
        return torch.cat([self.prefix_ids.expand(self.rows.shape[0], -1), self.rows], dim=1)

    def to(self, device: torch.device) -> PromptBatch:
        return PromptBatch(
            *(t.to(device) for t in (self.prefix_ids, self.rows, self.attention_mask, self.position_ids))
        )


def build_batch(prefix_ids: Sequence[int], rows: Sequence[Sequence[int]], pad_id: int, shared: bool) -> PromptBatch:
    """Pad ``rows`` on the left. ``shared``: pads go between prefix and rows (the prefix KV cache is shared);
    otherwise each row is ``prefix + row`` left-padded as a whole and ``prefix_ids`` is empty."""
    if not rows:
        raise ModelError("cannot build an empty batch")
    full = [list(r) for r in rows] if shared else [[*prefix_ids, *r] for r in rows]
    width = max(len(r) for r in full)
    ids = torch.full((len(full), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(full), width), dtype=torch.long)
    for i, row in enumerate(full):
        if row:
            ids[i, width - len(row) :] = torch.as_tensor(row)
            mask[i, width - len(row) :] = 1
    prefix = torch.as_tensor(list(prefix_ids) if shared else [], dtype=torch.long)
    mask = torch.cat([torch.ones((len(full), prefix.numel()), dtype=torch.long), mask], dim=1)
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    return PromptBatch(prefix_ids=prefix, rows=ids, attention_mask=mask, position_ids=positions)


def prefix_sharing_exact(model_config: Any, total_tokens: int) -> bool:
    """Sharing the prefix puts padding between prefix and ticket; that changes nothing unless a sliding-window layer
    shorter than the sequence counts those pads inside its window."""
    window = getattr(model_config, "sliding_window", None)
    layer_types = getattr(model_config, "layer_types", None) or []
    if window is None or (layer_types and "sliding_attention" not in layer_types):
        return True
    return int(window) > total_tokens


def _prefix_cache(model: Any, batch: PromptBatch) -> Any:
    """Run the shared prefix once (batch 1) and repeat its KV cache for every row (with gradients when training)."""
    out = model(input_ids=batch.prefix_ids[None, :], use_cache=True)
    cache = out.past_key_values
    cache.batch_repeat_interleave(batch.rows.shape[0])
    return cache


def answer_loss(model: Any, batch: PromptBatch, answers: Sequence[Sequence[int]]) -> torch.Tensor:
    """Mean cross-entropy over answer tokens only (the prompt is masked out), for rows = prompt + answer.

    Rows are left-padded, so every answer ends in the last column and only the last ``max answer + 1`` positions
    need logits (``logits_to_keep``): the vocabulary projection is skipped for the prompt.
    """
    longest = max(len(a) for a in answers)
    targets = torch.full((len(answers), longest), -100, dtype=torch.long, device=batch.rows.device)
    for i, answer in enumerate(answers):
        targets[i, longest - len(answer) :] = torch.as_tensor(list(answer), device=batch.rows.device)
    kwargs: dict[str, Any] = {"attention_mask": batch.attention_mask, "logits_to_keep": longest + 1}
    if batch.prefix_ids.numel():
        kwargs["past_key_values"] = _prefix_cache(model, batch)
        kwargs["position_ids"] = batch.position_ids[:, batch.prefix_ids.numel() :]
        kwargs["use_cache"] = True
    else:
        kwargs["position_ids"] = batch.position_ids
        kwargs["use_cache"] = False
    logits = model(input_ids=batch.rows, **kwargs).logits[:, :-1].float()
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


@torch.inference_mode()
def generate_labels(
    model: Any,
    encoder: PromptEncoder,
    grammar: AnswerGrammar,
    texts: Sequence[str],
    batch_size: int = 32,
    max_new_tokens: int = 48,
    share_prefix: bool = True,
    deadline: float | None = None,
) -> list[list[str]]:
    """Greedy constrained generation in batches of similar length; labels per ticket, in input order.

    With a ``deadline`` (``time.monotonic()``), each ``generate`` call gets what is left of it as ``max_time``
    and ``ModelError`` is raised once it has passed: an answer cut short would be a wrong answer.
    """
    from transformers import GenerationConfig

    if not texts:
        return []
    rows = encoder.ticket_ids(texts)
    device = next(model.parameters()).device
    new_tokens = max(1, min(max_new_tokens, grammar.max_answer_tokens))
    pad_id = encoder.tokenizer.pad_token_id
    pad_id = grammar.eos_id if pad_id is None else int(pad_id)
    gen_config = GenerationConfig(
        max_new_tokens=new_tokens, do_sample=False, eos_token_id=grammar.eos_id, pad_token_id=pad_id, use_cache=True
    )
    longest = len(encoder.prefix_ids) + max(len(r) for r in rows) + new_tokens
    shared = share_prefix and prefix_sharing_exact(getattr(model, "config", None), longest)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    results: list[list[str]] = [[] for _ in rows]
    prefix_cache = None
    for start in range(0, len(order), batch_size):
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ModelError(f"deadline passed with {len(order) - start} of {len(order)} ticket(s) unanswered")
            gen_config.max_time = left
        chunk = order[start : start + batch_size]
        batch = build_batch(encoder.prefix_ids, [rows[i] for i in chunk], pad_id, shared).to(device)
        kwargs: dict[str, Any] = {}
        if shared:
            if prefix_cache is None:
                prefix_cache = model(input_ids=batch.prefix_ids[None, :], use_cache=True).past_key_values
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(chunk))
            kwargs["past_key_values"] = cache
        full = batch.full_ids
        out = model.generate(
            input_ids=full,
            attention_mask=batch.attention_mask,
            generation_config=gen_config,
            prefix_allowed_tokens_fn=grammar.constraint(full.shape[1]),
            **kwargs,
        )
        if deadline is not None and time.monotonic() >= deadline:
            raise ModelError(f"deadline passed while generating for {len(chunk)} ticket(s)")
        for row, index in enumerate(chunk):
            results[index] = grammar.decode_answer(out[row, full.shape[1] :].tolist())
    return results


# -- loading -----------------------------------------------------------------------------------------------------


def base_config_summary(model_config: Any) -> dict[str, Any]:
    return {key: getattr(model_config, key, None) for key in BASE_CONFIG_KEYS}


def resolve_base(adapter_path: Path, manifest: Manifest, override: str | None) -> str:
    """The base model to load: the override, else the folder saved inside the adapter (tiny), else the hub id."""
    if override:
        return override
    base_path = manifest.extra.get("base_path")
    if base_path:
        folder = adapter_path / str(base_path)
        if not folder.is_dir():
            raise CheckpointError(f"{adapter_path}: the manifest names base folder {base_path!r}, which is missing")
        return str(folder)
    return manifest.base_model


def check_adapter_folder(adapter_path: Path, manifest: Manifest) -> None:
    missing = [name for name in ADAPTER_FILES if not (adapter_path / name).exists()]
    if missing:
        raise CheckpointError(
            f"{adapter_path} has a manifest but no adapter weights ({', '.join(missing)} missing); "
            "train one with `triage train-adapter`"
        )
    version = manifest.extra.get("prompt_version")
    if version is not None and str(version) != PROMPT_VERSION:
        raise CheckpointError(
            f"{adapter_path} was trained on prompt version {version}, this triage builds prompt version "
            f"{PROMPT_VERSION}; retrain the adapter with `triage train-adapter`"
        )


class LocalLLMClassifier:
    """Base model + LoRA adapter in this process. ``labels`` is the adapter's label list once loaded."""

    def __init__(self, config: LLMConfig, expected_labels: Sequence[str] | None = None, batch_size: int = 32) -> None:
        self.config = config
        self.expected_labels = list(expected_labels) if expected_labels is not None else None
        self.batch_size = batch_size
        self.labels: list[str] = list(expected_labels or [])
        self.model: Any = None
        self.tokenizer: Any = None
        self.manifest: Manifest | None = None
        self.base_model: str | None = None
        self.device: torch.device | None = None
        self.grammar: AnswerGrammar | None = None
        self.encoder: PromptEncoder | None = None
        self.load_seconds: float | None = None
        self.quantization: str | None = None
        """The quantisation actually used (see ``models.quantize.load_causal_lm``)."""
        self._lock = threading.Lock()

    def load(self) -> None:
        """Read the manifest, load the (quantised) base and the adapter. Blocking: call it off the event loop."""
        from peft import PeftModel
        from transformers import AutoConfig, AutoTokenizer

        started = time.perf_counter()
        adapter_path = Path(self.config.adapter_path)
        manifest = read_manifest(adapter_path, kind="adapter")
        check_adapter_folder(adapter_path, manifest)
        labels = manifest.labels()
        if self.expected_labels is not None and labels != self.expected_labels:
            raise CheckpointError(
                f"adapter {adapter_path} answers with labels {', '.join(labels)} but the caller expects "
                f"{', '.join(self.expected_labels)}; train the adapter on the same taxonomy as the encoder"
            )
        device = resolve_device(self.config.device)
        base = resolve_base(adapter_path, manifest, self.config.base_model)
        if self.config.quantization == "mxfp4":
            check_mxfp4(device)  # before any download
        try:
            base_config = AutoConfig.from_pretrained(base)
        except (OSError, ValueError) as exc:
            raise CheckpointError(
                f"cannot read base model {base!r} for adapter {adapter_path} (manifest base {manifest.base_model!r}): "
                f"{exc}. It must be a local folder, in the Hugging Face cache or downloadable."
            ) from exc
        recorded = manifest.extra.get("base_config")
        found = base_config_summary(base_config)
        if recorded and {k: recorded.get(k) for k in found} != found:
            raise CheckpointError(
                f"adapter {adapter_path} was trained on base {manifest.base_model!r} ({recorded}) but base {base!r} "
                f"is {found}; load it with the base it was trained on"
            )
        tokenizer_source = adapter_path if (adapter_path / "tokenizer_config.json").exists() else Path(base)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_source) if tokenizer_source.exists() else base)
        except OSError as exc:
            raise CheckpointError(f"cannot load the tokenizer of {base!r} for adapter {adapter_path}: {exc}") from exc
        base_model, quantization = load_causal_lm(base, self.config.quantization, device, base_config)
        try:
            model = PeftModel.from_pretrained(base_model, str(adapter_path), is_trainable=False)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(
                f"adapter {adapter_path} does not fit base {base!r} (manifest base {manifest.base_model!r}): {exc}"
            ) from exc
        model.eval()
        taxonomy = Taxonomy.from_dict(manifest.taxonomy)
        self.grammar = AnswerGrammar.from_tokenizer(tokenizer, taxonomy)
        self.encoder = PromptEncoder(tokenizer, taxonomy, self.config.max_input_tokens)
        if self.config.max_new_tokens < self.grammar.max_answer_tokens:
            logger.info(
                "max_new_tokens %d is below the longest possible answer (%d tokens): answers with very many "
                "labels are cut to their complete labels",
                self.config.max_new_tokens,
                self.grammar.max_answer_tokens,
            )
        self.model, self.tokenizer, self.manifest, self.labels = model, tokenizer, manifest, labels
        self.base_model, self.device, self.quantization = base, device, quantization
        self.load_seconds = time.perf_counter() - started
        logger.info(
            "LLM adapter %s loaded on base %s (%s, %s) in %.1fs",
            manifest.version,
            base,
            self.quantization,
            device,
            self.load_seconds,
        )

    def warmup(self) -> None:
        """One generation, so the first request pays no one-off cost (e.g. the NF4 CPU weight repack)."""
        self.classify_batch(["Warm-up ticket: the app does not start."])

    def classify_batch(self, texts: Sequence[str], deadline: float | None = None) -> list[list[str]]:
        """Labels per ticket, each a subset of ``labels``, in input order.

        With a ``deadline`` (``time.monotonic()``) generation stops once it passes and ``ModelError`` is raised:
        the worker is not held for answers nobody waits for.
        """
        if self.model is None or self.encoder is None or self.grammar is None:
            raise ModelError("the local LLM is not loaded; call load() first")
        started = time.perf_counter()
        with self._lock:
            answers = generate_labels(
                self.model,
                self.encoder,
                self.grammar,
                texts,
                batch_size=self.batch_size,
                max_new_tokens=self.config.max_new_tokens,
                deadline=deadline,
            )
        logger.debug("LLM classified %d tickets in %.3fs", len(texts), time.perf_counter() - started)
        return answers

    def health(self) -> dict[str, Any]:
        return {
            "backend": "local",
            "loaded": self.model is not None,
            "base_model": self.manifest.base_model if self.manifest else self.config.base_model,
            "base_path": self.base_model,
            "adapter_path": str(self.config.adapter_path),
            "adapter_version": self.manifest.version if self.manifest else None,
            "prompt_version": PROMPT_VERSION,
            "quantization": self.quantization or self.config.quantization,
            "device": str(self.device) if self.device else None,
            "labels": len(self.labels),
            "load_seconds": round(self.load_seconds, 2) if self.load_seconds is not None else None,
        }

    def unload(self) -> None:
        """Drop the model and free its memory (CUDA cache included)."""
        with self._lock:
            self.model = None
            self.encoder = None
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        logger.info("LLM adapter unloaded")


@register_backend("local")
def create_local(config: LLMConfig) -> LocalLLMClassifier:
    return LocalLLMClassifier(config)
