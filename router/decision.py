"""Turning per-label probabilities into labels and a per-ticket confidence.

Confidence formula (per ticket): for each label i with probability p and threshold t, the normalised margin is
``(p - t) / (1 - t)`` when ``p >= t`` and ``(t - p) / t`` otherwise, i.e. how far p sits from the threshold
towards the certain end, in [0, 1]. The ticket's confidence is the smallest margin over all labels: one label the
model is unsure of makes the whole ticket unsure, which is what exact-match quality depends on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LabelRules:
    """Structure of the label set: names in output order, exclusive groups, implications."""

    names: tuple[str, ...]
    exclusive: tuple[tuple[int, ...], ...] = ()
    implies: Mapping[int, tuple[int, ...]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        names: Sequence[str],
        groups: Mapping[str, Sequence[str]] | None = None,
        exclusive_groups: Sequence[str] = (),
        implies: Mapping[str, Sequence[str]] | None = None,
    ) -> LabelRules:
        index = {name: i for i, name in enumerate(names)}
        groups = groups or {}
        exclusive = tuple(tuple(index[n] for n in groups[g]) for g in exclusive_groups if g in groups)
        implied = {index[k]: tuple(index[x] for x in v) for k, v in (implies or {}).items()}
        return cls(names=tuple(names), exclusive=exclusive, implies=implied)

    def enforce(self, labels: Sequence[str], priority: Sequence[float] | None = None) -> list[str]:
        """``labels`` made to satisfy the rules, in output order: whatever produced them, the answer is valid.

        Unknown names are dropped; in each exclusive group only the label with the highest ``priority`` stays
        (ties, or no priority: the first in output order); implied labels are added last. Implications never
        target an exclusive group (``models.taxonomy`` refuses such a taxonomy), so adding them cannot break
        exclusivity again.
        """
        index = {name: i for i, name in enumerate(self.names)}
        chosen = {index[name] for name in labels if name in index}
        for group in self.exclusive:
            hits = sorted(i for i in group if i in chosen)
            if len(hits) > 1:
                best = max(hits, key=lambda i: priority[i]) if priority is not None else hits[0]
                chosen -= set(hits) - {best}
        for i in list(chosen):
            chosen.update(self.implies.get(i, ()))
        return [self.names[i] for i in sorted(chosen)]

    def violations(self, labels: Sequence[str]) -> list[str]:
        """What in ``labels`` breaks the rules, as sentences (empty when valid)."""
        present = set(labels)
        out = [
            f"at most one of {', '.join(self.names[i] for i in group)}; found {', '.join(hits)}"
            for group in self.exclusive
            if len(hits := [self.names[i] for i in group if self.names[i] in present]) > 1
        ]
        out += [
            f"{self.names[k]} implies {self.names[v]}"
            for k, targets in self.implies.items()
            for v in targets
            if self.names[k] in present and self.names[v] not in present
        ]
        return out


def label_margins(probs: Sequence[float], thresholds: Sequence[float]) -> list[float]:
    """Normalised distance of each probability from its threshold, in [0, 1] (see module docstring)."""
    out = []
    for p, t in zip(probs, thresholds, strict=True):
        if p >= t:
            out.append((p - t) / (1.0 - t) if t < 1.0 else 1.0)
        else:
            out.append((t - p) / t if t > 0.0 else 1.0)
    return out


def confidence(probs: Sequence[float], thresholds: Sequence[float]) -> float:
    """The ticket's confidence: its least certain label's margin."""
    margins = label_margins(probs, thresholds)
    return min(margins) if margins else 1.0


def decide_labels(probs: Sequence[float], thresholds: Sequence[float], rules: LabelRules) -> list[str]:
    """Labels over threshold, then the taxonomy's rules (see ``LabelRules.enforce``), ties broken by probability."""
    chosen = [i for i, (p, t) in enumerate(zip(probs, thresholds, strict=True)) if p >= t]
    return rules.enforce([rules.names[i] for i in chosen], priority=probs)


@dataclass(frozen=True)
class Decision:
    """One ticket's answer: labels, per-label scores, confidence, and which tier decided."""

    labels: list[str]
    scores: dict[str, float]
    confidence: float
    decided_by: str = "encoder"
    escalated: bool = False
    escalation: str = "not_needed"
    """What happened to escalation: a ``router.escalation.EscalationStatus`` value."""


def decide(probs: Sequence[float], thresholds: Sequence[float], rules: LabelRules) -> Decision:
    """The encoder tier's decision for one ticket."""
    return Decision(
        labels=decide_labels(probs, thresholds, rules),
        scores={name: round(float(p), 6) for name, p in zip(rules.names, probs, strict=True)},
        confidence=round(confidence(probs, thresholds), 6),
    )
