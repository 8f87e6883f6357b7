"""The answer grammar: targets, allowed tokens, decoding. No model needed."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from models.constrained import AnswerGrammar, AnswerState
from models.errors import ModelError
from models.prompt import NONE_ANSWER, SEPARATOR, format_answer, parse_answer
from models.taxonomy import load_taxonomy
from models.tiny_llm import train_llm_tokenizer

EOS = 99
NAMES = ["alpha", "alphabet", "beta", "gamma"]
# "alpha" is a prefix of "alphabet"; "beta" and "gamma" share their first token; "none" shares one with "beta".
LABEL_IDS = [[1, 2], [1, 2, 3], [4, 5], [4, 6]]
SEP = [7, 8]
NONE = [4, 9]


def grammar() -> AnswerGrammar:
    return AnswerGrammar(LABEL_IDS, NAMES, SEP, NONE, EOS)


def walk(g: AnswerGrammar, tokens: list[int]) -> AnswerState:
    state: AnswerState | None = g.start()
    for token in tokens:
        assert state is not None
        state, _ = g.step(state, token)
    assert state is not None, f"{tokens} left the grammar"
    return state


def all_paths(g: AnswerGrammar, limit: int = 40) -> list[list[int]]:
    """Every token sequence the constraint lets through, up to EOS."""
    out: list[list[int]] = []
    stack: list[tuple[list[int], AnswerState]] = [([], g.start())]
    while stack:
        path, state = stack.pop()
        for token in g.allowed(state):
            nxt, _ = g.step(state, token)
            assert nxt is not None, f"allowed token {token} after {path} is rejected by step"
            if token == g.eos_id:
                out.append([*path, token])
            elif len(path) < limit:
                stack.append(([*path, token], nxt))
    return out


def test_answer_token_ids_layout() -> None:
    g = grammar()
    assert g.answer_token_ids(["gamma", "alpha"]) == [1, 2, *SEP, 4, 6, EOS]  # taxonomy order, separator, EOS
    assert g.answer_token_ids(["beta", "beta"]) == [4, 5, EOS]  # duplicates collapse
    assert g.answer_token_ids([]) == [*NONE, EOS]
    with pytest.raises(ModelError, match=r"unknown label.*delta.*the taxonomy has alpha"):
        g.answer_token_ids(["delta"])


def test_every_path_is_a_valid_answer_and_every_answer_a_path() -> None:
    g = grammar()
    paths = all_paths(g)
    decoded = [tuple(g.decode_answer(p)) for p in paths]
    subsets = {tuple(c) for r in range(len(NAMES) + 1) for c in itertools.combinations(NAMES, r)}
    assert set(decoded) == subsets  # all 16 subsets reachable (the empty one as "none") ...
    assert len(paths) == len(subsets)  # ... each by exactly one path
    for path, labels in zip(paths, decoded, strict=True):
        assert list(labels) == sorted(set(labels), key=NAMES.index)  # distinct, taxonomy order
        assert path == g.answer_token_ids(labels)  # the training target is that same path


def test_no_duplicates_or_backtracking() -> None:
    g = grammar()
    state = walk(g, [4, 5, *SEP])  # "beta, "
    # only gamma (4, 6) can follow: alpha/alphabet come before beta, beta is taken, none is not a label
    assert g.allowed(state) == [4]
    state = walk(g, [4, 5, *SEP, 4])
    assert g.allowed(state) == [6]
    assert g.step(state, 5)[0] is None
    assert g.step(state, 9)[0] is None  # "none" cannot follow a label


def test_last_label_cannot_take_a_separator_and_none_only_ends() -> None:
    g = grammar()
    assert g.allowed(walk(g, [4, 6])) == [EOS]
    assert g.allowed(walk(g, NONE)) == [EOS]


def test_decode_answer_edges() -> None:
    g = grammar()
    assert g.decode_answer([1, 2, 3, *SEP, 4, 5, EOS, 0, 0]) == ["alphabet", "beta"]  # padding after EOS ignored
    assert g.decode_answer([1, 2, *SEP, 4]) == ["alpha"]  # cut by max_new_tokens mid-label
    assert g.decode_answer([1, 2]) == ["alpha"]  # complete label, no EOS yet
    assert g.decode_answer([4, 6, 42, 1, 2]) == []  # leaves the grammar: stop, the unfinished label is dropped
    assert g.decode_answer([*NONE, EOS]) == []
    assert g.decode_answer([]) == []


def test_constraint_is_a_prefix_allowed_tokens_fn() -> None:
    """transformers calls fn(batch_id, input_ids) with one row's whole sequence: prompt then generated tokens."""
    g = grammar()
    fn = g.constraint(prompt_length=3)
    prompt = [50, 51, 52]
    assert sorted(fn(0, torch.tensor(prompt))) == [1, 4]  # alpha/alphabet, beta/gamma/none
    assert sorted(fn(1, torch.tensor([*prompt, 1, 2]))) == sorted([3, EOS, SEP[0]])
    assert fn(0, torch.tensor([*prompt, 1, 2, EOS, 0, 0])) == [EOS]  # finished rows
    assert fn(0, torch.tensor([*prompt, 42])) == [EOS]  # off the grammar: end rather than fail


