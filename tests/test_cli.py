"""The ``triage`` console script, run as a real subprocess."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import build_default, calibrate_default
from models.checkpoint import read_manifest


def triage(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_generate_data_then_train_encoder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = triage("generate-data", "--out", str(data), "--n", "300", "--seed", "3", "--quiet")
    assert done.returncode == 0, done.stderr
    assert {p.name for p in data.iterdir()} >= {"train.jsonl", "validation.jsonl", "test.jsonl", "taxonomy.json"}
    out = tmp_path / "enc"
    done = triage(
        "train-encoder", "--data", str(data), "--base-model", "tiny", "--out", str(out), "--epochs", "1", "--quiet"
    )
    assert done.returncode == 0, done.stderr
    assert "F1 micro" in done.stdout and "test_heldout" in done.stdout
    assert (out / "triage_manifest.json").exists()


def test_unreachable_base_model_fails_with_a_hint(tmp_path: Path, dataset_dir: Path) -> None:
    done = triage(
        "train-encoder",
        "--data",
        str(dataset_dir),
        "--base-model",
        "microsoft/mdeberta-v3-base",
        "--out",
        str(tmp_path / "x"),
        "--quiet",
        env={"HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 2
    assert "use --base-model tiny" in done.stderr
    assert not (tmp_path / "x").exists()


def test_serve_refuses_a_missing_checkpoint(tmp_path: Path) -> None:
    done = triage("serve", "--encoder", str(tmp_path / "none"), "--port", "1")
    assert done.returncode == 2
    assert "does not exist; build the default with `triage build-default`" in done.stderr


def test_bad_data_folder_is_reported(tmp_path: Path) -> None:
    done = triage("train-encoder", "--data", str(tmp_path), "--base-model", "tiny", "--out", str(tmp_path / "o"))
    assert done.returncode == 2
    assert "missing train.jsonl" in done.stderr


def test_build_default_if_missing_skips_an_existing_checkpoint(tmp_path: Path, encoder_dir: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "encoder").symlink_to(encoder_dir)
    built = build_default(tmp_path / "data", checkpoints, if_missing=True, n=100, seed=0, progress=False, adapter=False)
    assert built is False
    assert not (tmp_path / "data").exists()


def test_the_default_calibrates_on_the_file_it_is_given(tmp_path: Path, encoder_dir: Path, dataset_dir: Path) -> None:
    encoder = Path(shutil.copytree(encoder_dir, tmp_path / "encoder"))
    calibration = tmp_path / "people.jsonl"
    shutil.copy(dataset_dir / "test.jsonl", calibration)  # any labelled file the encoder never trained on
    calibrate_default(encoder, None, dataset_dir, calibration)
    manifest = read_manifest(encoder)
    assert manifest.metrics["calibration"]["data"] == str(calibration)
    assert str(calibration) in manifest.extra["router"]["source"]
    assert "merge_policy" not in manifest.extra["router"]  # no adapter: nothing to arbitrate
    assert len(manifest.biases) == len(manifest.temperatures)


def test_the_default_falls_back_to_generated_validation_with_a_warning(
    tmp_path: Path, encoder_dir: Path, dataset_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    encoder = Path(shutil.copytree(encoder_dir, tmp_path / "encoder"))
    calibrate_default(encoder, None, dataset_dir, tmp_path / "missing.jsonl")
    assert "missing.jsonl not found: calibrating on the generated validation split" in caplog.text
    assert read_manifest(encoder).metrics["calibration"]["data"] == str(dataset_dir / "validation.jsonl")
