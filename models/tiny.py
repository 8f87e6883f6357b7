"""Tiny models of the production architectures, built from scratch so triage runs with no model hub.

``tiny`` as a base model means: a BPE tokenizer trained on the training texts plus a small DeBERTa-v2
(the mDeBERTa-v3 architecture) with random weights, fine-tuned by the same code path as the real model.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import DebertaV2Config, PreTrainedTokenizerFast

TINY = "tiny"
SPECIAL_TOKENS = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]


TOKENIZER_KINDS = ("bpe", "bytelevel")


def train_bpe_tokenizer(
    texts: Iterable[str], vocab_size: int = 8000, max_length: int = 256, kind: str = "bpe", lowercase: bool = False
) -> PreTrainedTokenizerFast:
    """A BPE tokenizer trained on ``texts``, wrapped for ``save_pretrained``.

    ``lowercase`` adds a lower-casing normaliser (saved with the tokenizer, so serving applies it too): "FACTURE",
    "Facture" and "facture" become the same pieces, as the n-gram baseline's vectoriser sees them.

    ``bpe``: NFKC + Metaspace pieces over the characters seen in training (an unseen character is ``[UNK]``).
    ``bytelevel``: NFKC + lower-case-free byte-level BPE: every byte is in the alphabet, so no text is ever
    ``[UNK]``; rare accented letters cost two tokens instead of one.
    BPE rather than Unigram: on a corpus this small Unigram stops early and splits common words (see FACTS.md).
    """
    if kind not in TOKENIZER_KINDS:
        raise ValueError(f"tokenizer kind must be one of {', '.join(TOKENIZER_KINDS)}, found {kind!r}")
    tok = Tokenizer(models.BPE(unk_token=None if kind == "bytelevel" else "[UNK]"))
    tok.normalizer = (
        normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()]) if lowercase else normalizers.NFKC()
    )
    if kind == "bytelevel":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
        tok.decoder = decoders.Metaspace()
        alphabet = []
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS, initial_alphabet=alphabet
    )
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


@contextmanager
def bpe_dropout(tokenizer: Any, probability: float) -> Iterator[None]:
    """Within the block, ``tokenizer`` (a fast tokenizer over a BPE model) skips each merge with ``probability``.

    BPE-dropout (Provilkov et al., 2020): the same word is split into different, smaller pieces from call to call.
    The tokenizer is restored on exit, so what it saves and serves splits deterministically. The ``tokenizers``
    library draws from its own unseeded generator: training with dropout is not bit-reproducible.
    """
    if not probability:
        yield
        return
    model = tokenizer.backend_tokenizer.model
    if not isinstance(model, models.BPE):
        raise ValueError(f"BPE-dropout needs a BPE tokenizer, found {type(model).__name__}")
    previous = model.dropout
    model.dropout = probability
    try:
        yield
    finally:
        model.dropout = previous


def tiny_deberta_config(
    vocab_size: int,
    num_labels: int,
    pad_token_id: int,
    max_length: int = 256,
    hidden_size: int = 128,
    layers: int = 4,
    dropout: float = 0.1,
) -> DebertaV2Config:
    """DeBERTa-v2 at hidden 128 x 4 layers (≈1M params), same relative-attention settings as mDeBERTa-v3.

    ``hidden_size`` (a multiple of 32: heads of 32), ``layers`` and ``dropout`` (hidden and attention) change
    the shape; the feed-forward is 4 x hidden as in the base model.
    """
    if hidden_size % 32 or hidden_size < 32:
        raise ValueError(f"tiny hidden_size must be a positive multiple of 32, found {hidden_size}")
    kwargs: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=hidden_size // 32,
        intermediate_size=4 * hidden_size,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
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
