"""Constrained decoding: generation can only write a valid answer, and training targets use the same tokens.

An answer is zero or more distinct labels in taxonomy order (at most one per exclusive group), each as the
tokenizer encodes the label alone, separated by the separator's tokens (``", "`` encoded alone) and closed by
EOS; or ``none`` then EOS.
:class:`AnswerGrammar` holds that token layout as a trie plus a small state machine; it builds training
targets (:meth:`AnswerGrammar.answer_token_ids`), restricts generation (:meth:`AnswerGrammar.constraint`, a
``prefix_allowed_tokens_fn`` for ``model.generate``) and reads answers back (:meth:`AnswerGrammar.decode_answer`).
Because the layout is the concatenation of separately encoded pieces, the tokenizer's merges across piece
boundaries never matter: training and decoding agree by construction.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from models.errors import ModelError
from models.prompt import NONE_ANSWER, SEPARATOR
from models.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

NONE_INDEX = -1
"""Trie terminal that stands for the ``none`` answer."""


@dataclass
class _Node:
    children: dict[int, _Node] = field(default_factory=dict)
    terminal: int | None = None
    """Label index whose tokens end here, or NONE_INDEX."""
    max_label: int = -1
    """Highest label index ending in this subtree (-1 if none)."""
    has_none: bool = False
    """Whether the ``none`` answer ends in this subtree."""


@dataclass(frozen=True)
class AnswerState:
    """Where a partial answer stands: inside the label trie, inside a separator, or finished."""

    node: _Node | None
    """Current trie node, or None while inside a separator / after the end."""
    min_label: int
    """Lowest label index still allowed (labels come in taxonomy order, each at most once)."""
    at_start: bool
    """No label written yet, so ``none`` is still possible."""
    sep_pos: int = -1
    """Tokens of the separator written so far (-1 when not inside one)."""
    done: bool = False


class AnswerGrammar:
    """The answer token layout for one tokenizer and taxonomy. Pure Python over token ids: testable without a model."""

    def __init__(
        self,
        label_ids: Sequence[Sequence[int]],
        names: Sequence[str],
        separator_ids: Sequence[int],
        none_ids: Sequence[int],
        eos_id: int,
        exclusive: Sequence[Sequence[int]] = (),
    ) -> None:
        if len(label_ids) != len(names):
            raise ModelError(f"{len(names)} label names but {len(label_ids)} token sequences")
        self.names = list(names)
        self.next_label = self._next_labels(len(names), exclusive)
        """Lowest label index allowed after each label: past the end of its exclusive group, if it has one."""
        self.label_ids = [list(ids) for ids in label_ids]
        self.separator_ids = list(separator_ids)
        self.none_ids = list(none_ids)
        self.eos_id = int(eos_id)
        self._check()
        self.root = _Node()
        for index, ids in enumerate(self.label_ids):
            self._insert(ids, index)
        self._insert(self.none_ids, NONE_INDEX)
        self._check_ambiguity(self.root)
        self._allowed_cache: dict[tuple[int, int, bool, int, bool], list[int]] = {}

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, taxonomy: Taxonomy) -> AnswerGrammar:
        """Encode each label, the separator and ``none`` alone (no special tokens); EOS is the tokenizer's."""
        if tokenizer.eos_token_id is None:
            raise ModelError(f"tokenizer {getattr(tokenizer, 'name_or_path', '?')} has no EOS token; set eos_token")

        def encode(text: str) -> list[int]:
            return list(tokenizer.encode(text, add_special_tokens=False))

        index = {name: i for i, name in enumerate(taxonomy.names)}
        groups = taxonomy.groups
        return cls(
            label_ids=[encode(name) for name in taxonomy.names],
            names=taxonomy.names,
            separator_ids=encode(SEPARATOR),
            none_ids=encode(NONE_ANSWER),
            eos_id=int(tokenizer.eos_token_id),
            exclusive=[[index[n] for n in groups[g]] for g in taxonomy.exclusive_groups],
        )

    @staticmethod
    def _next_labels(n: int, exclusive: Sequence[Sequence[int]]) -> list[int]:
        """Labels come in taxonomy order, so an exclusive group is closed by skipping past its last member.

        That needs each exclusive group to be a contiguous run of indices, as ``Taxonomy`` orders labels group by
        group; anything else is refused rather than silently allowing two labels of a group.
        """
        out = [i + 1 for i in range(n)]
        for group in exclusive:
            members = sorted(group)
            if members and members != list(range(members[0], members[-1] + 1)):
                raise ModelError(f"exclusive group {members} is not a contiguous run of label indices")
            for i in members:
                out[i] = members[-1] + 1
        return out

    # -- construction -------------------------------------------------------------------------------------------

    def _check(self) -> None:
        pieces = {"separator": self.separator_ids, NONE_ANSWER: self.none_ids}
        pieces.update(zip(self.names, self.label_ids, strict=True))
        empty = [name for name, ids in pieces.items() if not ids]
        if empty:
            raise ModelError(f"the tokenizer encodes {', '.join(map(repr, empty))} to no tokens")
        with_eos = [name for name, ids in pieces.items() if self.eos_id in ids]
        if with_eos:
            raise ModelError(f"the encoding of {', '.join(map(repr, with_eos))} contains EOS id {self.eos_id}")
        seen: dict[tuple[int, ...], str] = {}
        for name, ids in pieces.items():
            key = tuple(ids)
            if key in seen:
                raise ModelError(
                    f"labels {seen[key]!r} and {name!r} encode to the same tokens {list(key)}; "
                    "the tokenizer cannot tell them apart (unknown characters?)"
                )
            seen[key] = name

    def _insert(self, ids: list[int], index: int) -> None:
        node = self.root
        path = [node]
        for token in ids:
            node = node.children.setdefault(token, _Node())
            path.append(node)
        node.terminal = index
        for visited in path:
            if index == NONE_INDEX:
                visited.has_none = True
            else:
                visited.max_label = max(visited.max_label, index)

    def _check_ambiguity(self, node: _Node) -> None:
        """A finished label followed by the separator or EOS must not look like a longer label."""
        if node.terminal is not None:
            clash = {self.separator_ids[0], self.eos_id} & set(node.children)
            if clash:
                raise ModelError(
                    f"token {sorted(clash)} both continues a label and starts the separator/EOS after "
                    f"{self._name(node.terminal)!r}; the answer would be ambiguous"
                )
        for child in node.children.values():
            self._check_ambiguity(child)

    def _name(self, index: int) -> str:
        return NONE_ANSWER if index == NONE_INDEX else self.names[index]

    # -- the layout ---------------------------------------------------------------------------------------------

    @property
    def max_answer_tokens(self) -> int:
        """Length of the longest valid answer (every label), EOS included."""
        labels = sum(len(ids) for ids in self.label_ids) + len(self.separator_ids) * (len(self.names) - 1)
        return max(labels, len(self.none_ids)) + 1

    def answer_token_ids(self, labels: Sequence[str]) -> list[int]:
        """The complete training target for ``labels``, EOS included: the only path decoding can produce for them."""
        index = {name: i for i, name in enumerate(self.names)}
        unknown = [label for label in labels if label not in index]
        if unknown:
            raise ModelError(f"unknown label(s) {', '.join(unknown)}; the taxonomy has {', '.join(self.names)}")
        ordered = sorted({index[label] for label in labels})
        clash = [(a, b) for a, b in itertools.pairwise(ordered) if b < self.next_label[a]]
        if clash:
            pairs = ", ".join(f"{self.names[a]} + {self.names[b]}" for a, b in clash)
            raise ModelError(f"labels {pairs} belong to one exclusive group; the answer grammar allows one of them")
        if not ordered:
            return [*self.none_ids, self.eos_id]
        out: list[int] = []
        for position, i in enumerate(ordered):
            if position:
                out.extend(self.separator_ids)
            out.extend(self.label_ids[i])
        out.append(self.eos_id)
        return out

    # -- the state machine --------------------------------------------------------------------------------------

    def start(self) -> AnswerState:
        return AnswerState(node=self.root, min_label=0, at_start=True)

    def allowed(self, state: AnswerState) -> list[int]:
        """Token ids allowed next; after the end only EOS (generate pads finished rows itself)."""
        if state.done:
            return [self.eos_id]
        if state.node is None:
            return [self.separator_ids[state.sep_pos]]
        key = (id(state.node), state.min_label, state.at_start, state.sep_pos, state.done)
        cached = self._allowed_cache.get(key)
        if cached is not None:
            return cached
        node = state.node
        out = [
            token
            for token, child in node.children.items()
            if child.max_label >= state.min_label or (state.at_start and child.has_none)
        ]
        if node.terminal == NONE_INDEX and state.at_start:
            out.append(self.eos_id)
        elif node.terminal is not None and node.terminal >= state.min_label:
            out.append(self.eos_id)
            if self.next_label[node.terminal] < len(self.names):
                out.append(self.separator_ids[0])
        self._allowed_cache[key] = out
        return out

    def step(self, state: AnswerState, token: int) -> tuple[AnswerState | None, str | None]:
        """The state after ``token`` (None if it is not allowed) and the label it completes, if any."""
        if state.done:
            return (state, None) if token == self.eos_id else (None, None)
        if state.node is None:  # inside the separator
            if token != self.separator_ids[state.sep_pos]:
                return None, None
            if state.sep_pos + 1 < len(self.separator_ids):
                return AnswerState(None, state.min_label, False, state.sep_pos + 1), None
            return AnswerState(self.root, state.min_label, False), None
        node = state.node
        terminal = node.terminal
        finished = terminal is not None and (
            (terminal == NONE_INDEX and state.at_start) or (terminal != NONE_INDEX and terminal >= state.min_label)
        )
        if finished and terminal is not None and token == self.eos_id:
            label = None if terminal == NONE_INDEX else self.names[terminal]
            return AnswerState(None, state.min_label, False, done=True), label
        if finished and terminal is not None and terminal != NONE_INDEX and token == self.separator_ids[0]:
            nxt = self.next_label[terminal]
            if nxt >= len(self.names):
                return None, None
            label = self.names[terminal]
            if len(self.separator_ids) == 1:
                return AnswerState(self.root, nxt, False), label
            return AnswerState(None, nxt, False, sep_pos=1), label
        child = node.children.get(token)
        if child is None or not (child.max_label >= state.min_label or (state.at_start and child.has_none)):
            return None, None
        return AnswerState(child, state.min_label, state.at_start), None

    def decode_answer(self, token_ids: Sequence[int]) -> list[str]:
        """Labels in generated ``token_ids`` (prompt excluded), in taxonomy order.

        Reading stops at EOS, at the first token the grammar does not allow, or at the end; a label cut off by
        ``max_new_tokens`` counts only if its tokens are complete.
        """
        state: AnswerState | None = self.start()
        labels: list[str] = []
        for token in token_ids:
            if state is None or state.done:
                break
            state, label = self.step(state, int(token))
            if label is not None:
                labels.append(label)
        if state is not None and not state.done and state.node is not None:
            terminal = state.node.terminal
            if terminal is not None and terminal != NONE_INDEX and terminal >= state.min_label:
                labels.append(self.names[terminal])
        if state is None:
            logger.debug("answer left the grammar after %d labels", len(labels))
        return labels

    def constraint(self, prompt_length: int) -> AnswerConstraint:
        """A ``prefix_allowed_tokens_fn`` for prompts of ``prompt_length`` tokens (left-padded to one width)."""
        return AnswerConstraint(self, prompt_length)


class AnswerConstraint:
    """``prefix_allowed_tokens_fn`` for ``model.generate``: transformers calls it as ``fn(batch_id, input_ids)``.

    ``input_ids`` is one row's whole sequence (prompt plus what was generated, a 1-D tensor); the answer so far is
    everything after ``prompt_length``. The state of each row is cached by its answer so far, so each step costs
    one trie move per row.
    """

    def __init__(self, grammar: AnswerGrammar, prompt_length: int) -> None:
        self.grammar = grammar
        self.prompt_length = prompt_length
        self._states: dict[tuple[int, ...], AnswerState | None] = {(): grammar.start()}

    def _state(self, answer: tuple[int, ...]) -> AnswerState | None:
        if answer in self._states:
            return self._states[answer]
        previous = self._state(answer[:-1])
        state = None if previous is None else self.grammar.step(previous, answer[-1])[0]
        self._states[answer] = state
        return state

    def __call__(self, batch_id: int, input_ids: torch.Tensor) -> list[int]:
        answer = tuple(int(t) for t in input_ids[self.prompt_length :].tolist())
        state = self._state(answer)
        if state is None:  # cannot happen under the constraint; end the answer rather than fail the batch
            return [self.grammar.eos_id]
        return self.grammar.allowed(state)
