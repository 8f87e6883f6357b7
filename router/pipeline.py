"""The hybrid decision pipeline: the one place that turns encoder probabilities and LLM answers into labels.

    calibrated probabilities -> decide (thresholds, then the taxonomy's rules) -> confidence -> escalate?
    -> LLM labels (rules) -> merge per label group -> the taxonomy's rules again

The server wraps it in batchers, an escalation budget and deadlines (``app.server.service``); ``triage
evaluate``, ``calibrate-router``, ``train-encoder``'s split metrics and ``bench`` call it directly, so a number
in a manifest, a report and a response comes from the same code. Pure policy: no torch, no HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar

from router.decision import Decision, LabelRules, decide
from router.escalation import EscalationMode, EscalationStatus, MergePolicy, needs_escalation

DEFAULT_ESCALATION_THRESHOLD = 0.25

T = TypeVar("T")

LLMAnswers = Callable[[Sequence[int]], Sequence[Sequence[str]]]
"""Offline LLM seam for ``HybridPipeline.run``: the labels for the given row indices, in that order."""


class TaxonomyLike(Protocol):
    """What the pipeline reads of a taxonomy (``models.taxonomy.Taxonomy`` has it)."""

    @property
    def names(self) -> list[str]: ...

    @property
    def groups(self) -> dict[str, list[str]]: ...

    @property
    def exclusive_groups(self) -> tuple[str, ...]: ...

    @property
    def implies(self) -> dict[str, tuple[str, ...]]: ...


def _resolve(
    configured: T | None, calibrated: tuple[T | None, str], setting: str, default: T, default_note: str
) -> tuple[T, str]:
    """A setting's value and where it came from: the setting, else the encoder manifest's, else the default."""
    if configured is not None:
        return configured, f"configured ({setting})"
    value, source = calibrated
    if value is not None:
        return value, f"encoder manifest ({source})"
    return default, f"default ({default_note})"


def resolve_threshold(configured: float | None, calibrated: tuple[float | None, str]) -> tuple[float, str]:
    """The escalation threshold and where it came from: the setting, else the manifest's, else the default."""
    return _resolve(
        configured,
        calibrated,
        "TRIAGE_ESCALATION_THRESHOLD or --threshold",
        DEFAULT_ESCALATION_THRESHOLD,
        "run `triage calibrate-router` to choose it from data",
    )


DEFAULT_MERGE_POLICY = "default=llm"


def resolve_merge_policy(configured: str | None, calibrated: tuple[str | None, str]) -> tuple[str, str]:
    """The merge policy and where it came from: the setting, else the manifest's arbitration, else the default."""
    return _resolve(
        configured,
        calibrated,
        "TRIAGE_MERGE_POLICY or --merge-policy",
        DEFAULT_MERGE_POLICY,
        "the LLM's labels replace the encoder's",
    )


