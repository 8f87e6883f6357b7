"""Temperature scaling of a checkpoint (`triage calibrate`) and the operating point (`triage calibrate-router`)."""

import shutil
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
from transformers import AutoTokenizer

from app.jobs.operating_point import RouterTarget, arbitrate, calibrate_router, threshold_for_rate
from app.server.settings import Settings
from models.calibrate import calibrate_checkpoint
from models.checkpoint import read_manifest
from models.encoder import EncoderClassifier
from models.errors import DataError
from models.taxonomy import load_taxonomy
from router.escalation import MergePolicy
from router.pipeline import HybridPipeline
from tests.conftest import running_server
from tests.fake_openai import FakeOpenAI, serve
from tests.llm_fixtures import adapter_dir  # noqa: F401


@pytest.fixture
def encoder_copy(tmp_path: Path, encoder_dir: Path) -> Path:
    return Path(shutil.copytree(encoder_dir, tmp_path / "encoder"))


def test_training_already_calibrates(encoder_dir: Path) -> None:
    calibration = read_manifest(encoder_dir).metrics["calibration"]
    assert calibration["nll_after"] <= calibration["nll_before"] + 1e-9
    assert set(calibration["ece_before"]) == set(load_taxonomy().names)


def test_calibrate_refits_temperatures_and_thresholds_in_place(encoder_copy: Path, dataset_dir: Path) -> None:
    before = read_manifest(encoder_copy)
    before.temperatures = [1.0] * len(before.temperatures)
    before.write(encoder_copy)
    manifest = calibrate_checkpoint(encoder_copy, dataset_dir)
    report = manifest.metrics["calibration"]
    assert report["nll_after"] <= report["nll_before"] + 1e-9
    for label, ece in report["ece_after"].items():  # a temperature that would worsen a label's ECE is not kept
        assert ece <= report["ece_before"][label] + 1e-12, label
    assert report["mean_ece_after"] <= report["mean_ece_before"]
    assert manifest.temperatures != [1.0] * len(manifest.temperatures)
    assert read_manifest(encoder_copy).temperatures == manifest.temperatures  # written to disk
    encoder = EncoderClassifier.load(encoder_copy)
    texts = ["app crash", "cancel my plan now"]
    logits = encoder.predict_texts(texts, logits=True)
    biases = np.asarray(manifest.biases)
    assert biases.shape == (len(manifest.temperatures),) and np.abs(biases).max() > 0  # base rates moved too
    expected = 1 / (1 + np.exp(-(logits / np.asarray(manifest.temperatures) + biases)))
    np.testing.assert_allclose(encoder.predict_texts(texts), expected, rtol=1e-5)  # what the server serves


def test_threshold_for_rate_is_the_quantile() -> None:
    confidences = np.linspace(0.0, 0.99, 100)
    threshold = threshold_for_rate(confidences, 0.15)
    assert int((confidences < threshold).sum()) == 15
    assert threshold_for_rate(confidences, 0.0) == 0.0
    assert (confidences < threshold_for_rate(confidences, 1.0)).all()


def test_target_escalation_hits_the_rate_and_the_server_uses_it(encoder_copy: Path, dataset_dir: Path) -> None:
    router = calibrate_router(encoder_copy, dataset_dir, RouterTarget(escalation=0.15))
    assert abs(router["validation_escalation_rate"] - 0.15) <= 0.02
    assert read_manifest(encoder_copy).router_threshold()[0] == router["escalation_threshold"]
    with running_server(Settings(encoder_path=encoder_copy, llm_backend="none")) as url:
        info = httpx.get(f"{url}/info").json()["escalation"]
    assert info["threshold"] == router["escalation_threshold"]
    assert "calibrate-router --target-escalation 0.15" in info["threshold_source"]


def test_target_f1_uses_the_llm_answers(
    encoder_copy: Path,
    dataset_dir: Path,
    tmp_path: Path,
    adapter_dir: Path,  # noqa: F811
) -> None:
    adapter = Path(shutil.copytree(adapter_dir, tmp_path / "adapter"))
    with serve(FakeOpenAI(tokenizer=AutoTokenizer.from_pretrained(adapter))) as url:
        router = calibrate_router(
            encoder_copy,
            dataset_dir,
            RouterTarget(f1=0.01),
            adapter=adapter,
            settings=Settings(llm_backend="openai", llm_endpoint=url),
        )
    assert router["chosen"]["reached"] is True
    assert router["chosen"]["f1_micro"] >= 0.01
    assert router["validation_escalation_rate"] == 0.0  # the encoder alone already reaches such a low target


