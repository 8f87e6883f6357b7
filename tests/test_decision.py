import pytest

from router.decision import LabelRules, confidence, decide, decide_labels, label_margins

NAMES = ["billing", "urgent", "low_priority", "frustrated", "aggressive"]
RULES = LabelRules.build(
    NAMES,
    groups={"topic": ["billing"], "urgency": ["urgent", "low_priority"], "emotion": ["frustrated", "aggressive"]},
    exclusive_groups=["urgency"],
    implies={"aggressive": ["frustrated"]},
)


def test_margins_are_normalised_distances_from_threshold() -> None:
    assert label_margins([0.75, 0.25, 0.5], [0.5, 0.5, 0.5]) == pytest.approx([0.5, 0.5, 0.0])
    assert label_margins([1.0, 0.0], [0.3, 0.3]) == pytest.approx([1.0, 1.0])


def test_confidence_is_the_least_certain_label() -> None:
    assert confidence([0.99, 0.01, 0.55], [0.5, 0.5, 0.5]) == pytest.approx(0.1)


def test_exclusive_group_keeps_the_most_probable() -> None:
    labels = decide_labels([0.1, 0.7, 0.9, 0.1, 0.1], [0.5] * 5, RULES)
    assert labels == ["low_priority"]


def test_implied_labels_are_added() -> None:
    assert decide_labels([0.9, 0.1, 0.1, 0.2, 0.8], [0.5] * 5, RULES) == ["billing", "frustrated", "aggressive"]


def test_decide_reports_scores_for_every_label() -> None:
    decision = decide([0.9, 0.1, 0.1, 0.2, 0.1], [0.5] * 5, RULES)
    assert set(decision.scores) == set(NAMES)
    assert decision.decided_by == "encoder" and decision.escalated is False
    assert decision.labels == ["billing"]