def test_rejects_ambiguous_layouts() -> None:
    with pytest.raises(ModelError, match="'alpha' and 'beta' encode to the same tokens"):
        AnswerGrammar([[1], [1]], ["alpha", "beta"], SEP, NONE, EOS)
    with pytest.raises(ModelError, match="continues a label and starts the separator"):
        AnswerGrammar([[1], [1, 7]], ["alpha", "beta"], SEP, NONE, EOS)
    with pytest.raises(ModelError, match="contains EOS"):
        AnswerGrammar([[1, EOS]], ["alpha"], SEP, NONE, EOS)
    with pytest.raises(ModelError, match="to no tokens"):
        AnswerGrammar([[]], ["alpha"], SEP, NONE, EOS)


def test_real_tokenizer_random_walks_parse_to_taxonomy_labels() -> None:
    taxonomy = load_taxonomy()
    texts = ["The app crashes on my TV.", "Je veux annuler mon abonnement.", "Ich wurde doppelt belastet!"] * 20
    tokenizer = train_llm_tokenizer(texts, [*taxonomy.names, SEPARATOR, NONE_ANSWER], vocab_size=400)
    g = AnswerGrammar.from_tokenizer(tokenizer, taxonomy)
    assert g.eos_id == tokenizer.eos_token_id
    rng = random.Random(0)
    for _ in range(300):
        path: list[int] = []
        while not path or path[-1] != g.eos_id:
            path.append(rng.choice(g.allowed(walk(g, path))))
        labels = g.decode_answer(path)
        assert set(labels) <= set(taxonomy.names)
        assert labels == sorted(set(labels), key=taxonomy.names.index)
        # the tokens spell the prompt's answer format, which prompt.parse_answer reads back the same way
        text = tokenizer.decode(path[:-1])
        assert text == format_answer(labels, taxonomy)
        assert parse_answer(text, taxonomy) == labels
        assert len(path) <= g.max_answer_tokens


def test_grammar_allows_at_most_one_label_per_exclusive_group() -> None:
    """alpha/alphabet form one exclusive group: no path may hold both, every other combination stays reachable."""
    g = AnswerGrammar(LABEL_IDS, NAMES, SEP, NONE, EOS, exclusive=[[0, 1]])
    answers = {tuple(g.decode_answer(path)) for path in all_paths(g)}
    assert ("alpha", "alphabet") not in {a[:2] for a in answers}
    assert not any({"alpha", "alphabet"} <= set(a) for a in answers)
    assert ("alpha", "beta", "gamma") in answers and ("alphabet", "beta", "gamma") in answers
    assert len(answers) == 1 + 3 * 4 - 1  # none, plus (no/alpha/alphabet) x subsets of {beta, gamma}, minus empty
    with pytest.raises(ModelError, match="alpha \\+ alphabet belong to one exclusive group"):
        g.answer_token_ids(["alpha", "alphabet"])


def test_real_taxonomy_grammar_cannot_write_two_urgencies() -> None:
    taxonomy = load_taxonomy()
    tokenizer = train_llm_tokenizer(["a ticket"], [*taxonomy.names, SEPARATOR, NONE_ANSWER], vocab_size=300)
    g = AnswerGrammar.from_tokenizer(tokenizer, taxonomy)
    urgent = g.answer_token_ids(["urgent"])[:-1]  # without EOS
    low = g.label_ids[taxonomy.names.index("low_priority")]
    assert g.decode_answer([*urgent, *g.separator_ids, *low, g.eos_id]) == ["urgent"]
    billing_urgent = g.answer_token_ids(["billing", "urgent", "free_user"])
    assert g.decode_answer(billing_urgent) == ["billing", "urgent", "free_user"]
    with pytest.raises(ModelError, match="exclusive group"):
        g.answer_token_ids(["urgent", "low_priority"])
