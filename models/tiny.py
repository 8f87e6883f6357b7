"""Tiny models of the production architectures, built from scratch so triage runs with no model hub.

``tiny`` as a base model means: a BPE tokenizer trained on the training texts plus a small DeBERTa-v2
(the mDeBERTa-v3 architecture) with random weights, fine-tuned by the same code path as the real model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import DebertaV2Config, PreTrainedTokenizerFast

TINY = "tiny"
SPECIAL_TOKENS = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 8000, max_length: int = 256) -> PreTrainedTokenizerFast:
    """A byte-fallback-free BPE tokenizer on NFKC + Metaspace, wrapped for ``save_pretrained``.

    BPE rather than Unigram: on a corpus this small Unigram stops early and splits common words (see FACTS.md).
    """
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS)
    tok.train_from_iterator(texts, trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        unk_token="[UNK]",
        mask_token="[MASK]",
        model_max_length=max_length,
    )


def tiny_deberta_config(vocab_size: int, num_labels: int, pad_token_id: int, max_length: int = 256) -> DebertaV2Config:
    """DeBERTa-v2 at hidden 128 x 4 layers (≈1M params), same relative-attention settings as mDeBERTa-v3."""
    kwargs: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=512,
        max_position_embeddings=max_length,
        relative_attention=True,
        position_buckets=64,
        max_relative_positions=-1,
        pos_att_type=["p2c", "c2p"],
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        position_biased_input=False,
        type_vocab_size=0,
        num_labels=num_labels,
        problem_type="multi_label_classification",
        pad_token_id=pad_token_id,
    )
    return DebertaV2Config(**kwargs)


def mdeberta_v3_base_config(vocab_size: int, num_labels: int, pad_token_id: int) -> DebertaV2Config:
    """The published microsoft/mdeberta-v3-base architecture (278M params with its 250k vocabulary)."""
    kwargs: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        hidden_act="gelu",
        max_position_embeddings=512,
        relative_attention=True,
        position_buckets=256,
        max_relative_positions=-1,
        pos_att_type=["p2c", "c2p"],
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        position_biased_input=False,
        type_vocab_size=0,
        layer_norm_eps=1e-7,
        num_labels=num_labels,
        problem_type="multi_label_classification",
        pad_token_id=pad_token_id,
    )
    return DebertaV2Config(**kwargs)
