"""A tiny GPT-OSS and its tokenizer, built from scratch so the LLM tier trains and runs with no model hub.

The tokenizer is a byte-level BPE (like GPT-OSS's o200k) with the harmony special tokens and a harmony-style chat
template, so prompts are rendered by ``tokenizer.apply_chat_template`` for the tiny and the real model alike.
:func:`render_prompt` is the one place that turns chat messages into a prompt string for either.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import GptOssConfig, PreTrainedTokenizerFast

from models.errors import ModelError

logger = logging.getLogger(__name__)

START, END, MESSAGE, CHANNEL, RETURN, PAD = (
    "<|start|>",
    "<|end|>",
    "<|message|>",
    "<|channel|>",
    "<|return|>",
    "<|endoftext|>",
)
HARMONY_SPECIAL_TOKENS = [PAD, START, END, MESSAGE, CHANNEL, RETURN]
FINAL_CHANNEL = f"{CHANNEL}final{MESSAGE}"
"""What a harmony prompt must end with so the model answers directly, skipping the analysis channel."""
ASSISTANT_START = f"{START}assistant"

HARMONY_TEMPLATE = (
    "{%- for message in messages -%}"
    "<|start|>{{ message['role'] }}<|message|>{{ message['content'] }}<|end|>"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|start|>assistant<|channel|>final<|message|>{%- endif -%}"
)
"""The harmony layout GPT-OSS uses, reduced to what triage needs: no tools, no analysis channel."""


def train_llm_tokenizer(
    texts: Iterable[str], extra_texts: Sequence[str] = (), vocab_size: int = 4000, max_length: int = 1024
) -> PreTrainedTokenizerFast:
    """A byte-level BPE over ``texts`` (tickets) and ``extra_texts`` (prompt and label text), with harmony tokens.

    Byte-level means no unknown tokens (emoji, accents and typos all encode); ``<|return|>`` is EOS and
    ``<|endoftext|>`` is padding, as in GPT-OSS. ``extra_texts`` is repeated so the prompt's words get whole tokens.
    """
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=HARMONY_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )

    def corpus() -> Iterable[str]:
        yield from texts
        for _ in range(20):
            yield from extra_texts

    tok.train_from_iterator(corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=RETURN,
        pad_token=PAD,
        extra_special_tokens=[START, END, MESSAGE, CHANNEL],
        model_max_length=max_length,
        padding_side="left",
    )
    tokenizer.chat_template = HARMONY_TEMPLATE
    return tokenizer


def tiny_gpt_oss_config(
    vocab_size: int,
    pad_token_id: int,
    eos_token_id: int,
    max_length: int = 2048,
    hidden_size: int = 128,
    num_layers: int = 2,
) -> GptOssConfig:
    """GPT-OSS at toy size: GQA attention with sinks (head_dim 32), 4 experts with top-2 routing, tied embeddings.

    RoPE is plain (no YaRN) with ``max_position_embeddings = max_length``: YaRN only matters past the
    pre-training context, and leaving the 128k default on a short model makes transformers warn about a mismatch.
    The layers alternate sliding/full attention as in GPT-OSS, but the window spans ``max_length``: the toy's
    prompts (~400 tokens) are far longer than GPT-OSS's 128-token window would suit, and a window covering the whole
    sequence keeps a shared prompt prefix exact (see ``llm_local.prefix_sharing_exact``).
    """
    heads = max(2, hidden_size // 32)
    kwargs: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        head_dim=32,
        num_local_experts=4,
        num_experts_per_tok=2,
        sliding_window=max_length,
        max_position_embeddings=max_length,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=True,
        pad_token_id=pad_token_id,
        eos_token_id=eos_token_id,
        bos_token_id=None,
        router_aux_loss_coef=0.01,
    )
    return GptOssConfig(**kwargs)


def render_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The prompt text for ``messages``, ending where the model should write its final answer.

    The tiny tokenizer's template already ends in the final channel. GPT-OSS's own template ends its generation
    prompt with ``<|start|>assistant``, after which the model would reason in the analysis channel first: append
    ``<|channel|>final<|message|>`` so it answers directly. Templates that are not harmony are used as they are.
    """
    if getattr(tokenizer, "chat_template", None) is None:
        raise ModelError(
            f"tokenizer {type(tokenizer).__name__} ({getattr(tokenizer, 'name_or_path', '?')}) has no chat template; "
            "use a chat model (e.g. openai/gpt-oss-20b) or the tiny base, whose tokenizer carries one"
        )
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if not isinstance(prompt, str):
        raise ModelError(f"apply_chat_template returned {type(prompt).__name__}, expected str")
    if prompt.endswith(FINAL_CHANNEL):
        return prompt
    stripped = prompt.rstrip()
    if stripped.endswith(ASSISTANT_START):
        return stripped + FINAL_CHANNEL
    if START in prompt:
        raise ModelError(
            f"the harmony chat template ends its generation prompt with {prompt[-40:]!r}, expected "
            f"{ASSISTANT_START!r} or {FINAL_CHANNEL!r}; check the tokenizer's chat_template"
        )
    return prompt
