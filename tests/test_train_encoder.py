import json
from pathlib import Path

import numpy as np
import pytest

from models.checkpoint import read_manifest
from models.encoder import EncoderClassifier
from models.errors import DataError
from models.taxonomy import load_taxonomy
from models.tiny import bpe_dropout, train_bpe_tokenizer
from models.train_encoder import EncoderTrainingArgs, _average_precision, train_encoder


def test_checkpoint_carries_everything_needed_to_serve(encoder_dir: Path) -> None:
    manifest = read_manifest(encoder_dir, kind="encoder")
    assert manifest.labels() == load_taxonomy().names
    assert len(manifest.thresholds) == 15 and all(0 < t < 1 for t in manifest.thresholds)
    assert manifest.training_args["base_model"] == "tiny"
    assert {"validation", "test", "test_heldout"} <= set(manifest.metrics)
    assert 0.0 <= manifest.metrics["test"]["f1_micro"] <= 1.0
    assert manifest.data_fingerprint and manifest.versions["torch"]
    assert (encoder_dir / "README.md").read_text().startswith("# triage encoder (tiny)")
    assert json.loads((encoder_dir / "config.json").read_text())["model_type"] == "deberta-v2"


def test_encoder_predicts_probabilities_in_input_order(encoder_dir: Path) -> None:
    encoder = EncoderClassifier.load(encoder_dir, device="cpu")
    texts = ["app crash", "Ich möchte kündigen, sofort! " * 5, "merci beaucoup"]
    probs = encoder.predict_texts(texts)
    assert probs.shape == (3, 15)
    assert ((probs > 0) & (probs < 1)).all()
    one_by_one = np.vstack([encoder.predict_ids(encoder.encode([t])) for t in texts])
    np.testing.assert_allclose(probs, one_by_one, atol=1e-5)  # padding does not change a ticket's scores


def test_encoder_truncates_to_max_length(encoder_dir: Path) -> None:
    encoder = EncoderClassifier.load(encoder_dir, device="cpu")
    (ids,) = encoder.encode(["word " * 5000])
    assert len(ids) == encoder.max_length


def test_encoder_measures_its_forward_pass_overhead_in_tokens(encoder_dir: Path) -> None:
    encoder = EncoderClassifier.load(encoder_dir, device="cpu")
    # a 1M-parameter model is dominated by per-call overhead: worth far more than a short ticket's tokens
    assert 16 < encoder.measure_batch_overhead() <= 16_384


def test_training_arguments_are_validated() -> None:
    with pytest.raises(DataError, match=r"epochs=0.*learning_rate=2.0"):
        EncoderTrainingArgs(epochs=0, learning_rate=2.0)
    tiny = EncoderTrainingArgs.for_base_model("tiny", epochs=2)
    assert tiny.epochs == 2 and tiny.learning_rate > EncoderTrainingArgs().learning_rate


def test_average_precision_rewards_ranking_true_labels_first() -> None:
    y = np.array([[1, 0], [0, 1]])
    assert _average_precision(y, np.array([[3.0, -1.0], [-2.0, 2.0]])) == 1.0
    assert _average_precision(y, np.array([[-3.0, 1.0], [2.0, -2.0]])) == pytest.approx((1 / 3 + 2 / 4) / 2)
    assert _average_precision(np.zeros((2, 2)), np.zeros((2, 2))) == 0.0


def test_a_selection_file_picks_the_epoch(dataset_dir: Path, tmp_path: Path) -> None:
    args = EncoderTrainingArgs.for_base_model(
        "tiny", epochs=2, patience=2, tiny_vocab_size=1000, max_length=64, select_on=str(dataset_dir / "test.jsonl")
    )
    manifest = train_encoder(dataset_dir, tmp_path / "encoder", args, progress=False)
    history = manifest.metrics["history"]
    scores = [row["selection_average_precision"] for row in history]
    assert len(scores) == 2 and all(0 < s <= 1 for s in scores)
    assert manifest.metrics["best_epoch"] == 1 + int(np.argmax(scores))
    assert manifest.training_args["select_on"] == str(dataset_dir / "test.jsonl")


def test_bpe_dropout_splits_differently_inside_the_block_and_deterministically_after() -> None:
    tokenizer = train_bpe_tokenizer(["subscription invoice payment"] * 50, vocab_size=120)
    whole = tokenizer.tokenize("subscription invoice")
    with bpe_dropout(tokenizer, 0.5):
        splits = {tuple(tokenizer.tokenize("subscription invoice")) for _ in range(20)}
    assert len(splits) > 1 and all(len(split) >= len(whole) for split in splits)
    assert tokenizer.tokenize("subscription invoice") == whole
    assert tokenizer.backend_tokenizer.model.dropout is None


def test_tokenizer_settings_are_validated() -> None:
    with pytest.raises(DataError, match="tiny_lowercase and bpe_dropout"):
        EncoderTrainingArgs(base_model="microsoft/mdeberta-v3-base", tiny_lowercase=True)
    with pytest.raises(DataError, match=r"bpe_dropout=1\.0"):
        EncoderTrainingArgs.for_base_model("tiny", bpe_dropout=1.0)


def test_a_lower_casing_tokenizer_is_saved_with_the_checkpoint(dataset_dir: Path, tmp_path: Path) -> None:
    args = EncoderTrainingArgs.for_base_model(
        "tiny", epochs=1, tiny_vocab_size=1000, max_length=64, tiny_lowercase=True, bpe_dropout=0.1
    )
    manifest = train_encoder(dataset_dir, tmp_path / "encoder", args, progress=False)
    assert manifest.training_args["tiny_lowercase"] and manifest.training_args["bpe_dropout"] == 0.1
    encoder = EncoderClassifier.load(tmp_path / "encoder", device="cpu")
    # serving splits as training did: case-blind, and without the training-time dropout
    assert encoder.encode(["MY INVOICE IS WRONG"]) == encoder.encode(["my invoice is wrong"])
    assert encoder.encode(["subscription"] * 10) == [encoder.encode(["subscription"])[0]] * 10
    saved = json.loads((tmp_path / "encoder" / "tokenizer.json").read_text())
    assert saved["model"]["dropout"] is None
