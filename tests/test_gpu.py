"""GPU checks (``pytest -m gpu``; ``scripts/gpu-check.sh`` runs them last). Skipped, with the reason, without CUDA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.llm_fixtures import adapter_dir  # noqa: F401

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason=f"needs a CUDA GPU; torch {torch.__version__} sees none (run scripts/gpu-check.sh on a GPU machine)",
    ),
]


def test_encoder_in_bf16_on_cuda_agrees_with_fp32_on_cpu(encoder_dir: Path) -> None:
    from models.encoder import load_for_serving

    texts = ["The app crashes on my TV.", "Je veux annuler mon abonnement.", "Bitte Rechnung erstatten."]
    cpu = load_for_serving(encoder_dir, "cpu", "float32").predict_texts(texts)
    gpu = load_for_serving(encoder_dir, "cuda", "auto").predict_texts(texts)
    assert np.abs(np.asarray(cpu) - np.asarray(gpu)).max() < 0.05


def test_cached_relative_positions_on_cuda_equal_the_stock_forward() -> None:
    import copy

    from models.relpos import cache_relative_positions
    from tests.test_relpos import batch, model

    stock = model().to("cuda", torch.bfloat16)
    cached = copy.deepcopy(stock)
    assert cache_relative_positions(cached) == 2
    for lengths in ([1], [40, 12], [128, 5]):
        ids, mask = (t.to("cuda") for t in batch(lengths))
        with torch.inference_mode():
            expected = stock(input_ids=ids, attention_mask=mask).logits
            got = cached(input_ids=ids, attention_mask=mask).logits
        torch.testing.assert_close(got, expected, rtol=0.02, atol=0.05)


def test_nf4_experts_on_cuda_answer_like_the_dense_model(adapter_dir: Path) -> None:  # noqa: F811
    from transformers import AutoConfig, AutoModelForCausalLM

    from models.quantize import expert_storage_report, load_causal_lm

    base = adapter_dir / "base"
    config = AutoConfig.from_pretrained(base)
    model, used = load_causal_lm(str(base), "auto", torch.device("cuda"), config)
    assert used == "nf4" and expert_storage_report(model)["dense"] == 0
    dense = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    ids = torch.randint(5, config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(input_ids=ids.cuda()).logits.float().cpu()
        reference = dense(input_ids=ids).logits
    assert torch.nn.functional.cosine_similarity(ours.flatten(), reference.flatten(), dim=0) > 0.98


def test_gpt_oss_20b_loads_in_4_bits_within_its_plan() -> None:
    """Needs openai/gpt-oss-20b in the Hugging Face cache (scripts/gpu-check.sh downloads it while training)."""
    from huggingface_hub import try_to_load_from_cache

    from models.memory_plan import ServingShape, detected_gpu, load_config, serving_plan
    from models.quantize import expert_storage_report, load_causal_lm

    if not isinstance(try_to_load_from_cache("openai/gpt-oss-20b", "config.json"), str):
        pytest.skip("openai/gpt-oss-20b is not in the Hugging Face cache")
    config = load_config("openai/gpt-oss-20b")
    gpu = detected_gpu()
    assert gpu is not None
    plan = serving_plan(None, config, gpu, ServingShape(), "nf4")
    torch.cuda.reset_peak_memory_stats()
    model, used = load_causal_lm("openai/gpt-oss-20b", "nf4", torch.device("cuda"), config)
    assert used == "nf4" and expert_storage_report(model) == {"nf4": 48, "dense": 0}
    weights = plan.by_component("LLM ")
    assert torch.cuda.memory_allocated() <= 1.05 * weights, plan.render()
    assert torch.cuda.max_memory_allocated() <= 1.05 * weights + plan.by_component("NF4 expert"), plan.render()