def test_exactly_one_target() -> None:
    with pytest.raises(DataError, match="exactly one target"):
        RouterTarget(escalation=0.1, f1=0.8)
    with pytest.raises(DataError, match="must be in"):
        RouterTarget(escalation=1.5)


def _pipeline() -> HybridPipeline:
    taxonomy = load_taxonomy()
    return HybridPipeline.for_taxonomy(taxonomy, [0.5] * len(taxonomy.names))


def test_arbitrate_gives_a_label_to_the_llm_only_where_it_wins() -> None:
    """urgent: the LLM is right where the encoder is not; billing: the encoder is right; emotions: a tie."""
    pipeline = _pipeline()
    names = list(pipeline.names)
    rng = np.random.default_rng(0)
    n = 40
    y = np.zeros((n, len(names)))
    y[::2, names.index("urgent")] = 1
    y[1::2, names.index("billing")] = 1
    probs = np.full((n, len(names)), 0.1)
    probs[:, names.index("billing")] = np.where(y[:, names.index("billing")] == 1, 0.9, 0.1)
    probs[:, names.index("urgent")] = rng.uniform(0.35, 0.65, n)  # the encoder guesses on urgency
    llm = [["urgent"] if y[i, names.index("urgent")] else [] for i in range(n)]  # the LLM knows urgency only
    policy, table = arbitrate(pipeline, probs, llm, y, band=1.0)
    assert policy.default == "encoder"
    assert policy.per_group == {"urgent": "llm"}
    assert table["urgent"]["llm"] == 1.0 and table["urgent"]["encoder"] < 0.9
    assert table["billing"]["encoder"] == 1.0 and table["billing"]["llm"] == 0.0
    merged = replace(pipeline, merge_policy=policy).merge(pipeline.decide(probs[1]), ["urgent", "cancellation"])
    assert "billing" in merged.labels and "cancellation" not in merged.labels  # the encoder kept its topics


def test_arbitrate_goes_to_the_manifest_and_the_server_uses_it(
    encoder_copy: Path,
    dataset_dir: Path,
    adapter_dir: Path,  # noqa: F811
) -> None:
    adapter = Path(shutil.copytree(adapter_dir, encoder_copy.parent / "adapter"))
    with serve(FakeOpenAI(tokenizer=AutoTokenizer.from_pretrained(adapter))) as url:
        settings = Settings(llm_backend="openai", llm_endpoint=url)
        router = calibrate_router(
            encoder_copy, dataset_dir, RouterTarget(escalation=0.15), adapter, settings, arbitrate_labels=True
        )
    policy = MergePolicy.parse(router["merge_policy"])
    assert policy.default == "encoder"
    assert set(router["arbitration"]) == set(load_taxonomy().names)
    assert read_manifest(encoder_copy).router_merge_policy() == (router["merge_policy"], router["merge_policy_source"])
    with running_server(Settings(encoder_path=encoder_copy, llm_backend="none")) as url:
        info = httpx.get(f"{url}/info").json()["escalation"]
    assert info["merge_policy"] == router["merge_policy"]
    assert "calibrate-router --arbitrate" in info["merge_policy_source"]
    configured = Settings(encoder_path=encoder_copy, llm_backend="none", merge_policy="default=union")
    with running_server(configured) as url:
        info = httpx.get(f"{url}/info").json()["escalation"]
    assert info["merge_policy"] == "default=union" and info["merge_policy_source"].startswith("configured")


def test_arbitrate_needs_the_llm(encoder_copy: Path, dataset_dir: Path) -> None:
    with pytest.raises(DataError, match="--arbitrate needs the LLM's answers: pass --adapter DIR"):
        calibrate_router(encoder_copy, dataset_dir, RouterTarget(escalation=0.15), arbitrate_labels=True)
