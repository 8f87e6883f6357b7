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
    """Labels over threshold, keeping only the most probable one per exclusive group and adding implied labels."""
    chosen = {i for i, (p, t) in enumerate(zip(probs, thresholds, strict=True)) if p >= t}
    for group in rules.exclusive:
        hits = [i for i in group if i in chosen]
        if len(hits) > 1:
            best = max(hits, key=lambda i: probs[i])
            chosen -= set(hits) - {best}
    for i in list(chosen):
        chosen.update(rules.implies.get(i, ()))
    return [rules.names[i] for i in sorted(chosen)]


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
