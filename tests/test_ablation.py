"""`triage ablate`: variants parse strictly, train through train_encoder and are scored through the pipeline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.jobs.ablation import Variant, parse_variant, run_ablation, score_encoder
from models.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


def test_parse_variant_types_each_setting() -> None:
    variant = parse_variant("aug:augment=0.5,tiny_tokenizer=bytelevel,epochs=3,dropout=none,data=/d", Path("x"))
    assert variant == Variant(
        "aug", Path("/d"), {"augment": 0.5, "tiny_tokenizer": "bytelevel", "epochs": 3, "dropout": None}
    )
    assert parse_variant("plain:", Path("x")) == Variant("plain", Path("x"), {})
    assert parse_variant("b:bf16=true", Path("x")).overrides == {"bf16": True}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("a:augmnet=0.5", r"variant 'a': unknown setting 'augmnet'; expected data or one of epochs, "),
        ("a:augment", r"variant 'a': expected key=value, found 'augment'"),
        ("a:epochs=many", r"variant setting epochs='many': expected int"),
        (":epochs=2", r"expected name:key=value,\.\.\., found no name"),
        ("a:base_model=x", r"unknown setting 'base_model'"),
    ],
)
def test_bad_variants_are_named(spec: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_variant(spec, Path("x"))


def test_ablation_trains_scores_and_draws(dataset_dir: Path, tmp_path: Path) -> None:
    variants = [
        Variant("base", dataset_dir, {"epochs": 1, "tiny_vocab_size": 1000, "max_length": 64}),
        Variant("augmented", dataset_dir, {"epochs": 2, "tiny_vocab_size": 1000, "max_length": 64, "augment": 1.0}),
    ]
    rows = run_ablation(variants, dataset_dir / "test.jsonl", tmp_path / "abl", progress=False)
    assert [r["name"] for r in rows] == ["base", "augmented"]
    for row in rows:  # the table holds what scoring the written checkpoint gives
        again = score_encoder(tmp_path / "abl" / row["name"] / "encoder", dataset_dir / "test.jsonl")
        assert again["f1_micro"] == pytest.approx(row["f1_micro"])
        assert 0 <= row["mean_ece"] <= 1
    saved = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert [r["name"] for r in saved["rows"]] == ["base", "augmented"]
    table = (tmp_path / "abl" / "ablation.md").read_text()
    assert "| augmented |" in table and f"{rows[1]['f1_micro']:.3f}" in table
    assert (tmp_path / "abl" / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ablation_refuses_duplicate_names(dataset_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="variant names must be distinct"):
        run_ablation([Variant("a", dataset_dir), Variant("a", dataset_dir)], dataset_dir / "test.jsonl", tmp_path)


def test_cli_reports_a_bad_variant(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "ablate", "--variant", "a:nope=1", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "unknown setting 'nope'" in done.stderr
