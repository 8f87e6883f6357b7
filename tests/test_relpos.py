"""Relative-position projections computed once (models/relpos.py) give the stock DeBERTa-v2 logits."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from transformers import DebertaV2ForSequenceClassification

import models.relpos as relpos
from models.relpos import CachedPositionAttention, cache_relative_positions
from models.tiny import tiny_deberta_config


def model(**overrides: Any) -> Any:
    """A tiny DeBERTa-v2 with log-bucketed positions (16 buckets, 128 positions: lengths past 8 reach the log
    buckets) and large random weights, so position scores move the logits."""
    torch.manual_seed(0)
    config = tiny_deberta_config(vocab_size=300, num_labels=5, pad_token_id=0, max_length=128, hidden_size=64, layers=2)
    config.position_buckets = 16
    for key, value in overrides.items():
        setattr(config, key, value)
    net = DebertaV2ForSequenceClassification(config).eval()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.normal_(0.0, 0.3)
    return net


def batch(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(sum(lengths))
    ids = torch.zeros((len(lengths), max(lengths)), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(lengths):
        ids[row, :length] = torch.randint(5, 300, (length,), generator=generator)
        mask[row, :length] = 1
    return ids, mask


def logits(net: torch.nn.Module, lengths: list[int]) -> torch.Tensor:
    ids, mask = batch(lengths)
    with torch.inference_mode():
        return net(input_ids=ids, attention_mask=mask).logits


SHAPES = [[1], [7], [64], [3, 40, 12], [128, 5], [9] * 8]


@pytest.mark.parametrize(
    "overrides",
    [{}, {"share_att_key": False}, {"pos_att_type": ["c2p"]}, {"pos_att_type": ["p2c"], "share_att_key": False}],
    ids=["shared-keys", "own-position-projections", "c2p-only", "p2c-only"],
)
def test_cached_logits_equal_the_stock_forward(overrides: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    stock = model(**overrides)
    cached = copy.deepcopy(stock)
    assert cache_relative_positions(cached) == 2
    reached: list[int] = []
    original = relpos._reachable

    def counted(index: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        reached.append(1)
        return original(index, table)

    monkeypatch.setattr(relpos, "_reachable", counted)
    for lengths in SHAPES:
        expected = logits(stock, lengths)
        assert expected.abs().max() > 0.5  # position scores must matter for the comparison to mean anything
        torch.testing.assert_close(logits(cached, lengths), expected, rtol=1e-5, atol=1e-5)
    per_forward = 2 * len(overrides.get("pos_att_type", ["c2p", "p2c"]))
    assert len(reached) == per_forward * len(SHAPES)  # the cached path ran, not the stock fallback


def test_layers_read_the_cache_not_the_weights() -> None:
    """Edit a key projection after caching: the stock model sees the edit in its position scores, the cached one
    does not (its projections were computed before), so the logits differ. The equality above is not vacuous."""
    stock = model()
    cached = copy.deepcopy(stock)
    cache_relative_positions(cached)
    with torch.no_grad():
        cached.deberta.encoder.layer[0].attention.self.key_proj.weight.add_(0.5)
    with torch.no_grad():
        edited = copy.deepcopy(stock)
        edited.deberta.encoder.layer[0].attention.self.key_proj.weight.add_(0.5)
    assert not torch.allclose(logits(cached, [40]), logits(edited, [40]), atol=1e-3)


def test_bf16_cache_matches_the_stock_bf16_forward() -> None:
    stock = model().to(torch.bfloat16)
    cached = copy.deepcopy(stock)
    cache_relative_positions(cached)
    attention = cached.deberta.encoder.layer[0].attention.self
    assert isinstance(attention, CachedPositionAttention)
    assert attention.cached_pos_key is not None and attention.cached_pos_key.dtype == torch.bfloat16
    for lengths in ([12], [64, 30]):
        torch.testing.assert_close(logits(cached, lengths), logits(stock, lengths), rtol=0.02, atol=0.05)


def test_training_drops_the_cache_and_uses_the_stock_computation() -> None:
    net = model()
    cache_relative_positions(net)
    net.train()
    attention = net.deberta.encoder.layer[1].attention.self
    assert isinstance(attention, CachedPositionAttention)
    assert attention.cached_pos_key is None and attention.cached_pos_query is None
    with torch.no_grad():  # weights change while training: eval afterwards must not read stale projections
        attention.key_proj.weight.mul_(1.5)
    net.eval()
    fresh = copy.deepcopy(net)
    cache_relative_positions(fresh)
    torch.testing.assert_close(logits(net, [30]), logits(fresh, [30]), rtol=1e-5, atol=1e-5)


def test_cache_is_not_saved_in_a_checkpoint(tmp_path: Any) -> None:
    net = model()
    cache_relative_positions(net)
    assert not any("cached_pos" in key for key in net.state_dict())


def test_a_model_without_deberta_layers_is_left_alone() -> None:
    assert cache_relative_positions(torch.nn.Linear(3, 3)) == 0
