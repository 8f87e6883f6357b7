"""Mean pooling and the warm start of a from-scratch DeBERTa-v2 (models/pooling.py), with real tiny models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import BertConfig, DebertaV2ForSequenceClassification

from models.encoder import EncoderClassifier
from models.errors import CheckpointError, DataError
from models.pooling import (
    MeanPooledDebertaV2ForSequenceClassification,
    build_classifier,
    load_classifier,
    warm_start_parameters,
)
from models.tiny import tiny_deberta_config
from models.train_encoder import EncoderTrainingArgs


def tiny(pooling: str) -> Any:
    torch.manual_seed(0)
    config = tiny_deberta_config(vocab_size=300, num_labels=5, pad_token_id=0, max_length=64, hidden_size=64, layers=2)
    config.pooling = pooling
    return build_classifier(config).eval()


def batch(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token ids, right-padded with id 0, and their attention mask."""
    generator = torch.Generator().manual_seed(sum(lengths))
    width = max(lengths)
    ids = torch.zeros((len(lengths), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(lengths):
        ids[row, :length] = torch.randint(5, 300, (length,), generator=generator)
        mask[row, :length] = 1
    return ids, mask


def test_the_config_chooses_the_head() -> None:
    assert type(tiny("cls")) is DebertaV2ForSequenceClassification
    assert type(tiny("mean")) is MeanPooledDebertaV2ForSequenceClassification


def test_a_mean_pooled_checkpoint_loads_as_saved(tmp_path: Path) -> None:
    model = tiny("mean")
    model.save_pretrained(tmp_path)
    loaded = load_classifier(str(tmp_path)).eval()
    assert type(loaded) is MeanPooledDebertaV2ForSequenceClassification
    ids, mask = batch([7, 12, 3])
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids, attention_mask=mask).logits, model(ids, mask).logits)


def test_mean_pooling_reads_every_token_and_ignores_padding() -> None:
    model = tiny("mean")
    ids, mask = batch([9, 4])
    with torch.no_grad():
        padded = model(input_ids=ids, attention_mask=mask).logits[1]
        alone = model(input_ids=ids[1:, :4], attention_mask=mask[1:, :4]).logits[0]
        changed = ids.clone()
        changed[1, 3] = 4  # the last real token of the second ticket
        moved = model(input_ids=changed, attention_mask=mask).logits[1]
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(padded, moved), "a change to the last token must change the logits"


@pytest.mark.parametrize("lengths", [[1], [5, 17], [30, 2, 9, 64]])
def test_with_zero_residual_branches_the_model_is_its_bag_of_embeddings(lengths: list[int]) -> None:
    model = tiny("mean")
    ids, mask = batch(lengths)
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).logits
        model.zero_residual_branches()
        full = model(input_ids=ids, attention_mask=mask).logits
        bag = model.bag_logits(ids, mask)
    torch.testing.assert_close(full, bag, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(before, full), "zeroing the branches must change a randomly initialised model"


def test_the_warm_start_trains_only_what_the_bag_uses() -> None:
    model = tiny("mean")
    names = {id(p): name for name, p in model.named_parameters()}
    trained = {names[id(p)] for p in warm_start_parameters(model)}
    assert "deberta.embeddings.word_embeddings.weight" in trained
    assert {"pooler.dense.weight", "classifier.weight"} <= trained
    assert not any(name.startswith("deberta.encoder.") for name in trained)


def test_a_pooling_the_code_cannot_build_is_refused_by_name() -> None:
    config = tiny_deberta_config(vocab_size=300, num_labels=5, pad_token_id=0)
    config.pooling = "max"
    with pytest.raises(CheckpointError, match="unknown pooling 'max'"):
        build_classifier(config)
    bert = BertConfig(vocab_size=300, hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    bert.pooling = "mean"
    with pytest.raises(CheckpointError, match="mean pooling is implemented for deberta-v2 models, not 'bert'"):
        build_classifier(bert)


def test_pooling_and_warm_start_arguments() -> None:
    assert EncoderTrainingArgs.for_base_model("tiny").resolved_pooling == "mean"
    assert EncoderTrainingArgs.for_base_model("tiny").warm_start_epochs > 0
    assert EncoderTrainingArgs().resolved_pooling == "cls"  # the published recipe for a pretrained base
    with pytest.raises(DataError, match="warm_start_epochs needs --base-model tiny with mean pooling"):
        EncoderTrainingArgs(base_model="microsoft/mdeberta-v3-base", warm_start_epochs=2)
    with pytest.raises(DataError, match="found base 'tiny', pooling 'cls'"):
        EncoderTrainingArgs.for_base_model("tiny", pooling="cls")


def test_the_trained_tiny_encoder_is_mean_pooled_and_warm_started(encoder_dir: Path) -> None:
    encoder = EncoderClassifier.load(encoder_dir, device="cpu")
    assert type(encoder.model) is MeanPooledDebertaV2ForSequenceClassification
    warm = encoder.manifest.metrics["warm_start"]
    assert [row["epoch"] for row in warm] == list(range(1, len(warm) + 1))
    assert warm[-1]["loss"] < warm[0]["loss"], f"the warm start did not learn: {warm}"
