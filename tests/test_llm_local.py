"""The local LLM backend on a tiny adapter: loading, answering, quantisation, errors, and the prompt layout."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from models.checkpoint import read_manifest
from models.constrained import AnswerGrammar
from models.errors import CheckpointError, HardwareError, ModelError
from models.llm import LLMConfig, create_llm
from models.llm_local import (
    LocalLLMClassifier,
    PromptEncoder,
    answer_loss,
    build_batch,
    generate_labels,
    prefix_sharing_exact,
)
from models.quantize import expert_storage_report, from_pretrained_kwargs, prequantized_method, resolve_quantization
from models.taxonomy import Taxonomy
from models.tiny_llm import FINAL_CHANNEL, render_prompt, tiny_gpt_oss_config
from tests.llm_fixtures import adapter_dir  # noqa: F401

TICKETS = [
    "The video keeps freezing on my Samsung TV, please fix it today!",
    "Je voudrais annuler mon abonnement Premium.",
    "Ich wurde zweimal belastet, bitte erstatten Sie den Betrag.",
    "hi, could you add more Thai recipes? no rush",
    "I cannot log in since the password reset.",
]
LABELLED = [
    (TICKETS[0], ["technical_issue", "urgent"]),
    (TICKETS[1], ["cancellation", "premium_user"]),
    (TICKETS[3], []),
]


@pytest.fixture(scope="module")
def classifier(adapter_dir: Path) -> LocalLLMClassifier:  # noqa: F811
    clf = create_llm("local", LLMConfig(adapter_path=adapter_dir, quantization="none", device="cpu"))
    assert isinstance(clf, LocalLLMClassifier)
    clf.load()
    return clf


def test_answers_are_taxonomy_labels_in_input_order(classifier: LocalLLMClassifier, adapter_dir: Path) -> None:  # noqa: F811
    manifest = read_manifest(adapter_dir, kind="adapter")
    assert classifier.labels == manifest.labels()
    classifier.warmup()
    batch = classifier.classify_batch(TICKETS)
    assert len(batch) == len(TICKETS)
    for labels in batch:
        assert set(labels) <= set(manifest.labels())
        assert labels == sorted(set(labels), key=manifest.labels().index)
    # order kept and batch-invariant: the same answers one at a time and reversed
    assert [classifier.classify_batch([t])[0] for t in TICKETS] == batch
    assert classifier.classify_batch(TICKETS[::-1]) == batch[::-1]
    assert classifier.classify_batch([]) == []


def test_generation_keeps_order_with_input_dependent_answers(classifier: LocalLLMClassifier) -> None:
    """A random model with large weights answers differently per ticket, so a mix-up between rows would show."""
    tokenizer, encoder, grammar = classifier.tokenizer, classifier.encoder, classifier.grammar
    assert encoder is not None and grammar is not None
    config = tiny_gpt_oss_config(len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id, hidden_size=64)
    config.initializer_range = 1.0
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    batch = generate_labels(model, encoder, grammar, TICKETS, batch_size=2)  # sorted by length, three chunks
    assert len({tuple(a) for a in batch}) >= 3
    assert all(set(a) <= set(classifier.labels) for a in batch)
    assert [generate_labels(model, encoder, grammar, [t])[0] for t in TICKETS] == batch


def test_health_and_unload(adapter_dir: Path) -> None:  # noqa: F811
    clf = LocalLLMClassifier(LLMConfig(adapter_path=adapter_dir, quantization="none", device="cpu"))
    assert clf.health()["loaded"] is False
    with pytest.raises(ModelError, match="not loaded; call load"):
        clf.classify_batch(["x"])
    clf.load()
    health = clf.health()
    manifest = read_manifest(adapter_dir, kind="adapter")
    assert health["loaded"] is True
    assert health["adapter_version"] == manifest.version
    assert health["base_model"] == "tiny"
    assert health["quantization"] == "none"
    assert health["device"] == "cpu"
    clf.unload()
    assert clf.health()["loaded"] is False


def test_nf4_loads_and_answers_on_cpu(adapter_dir: Path) -> None:  # noqa: F811
    """nf4 on a mixture-of-experts base: every expert tensor in 4 bits, attention stays dense under the LoRA."""
    clf = LocalLLMClassifier(LLMConfig(adapter_path=adapter_dir, quantization="nf4", device="cpu"))
    clf.load()
    layers = clf.model.config.num_hidden_layers
    assert expert_storage_report(clf.model) == {"nf4": 2 * layers, "dense": 0}
    assert clf.health()["quantization"] == "nf4"
    answers = clf.classify_batch(TICKETS[:3])
    assert len(answers) == 3 and all(set(a) <= set(clf.labels) for a in answers)
    clf.unload()


def test_mxfp4_on_cpu_says_what_is_missing(adapter_dir: Path) -> None:  # noqa: F811
    clf = LocalLLMClassifier(LLMConfig(adapter_path=adapter_dir, quantization="mxfp4", device="cpu"))
    with pytest.raises(HardwareError, match=r"mxfp4.*a CUDA GPU \(device is cpu\).*use quantization 'nf4'"):
        clf.load()


def test_bad_adapter_paths(adapter_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    with pytest.raises(CheckpointError, match="does not exist"):
        LocalLLMClassifier(LLMConfig(adapter_path=tmp_path / "nope", device="cpu")).load()

    no_weights = tmp_path / "no-weights"
    shutil.copytree(adapter_dir, no_weights)
    (no_weights / "adapter_model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"no adapter weights \(adapter_model.safetensors missing\)"):
        LocalLLMClassifier(LLMConfig(adapter_path=no_weights, quantization="none", device="cpu")).load()

    encoder_like = tmp_path / "encoder"
    shutil.copytree(adapter_dir, encoder_like)
    data = json.loads((encoder_like / "triage_manifest.json").read_text())
    data["kind"] = "encoder"
    (encoder_like / "triage_manifest.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="holds a 'encoder' checkpoint, expected 'adapter'"):
        LocalLLMClassifier(LLMConfig(adapter_path=encoder_like, device="cpu")).load()


def test_adapter_on_the_wrong_base_names_both(adapter_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    other_base = tmp_path / "other-base"
    shutil.copytree(adapter_dir / "base", other_base)
    config = json.loads((other_base / "config.json").read_text())
    config["hidden_size"] = 96
    (other_base / "config.json").write_text(json.dumps(config))
    clf = LocalLLMClassifier(
        LLMConfig(adapter_path=adapter_dir, base_model=str(other_base), quantization="none", device="cpu")
    )
    with pytest.raises(
        CheckpointError, match=r"trained on base 'tiny'.*'hidden_size': 64.*other-base.*'hidden_size': 96"
    ):
        clf.load()


def test_label_list_must_match_the_caller(adapter_dir: Path) -> None:  # noqa: F811
    clf = LocalLLMClassifier(
        LLMConfig(adapter_path=adapter_dir, quantization="none", device="cpu"), expected_labels=["billing", "urgent"]
    )
    with pytest.raises(CheckpointError, match=r"answers with labels technical_issue.*caller expects billing, urgent"):
        clf.load()


def test_prompt_ends_in_the_final_channel(classifier: LocalLLMClassifier) -> None:
    messages = [{"role": "system", "content": "Tag it."}, {"role": "user", "content": "Ticket:\nhello"}]
    prompt = render_prompt(classifier.tokenizer, messages)
    assert prompt.startswith("<|start|>system<|message|>Tag it.<|end|>")
    assert prompt.endswith("<|start|>assistant" + FINAL_CHANNEL)

    class HarmonyLike:  # GPT-OSS's own template stops at "<|start|>assistant"
        chat_template = "harmony"

        def apply_chat_template(self, messages: list[dict[str, str]], **kwargs: object) -> str:
            return "".join(f"<|start|>{m['role']}<|message|>{m['content']}<|end|>" for m in messages) + (
                "<|start|>assistant"
            )

    assert render_prompt(HarmonyLike(), messages).endswith("<|end|><|start|>assistant" + FINAL_CHANNEL)


def test_prompt_encoder_truncates_only_the_ticket(classifier: LocalLLMClassifier) -> None:
    taxonomy = Taxonomy.from_dict(classifier.manifest.taxonomy)  # type: ignore[union-attr]
    encoder = PromptEncoder(classifier.tokenizer, taxonomy, max_input_tokens=len(classifier.encoder.prefix_ids) + 40)  # type: ignore[union-attr]
    (row,) = encoder.ticket_ids(["word " * 500])
    assert len(encoder.prefix_ids) + len(row) <= encoder.max_input_tokens
    assert row[-len(encoder.end_ids) :] == encoder.end_ids  # the generation prompt survives truncation
    with pytest.raises(ModelError, match=r"leaves .* tokens for the ticket.*raise max_input_tokens"):
        PromptEncoder(classifier.tokenizer, taxonomy, max_input_tokens=50)


def test_shared_prefix_matches_the_plain_layout(classifier: LocalLLMClassifier) -> None:
    """The prefix KV cache shared across rows gives the same loss and the same answers as full prompts."""
    model, encoder, tokenizer = classifier.model, classifier.encoder, classifier.tokenizer
    assert encoder is not None
    grammar = AnswerGrammar.from_tokenizer(tokenizer, Taxonomy.from_dict(classifier.manifest.taxonomy))  # type: ignore[union-attr]
    rows = encoder.ticket_ids([text for text, _ in LABELLED])
    answers = [grammar.answer_token_ids(labels) for _, labels in LABELLED]
    full_rows = [[*r, *a] for r, a in zip(rows, answers, strict=True)]
    pad = int(tokenizer.pad_token_id)
    with torch.no_grad():
        shared = answer_loss(model, build_batch(encoder.prefix_ids, full_rows, pad, shared=True), answers)
        plain = answer_loss(model, build_batch(encoder.prefix_ids, full_rows, pad, shared=False), answers)
    assert float(shared) == pytest.approx(float(plain), rel=1e-4)
    texts = [text for text, _ in LABELLED]
    assert generate_labels(model, encoder, grammar, texts, share_prefix=True) == generate_labels(
        model, encoder, grammar, texts, share_prefix=False
    )


def test_prefix_sharing_is_exact_only_without_a_short_sliding_window() -> None:
    class Config:
        sliding_window: int | None = 128
        layer_types = ("sliding_attention", "full_attention")

    assert not prefix_sharing_exact(Config(), 500)
    assert prefix_sharing_exact(Config(), 100)
    Config.sliding_window = None
    assert prefix_sharing_exact(Config(), 500)


def test_quantization_modes_resolve_and_map_to_loader_arguments() -> None:
    """auto never picks a bf16-dequantised GPT-OSS on CUDA; 'none' on an MXFP4 hub checkpoint is that dequantisation."""
    from transformers import GptOssConfig

    config = GptOssConfig(num_hidden_layers=2)
    config.quantization_config = {"quant_method": "mxfp4"}  # as in openai/gpt-oss-20b's config.json
    assert prequantized_method(config) == "mxfp4"
    assert prequantized_method(GptOssConfig(num_hidden_layers=2)) is None
    assert resolve_quantization("auto", "cuda", True, "mxfp4") == "nf4"  # no kernels package here; mxfp4 with it
    assert resolve_quantization("auto", "cuda", False, None) == "nf4"
    assert resolve_quantization("auto", "cpu", True, "mxfp4") == "none"
    assert resolve_quantization("none", "cuda", True, "mxfp4") == "none"
    cpu = torch.device("cpu")
    kwargs, used = from_pretrained_kwargs("none", cpu, "mxfp4")
    assert used == "bf16-dequantized-mxfp4"
    assert kwargs["quantization_config"].dequantize is True and kwargs["dtype"] == torch.bfloat16
    kwargs, used = from_pretrained_kwargs("nf4", cpu, None)  # a dense base: bitsandbytes Linear4bit
    assert used == "nf4" and kwargs["quantization_config"].bnb_4bit_quant_type == "nf4"
    assert kwargs["quantization_config"].bnb_4bit_compute_dtype == torch.float32  # bf16 on CUDA
    with pytest.raises(HardwareError, match=r"mxfp4.*triton>=3.4.*use quantization 'nf4'"):
        from_pretrained_kwargs("mxfp4", cpu, "mxfp4")


def test_generation_stops_at_the_callers_deadline(classifier: LocalLLMClassifier) -> None:
    """A passed deadline is an error, never a truncated (wrong) answer; a far one changes nothing."""
    with pytest.raises(ModelError, match="deadline passed with 4 of 4 ticket\\(s\\) unanswered"):
        classifier.classify_batch(TICKETS[:4], deadline=time.monotonic() - 1.0)
    far = classifier.classify_batch(TICKETS[:4], deadline=time.monotonic() + 600.0)
    assert far == classifier.classify_batch(TICKETS[:4])
