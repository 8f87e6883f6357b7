"""Memory plans from the published configs on the meta device: what a 24 GB RTX 4090 must hold to serve and to
QLoRA-train gpt-oss-20b beside mDeBERTa, and the refusal of what cannot fit."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.cli import main
from app.server.llm_tier import serving_shape
from app.server.settings import Settings
from models.errors import HardwareError
from models.memory_plan import (
    GIB,
    ServingShape,
    check_serving_fits,
    load_config,
    meta_model,
    named_gpu,
    serving_plan,
)
from models.train_adapter import AdapterTrainingArgs, training_plan_for
from tests.llm_fixtures import adapter_dir  # noqa: F401

BUDGET = 22e9
"""The bound for one RTX 4090 (24 GB): serving and training each at most 22 GB, leaving the rest of the card."""
RTX4090 = named_gpu("rtx4090")


@pytest.fixture(scope="module")
def gpt_oss() -> object:
    return load_config("openai/gpt-oss-20b")


@pytest.fixture(scope="module")
def mdeberta() -> object:
    return load_config("microsoft/mdeberta-v3-base")


def test_the_shipped_configs_build_the_published_models(gpt_oss: object, mdeberta: object) -> None:
    llm = meta_model(gpt_oss, "causal-lm")
    assert all(p.is_meta for p in llm.parameters())
    assert 20.8e9 < sum(p.numel() for p in llm.parameters()) < 21.0e9  # "21B parameters"
    encoder = meta_model(mdeberta, "classifier")
    assert 278e6 < sum(p.numel() for p in encoder.parameters()) < 280e6  # "278M, 192M of them embeddings"


def test_serving_the_production_pair_fits_a_4090(gpt_oss: object, mdeberta: object) -> None:
    plan = serving_plan(mdeberta, gpt_oss, RTX4090, serving_shape(Settings()), "auto")
    assert plan.fits and plan.total <= BUDGET, plan.render()
    experts = plan.by_component("LLM MoE experts (nf4)")
    assert 9.0 * GIB < experts < 9.5 * GIB  # 19.1B expert parameters at 4.13 bits
    assert plan.by_component("LLM weights (bf16)") < 3.5 * GIB  # attention, router, embeddings only
    assert "KV cache" in plan.render() and "LoRA adapter" in plan.render()


def test_experts_in_bf16_cannot_fit_and_the_plan_says_so(gpt_oss: object, mdeberta: object) -> None:
    plan = serving_plan(mdeberta, gpt_oss, RTX4090, serving_shape(Settings()), "none")
    assert not plan.fits and plan.total > 38 * GIB
    assert "DOES NOT FIT" in plan.render()


def test_qlora_training_of_the_production_llm_fits_a_4090() -> None:
    args = AdapterTrainingArgs.for_base_model("openai/gpt-oss-20b")
    plan = training_plan_for(args, RTX4090)
    assert plan.fits and plan.total <= BUDGET, plan.render()
    assert plan.by_component("optimizer state (paged 8-bit AdamW)") > 0
    unquantised = training_plan_for(
        AdapterTrainingArgs.for_base_model("openai/gpt-oss-20b", quantization="none"), RTX4090
    )
    assert not unquantised.fits
    too_long = training_plan_for(
        AdapterTrainingArgs.for_base_model("openai/gpt-oss-20b", batch_size=16, max_length=4096), RTX4090
    )
    assert not too_long.fits


def test_the_server_check_refuses_with_the_plan(encoder_dir: Path, adapter_dir: Path) -> None:  # noqa: F811
    shape = ServingShape()
    with pytest.raises(HardwareError, match=r"cannot fit the GPU(.|\n)*DOES NOT FIT"):
        check_serving_fits(encoder_dir, adapter_dir, shape, "none", base_override="openai/gpt-oss-20b", gpu=RTX4090)
    plan = check_serving_fits(encoder_dir, adapter_dir, shape, "auto", base_override="openai/gpt-oss-20b", gpu=RTX4090)
    assert plan is not None and plan.fits
    assert check_serving_fits(encoder_dir, adapter_dir, shape) is None  # no GPU here: nothing to check


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """``main`` points the root logger at this test's captured stderr: put the previous handlers back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_doctor_prints_every_plan_and_fails_when_one_cannot_fit(
    restore_logging: None,
    encoder_dir: Path,
    adapter_dir: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TRIAGE_ENCODER_PATH", str(encoder_dir))
    monkeypatch.setenv("TRIAGE_LLM_ADAPTER_PATH", str(adapter_dir))
    assert main(["doctor", "--gpu", "rtx4090", "--json", str(tmp_path / "doctor.json")]) == 0
    out = capsys.readouterr().out
    for section in ("== configured serving ==", "== production serving ==", "== production QLoRA training =="):
        assert section in out
    assert "bitsandbytes" in out and "verdict: every plan fits, 0 problem(s)" in out
    report = json.loads((tmp_path / "doctor.json").read_text())
    assert report["ok"] and all(plan["fits"] for plan in report["plans"].values())
    assert report["plans"]["production serving"]["total_gib"] * GIB <= BUDGET

    monkeypatch.setenv("TRIAGE_LLM_QUANTIZATION", "none")
    assert main(["doctor", "--gpu", "rtx4090"]) == 1
    assert "NOT every plan fits" in capsys.readouterr().out
    assert main(["doctor", "--gpu", "tpu-v9"]) == 2
    assert "unknown GPU 'tpu-v9'" in capsys.readouterr().err
