"""``triage evaluate`` on the tiny encoder, with the LLM rows from the OpenAI-protocol backend."""

import json
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from app.jobs.evaluate import EvalConfig, hybrid, load_label_map, run_evaluation
from app.server.settings import Settings
from models.checkpoint import read_manifest
from models.datasets import multi_hot
from models.errors import DataError
from models.scoring import score
from models.taxonomy import load_taxonomy
from router.pipeline import HybridPipeline
from tests.fake_openai import FakeOpenAI, serve
from tests.llm_fixtures import adapter_dir  # noqa: F401


def test_scores_match_a_hand_computed_case() -> None:
    labels = ["billing", "urgent", "frustrated"]
    truth = [["billing", "urgent"], ["frustrated"], ["billing"], []]
    preds = [["billing", "urgent"], ["billing"], ["billing", "frustrated"], []]
    s = score(multi_hot(truth, labels), multi_hot(preds, labels), labels)
    # tp = 3 (billing x2, urgent), fp = 2 (billing row 1, frustrated row 2), fn = 1 (frustrated row 1)
    assert s.f1_micro == pytest.approx(6 / 9)
    # billing 2*2/(4+1+0)=0.8; urgent 1.0; frustrated 0 -> macro 0.6
    assert s.f1_macro == pytest.approx(0.6)
    assert s.exact_match == pytest.approx(2 / 4)


def test_hybrid_routes_by_threshold_and_merges() -> None:
    groups = {"topic": ["billing"], "urgency": ["urgent"]}
    pipeline = HybridPipeline.build(["billing", "urgent"], groups, [], {}, [0.5, 0.5], escalation_threshold=0.5)
    probs = np.asarray([[0.99, 0.01], [0.6, 0.1]])  # confidences 0.98 and 0.2
    llm = [["urgent"], ["urgent", "billing"]]
    preds, rate = hybrid(pipeline, probs, llm)
    assert preds == [["billing"], ["billing", "urgent"]] and rate == 0.5
    keep_topic = HybridPipeline.build(["billing", "urgent"], groups, [], {}, [0.5, 0.5], 0.5, "topic=encoder")
    preds, _ = hybrid(keep_topic, probs, [["urgent"], ["urgent"]])
    assert preds[1] == ["billing", "urgent"]


def test_train_encoder_reports_what_evaluate_scores(tmp_path: Path, encoder_dir: Path, dataset_dir: Path) -> None:
    """One pipeline: the test F1 in the checkpoint's manifest is `triage evaluate`'s encoder F1, to the digit."""
    manifest = read_manifest(encoder_dir, kind="encoder")
    config = EvalConfig(dataset_dir, encoder_dir, tmp_path / "r", settings=Settings(device="cpu"), baseline=False)
    report = run_evaluation(config, progress=False)
    for key in ("f1_micro", "f1_macro", "exact_match"):
        assert report["overall"]["encoder"][key] == manifest.metrics["test"][key]


def test_label_map_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"refund": "billing", "angry": "nope"}))
    with pytest.raises(DataError, match="unknown label"):
        load_label_map(path, load_taxonomy().names)


def test_evaluate_writes_tables_and_plots(
    tmp_path: Path,
    encoder_dir: Path,
    dataset_dir: Path,
    adapter_dir: Path,  # noqa: F811
) -> None:
    adapter = adapter_dir  # the folder vLLM serves: manifest and tokenizer
    fake = FakeOpenAI(tokenizer=AutoTokenizer.from_pretrained(adapter))
    with serve(fake) as url:
        config = EvalConfig(
            data=dataset_dir,
            encoder=encoder_dir,
            adapter=adapter,
            out=tmp_path / "report",
            settings=Settings(llm_backend="openai", llm_endpoint=url),
        )
        report = run_evaluation(config, progress=False)
    assert set(report["overall"]) == {"encoder", "llm", "hybrid", "ngram_baseline"}
    for values in report["overall"].values():
        assert 0 <= values["f1_micro"] <= 1 and values["tickets_per_s"] > 0
    assert 0 <= report["overall"]["hybrid"]["escalation_rate"] <= 1
    assert set(report["per_language"]["encoder"]) == {"en", "fr", "de", "nl"}
    assert set(report["per_label"]["encoder"]) == set(load_taxonomy().names)
    assert report["calibration"]["mean_ece_before"] >= 0
    rates = [p["rate"] for p in report["escalation_curve"]]
    assert rates[0] == 0.0 and rates[-1] == 1.0  # threshold 0: nothing escalates; above the top: everything
    assert len(set(rates)) > 10 and any(0.05 <= r <= 0.3 for r in rates)  # quantile thresholds spread the points
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert saved["overall"]["encoder"]["f1_micro"] == pytest.approx(report["overall"]["encoder"]["f1_micro"])
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| hybrid |" in markdown and "GPT-OSS-20B + LoRA (published)" in markdown
    for png in ("escalation_curve.png", "reliability.png", "per_label_f1.png"):
        assert (tmp_path / "report" / png).stat().st_size > 5000


def test_evaluate_with_a_label_map_scores_only_mapped_labels(
    tmp_path: Path, encoder_dir: Path, dataset_dir: Path
) -> None:
    renamed = {"technical_issue": "bug", "billing": "payment"}
    rows = [json.loads(line) for line in (dataset_dir / "test.jsonl").read_text().splitlines()][:60]
    theirs = tmp_path / "theirs.jsonl"
    with theirs.open("w") as fh:
        for row in rows:
            labels = [renamed[x] for x in row["labels"] if x in renamed] + ["something_else"]
            fh.write(json.dumps({"text": row["text"], "labels": labels, "language": row["language"]}) + "\n")
    label_map = tmp_path / "map.json"
    label_map.write_text(json.dumps({v: k for k, v in renamed.items()}))
    report = run_evaluation(
        EvalConfig(
            data=theirs, encoder=encoder_dir, out=tmp_path / "r", label_map=label_map, baseline_data=dataset_dir
        ),
        progress=False,
    )
    assert set(report["overall"]) == {"encoder", "ngram_baseline"}  # trained on dataset_dir, scored on theirs
    assert report["labels"] == ["technical_issue", "billing"]
    assert set(report["per_label"]["encoder"]) == {"technical_issue", "billing"}
    support = report["per_label"]["encoder"]["billing"]["support"]
    assert support == sum("billing" in r["labels"] for r in rows)
    assert np.isfinite(report["overall"]["encoder"]["f1_micro"])