@dataclass(frozen=True)
class HybridPipeline:
    """Thresholds, rules, escalation threshold and merge policy of one served encoder (and its adapter)."""

    rules: LabelRules
    thresholds: tuple[float, ...]
    groups: Mapping[str, Sequence[str]]
    escalation_threshold: float = DEFAULT_ESCALATION_THRESHOLD
    merge_policy: MergePolicy = field(default_factory=MergePolicy)

    @classmethod
    def build(
        cls,
        names: Sequence[str],
        groups: Mapping[str, Sequence[str]],
        exclusive_groups: Sequence[str],
        implies: Mapping[str, Sequence[str]],
        thresholds: Sequence[float],
        escalation_threshold: float = DEFAULT_ESCALATION_THRESHOLD,
        merge_policy: MergePolicy | str = "",
    ) -> HybridPipeline:
        """Raise ``ValueError`` when thresholds and labels disagree or the merge policy names unknown groups."""
        if len(thresholds) != len(names):
            raise ValueError(f"{len(names)} labels but {len(thresholds)} thresholds")
        policy = MergePolicy.parse(merge_policy) if isinstance(merge_policy, str) else merge_policy
        policy.check_groups(groups)
        return cls(
            rules=LabelRules.build(names, groups, exclusive_groups, implies),
            thresholds=tuple(float(t) for t in thresholds),
            groups={g: tuple(v) for g, v in groups.items()},
            escalation_threshold=escalation_threshold,
            merge_policy=policy,
        )

    @classmethod
    def for_taxonomy(
        cls,
        taxonomy: TaxonomyLike,
        thresholds: Sequence[float],
        escalation_threshold: float = DEFAULT_ESCALATION_THRESHOLD,
        merge_policy: MergePolicy | str = "",
    ) -> HybridPipeline:
        """The pipeline of a checkpoint: its taxonomy and tuned thresholds."""
        return cls.build(
            taxonomy.names,
            taxonomy.groups,
            taxonomy.exclusive_groups,
            taxonomy.implies,
            thresholds,
            escalation_threshold,
            merge_policy,
        )

    @property
    def names(self) -> tuple[str, ...]:
        return self.rules.names

    def with_threshold(self, escalation_threshold: float) -> HybridPipeline:
        return replace(self, escalation_threshold=escalation_threshold)

    def decide(self, probs: Sequence[float]) -> Decision:
        """The encoder tier's decision for one ticket's calibrated probabilities."""
        return decide(probs, self.thresholds, self.rules)

    def decide_batch(self, probs: Iterable[Iterable[float]]) -> list[Decision]:
        return [self.decide([float(p) for p in row]) for row in probs]

    def wants_llm(self, decision: Decision, mode: EscalationMode = EscalationMode.AUTO) -> bool:
        """Whether the ticket should get the LLM's second opinion (before any budget)."""
        return needs_escalation(decision.confidence, self.escalation_threshold, mode)

    def llm_labels(self, labels: Sequence[str]) -> list[str]:
        """The LLM tier's own answer, made valid: unknown labels dropped, the taxonomy's rules applied."""
        return self.rules.enforce(labels)

    def merge(self, decision: Decision, llm_labels: Sequence[str]) -> Decision:
        """The final decision for an escalated ticket the LLM answered.

        Labels are merged group by group by the policy, then the rules apply again (a ``union`` can hold both
        labels of an exclusive group: the encoder's more probable one stays). Scores and confidence stay the
        encoder's (the LLM gives none).
        """
        merged = self.merge_policy.merge(decision.labels, self.llm_labels(llm_labels), self.groups)
        priority = [decision.scores.get(name, 0.0) for name in self.names]
        return replace(
            decision,
            labels=self.rules.enforce(merged, priority),
            scores=dict(decision.scores),
            decided_by="llm",
            escalated=True,
            escalation=EscalationStatus.DONE.value,
        )

    @staticmethod
    def settle(decision: Decision, status: EscalationStatus, escalated: bool = False) -> Decision:
        """Keep the encoder's answer, recording why the LLM did not decide."""
        return replace(decision, escalation=status.value, escalated=escalated)

    def run(
        self,
        probs: Iterable[Iterable[float]],
        llm: LLMAnswers | None,
        mode: EscalationMode = EscalationMode.AUTO,
    ) -> list[Decision]:
        """The whole pipeline, offline: decide every row, ask ``llm`` once for the rows that want it, merge.

        Offline there is no traffic, so no budget applies; without an LLM, escalations are ``disabled``.
        """
        decisions = self.decide_batch(probs)
        wanted = [i for i, d in enumerate(decisions) if self.wants_llm(d, mode)]
        if not wanted:
            return decisions
        if llm is None:
            for i in wanted:
                decisions[i] = self.settle(decisions[i], EscalationStatus.DISABLED)
            return decisions
        answers = llm(wanted)
        if len(answers) != len(wanted):
            raise ValueError(f"the LLM answered {len(answers)} of {len(wanted)} escalated tickets")
        for i, labels in zip(wanted, answers, strict=True):
            decisions[i] = self.merge(decisions[i], labels)
        return decisions


def escalation_rate(decisions: Sequence[Decision]) -> float:
    """Share of decisions that went to the LLM tier."""
    return sum(d.escalated for d in decisions) / max(len(decisions), 1)
