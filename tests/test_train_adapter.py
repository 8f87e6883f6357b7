"""Adapter training: argument validation, fast failure without a GPU, LoRA gradients, the written folder."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from models.checkpoint import MANIFEST_FILE, read_manifest
from models.constrained import AnswerGrammar
from models.datasets import load_dataset
from models.errors import DataError, HardwareError, ModelError
from models.llm_local import PromptEncoder, answer_loss, build_batch
from models.prompt import PROMPT_VERSION
from models.quantize import from_pretrained_kwargs
from models.taxonomy import Taxonomy
from models.train_adapter import (
    EXPERT_PARAMETERS,
    AdapterTrainingArgs,
    _prepare_for_training,
    check_lora_gradients,
    eval_mode,
    train_adapter,
)
from tests.llm_fixtures import adapter_dir  # noqa: F401


def test_args_validation_names_every_bad_value() -> None:
    with pytest.raises(DataError, match=r"lora_r=0, lora_dropout=1.5, epochs=0"):
        AdapterTrainingArgs(lora_r=0, epochs=0, lora_dropout=1.5)
    with pytest.raises(DataError, match=r"quantization='int3'"):
        AdapterTrainingArgs(quantization="int3")  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"\['experts'\] are not linear layers.*train_experts=True"):
        AdapterTrainingArgs(target_modules=["q_proj", "experts"])


def test_defaults_per_base_model() -> None:
    real = AdapterTrainingArgs.for_base_model("openai/gpt-oss-20b")
    assert real.quantization == "nf4" and real.gradient_checkpointing
    assert real.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"] and real.target_parameters == []
    tiny = AdapterTrainingArgs.for_base_model("tiny", epochs=5, learning_rate=None, train_experts=True)
    assert tiny.quantization == "none" and not tiny.gradient_checkpointing
    assert tiny.epochs == 5 and tiny.learning_rate == 3e-3  # None overrides keep the default
    assert tiny.target_parameters == EXPERT_PARAMETERS


def test_hub_model_on_cpu_fails_fast_with_the_hint(tmp_path: Path) -> None:
    args = AdapterTrainingArgs.for_base_model("openai/gpt-oss-20b", device="cpu")
    started = time.perf_counter()
    # the data folder does not even exist: the hardware check comes first, before any data or download
    with pytest.raises(HardwareError, match=r"'openai/gpt-oss-20b' needs a CUDA GPU.*use --base-model tiny"):
        train_adapter(tmp_path / "no-data", tmp_path / "out", args, progress=False)
    assert time.perf_counter() - started < 2
    assert not (tmp_path / "out").exists()


def test_adapter_folder_is_complete(adapter_dir: Path) -> None:  # noqa: F811
    for name in (MANIFEST_FILE, "README.md", "adapter_config.json", "adapter_model.safetensors", "tokenizer.json"):
        assert (adapter_dir / name).is_file(), name
    for name in ("config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"):
        assert (adapter_dir / "base" / name).is_file(), name
    assert not [p for p in adapter_dir.parent.iterdir() if p.name.startswith(".")]  # no temp folders left
    manifest = read_manifest(adapter_dir, kind="adapter")
    assert manifest.base_model == "tiny"
    assert manifest.thresholds == [] and manifest.temperatures == []
    assert manifest.extra["prompt_version"] == PROMPT_VERSION
    assert manifest.extra["base_path"] == "base"
    assert manifest.extra["quantization_trained"] == "none"
    assert manifest.extra["base_config"]["model_type"] == "gpt_oss"
    report = manifest.extra["lora_gradients"]
    assert report["with_grad"] == report["lora_tensors"] > 0 and report["nonzero_grad"] > 0
    for split in ("validation", "test", "test_heldout"):
        assert 0.0 <= manifest.metrics[split]["f1_micro"] <= 1.0
        assert set(manifest.metrics[split]) >= {"f1_micro", "f1_macro", "exact_match"}
        assert manifest.metrics["evaluated_tickets"][split] == 24
    assert manifest.metrics["train_seconds"] > 0
    assert manifest.training_args["max_train_examples"] == 96


def _nf4_lora(folder: Path, **overrides: Any) -> tuple[Any, list[list[int]], list[list[int]], PromptEncoder]:
    device = torch.device("cpu")
    args = AdapterTrainingArgs.for_base_model("tiny", **overrides)
    kwargs, used = from_pretrained_kwargs("nf4", device, None)  # bitsandbytes Linear4bit, as for a dense base
    assert used == "nf4"
    base = AutoModelForCausalLM.from_pretrained(folder / "base", **kwargs)
    model = _prepare_for_training(base, args)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    taxonomy = Taxonomy.from_dict(read_manifest(folder, kind="adapter").taxonomy)
    encoder = PromptEncoder(tokenizer, taxonomy, 1024)
    grammar = AnswerGrammar.from_tokenizer(tokenizer, taxonomy)
    rows = encoder.ticket_ids(["The app crashes.", "Please cancel my plan, I am furious!"])
    answers = [grammar.answer_token_ids(["technical_issue"]), grammar.answer_token_ids(["cancellation", "frustrated"])]
    return model, rows, answers, encoder


def _loss(model: Any, rows: list[list[int]], answers: list[list[int]], encoder: PromptEncoder) -> torch.Tensor:
    pad = int(encoder.tokenizer.pad_token_id)
    batch = build_batch(encoder.prefix_ids, [[*r, *a] for r, a in zip(rows, answers, strict=True)], pad, True)
    return answer_loss(model, batch, answers)


def test_qlora_on_cpu_gets_lora_gradients(adapter_dir: Path) -> None:  # noqa: F811
    """FACTS trap: train() before any forward, and validation in eval_mode keeps the 4-bit layers trainable."""
    import bitsandbytes as bnb

    model, rows, answers, encoder = _nf4_lora(adapter_dir, train_experts=True)
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("experts" in n and "lora_" in n for n in names) and all("lora_" in n for n in names)
    with pytest.raises(ModelError, match=r"0 of .* LoRA tensors got a gradient.*train\(\) before any forward"):
        check_lora_gradients(model)
    model.train()
    _loss(model, rows, answers, encoder).backward()
    report = check_lora_gradients(model)
    assert report["nonzero_grad"] > 0
    model.zero_grad()
    with eval_mode(model), torch.no_grad():  # a validation pass mid-training ...
        _loss(model, rows, answers, encoder)
        assert all(layer.training for layer in layers)
    assert all(
        not getattr(getattr(layer.weight, "quant_state", None), "packing_format_for_cpu", False) for layer in layers
    )
    _loss(model, rows, answers, encoder).backward()  # ... and training still works after it
    assert check_lora_gradients(model)["nonzero_grad"] > 0


def test_train_writes_nothing_when_it_fails(dataset_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "adapter"
    args = AdapterTrainingArgs.for_base_model("tiny", max_length=64, tiny_pretrain_epochs=0, tiny_vocab_size=500)
    with pytest.raises(ModelError, match=r"leaves .* tokens for the ticket"):
        train_adapter(dataset_dir, out, args, progress=False)
    assert list(tmp_path.iterdir()) == []
    assert load_dataset(dataset_dir)  # the data was fine: the prompt did not fit


def test_qlora_with_4_bit_experts_trains_every_lora_tensor(dataset_dir: Path, tmp_path: Path) -> None:
    """The trainer's own path with quantization nf4 on the tiny GPT-OSS: experts in NF4, LoRA on attention."""
    from tests.llm_fixtures import FAST_TINY

    args = AdapterTrainingArgs.for_base_model("tiny", quantization="nf4", **FAST_TINY)
    manifest = train_adapter(dataset_dir, tmp_path / "adapter", args, progress=False)
    assert manifest.extra["quantization_trained"] == "nf4"
    report = manifest.extra["lora_gradients"]
    assert report["lora_tensors"] > 0 and report["with_grad"] == report["lora_tensors"]
    assert report["nonzero_grad"] > 0


def test_expert_lora_needs_unquantised_experts() -> None:
    with pytest.raises(DataError, match=r"train_experts needs quantization 'none'.*cannot wrap a 4-bit parameter"):
        AdapterTrainingArgs(train_experts=True, quantization="nf4")
