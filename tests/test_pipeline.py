"""The one hybrid pipeline: every answer obeys the taxonomy, whatever the tiers said and however they merge."""

import random
from collections.abc import Sequence

import numpy as np
import pytest

from app.jobs.evaluate import fixed_answers
from models.taxonomy import load_taxonomy
from router.decision import LabelRules
from router.escalation import EscalationMode, EscalationStatus, MergePolicy
from router.pipeline import HybridPipeline, escalation_rate

TAXONOMY = load_taxonomy()
POLICIES = [
    "default=llm",
    "default=encoder",
    "default=union",
    "default=llm,emotion=encoder",
    "default=union,urgency=llm",
    "default=encoder,user_type=union,emotion=llm",
    "default=agree,urgent=llm,topic=union",
]


def pipeline(policy: str = "default=llm", threshold: float = 0.25) -> HybridPipeline:
    return HybridPipeline.for_taxonomy(TAXONOMY, [0.5] * len(TAXONOMY.names), threshold, policy)


@pytest.mark.parametrize("policy", POLICIES)
def test_every_answer_satisfies_the_taxonomy_rules(policy: str) -> None:
    """Random probabilities, random (often invalid) LLM answers, every merge policy: the rules always hold."""
    rng = random.Random(policy)
    hybrid = pipeline(policy, threshold=1.01)  # every ticket escalates
    names = TAXONOMY.names
    for _ in range(300):
        probs = [[rng.random() ** rng.choice([0.3, 1, 3]) for _ in names] for _ in range(8)]
        answers = [rng.sample([*names, "not_a_label"], rng.randint(0, 8)) for _ in probs]
        for decision in hybrid.run(probs, fixed_answers(answers)):
            assert decision.escalation == "done"
            assert hybrid.rules.violations(decision.labels) == [], (policy, decision.labels)
            assert set(decision.labels) <= set(names)


def test_the_rules_catch_what_the_old_merge_let_through() -> None:
    """union of urgent (encoder) and low_priority (LLM) kept both; the LLM's aggressive came without frustrated."""
    names = TAXONOMY.names
    probs = [0.05] * len(names)
    for label, p in {"billing": 0.9, "urgent": 0.7, "premium_user": 0.8}.items():
        probs[names.index(label)] = p
    decision = pipeline("default=union").decide(probs)
    merged = pipeline("default=union").merge(decision, ["billing", "low_priority", "free_user"])
    assert merged.labels == ["billing", "urgent", "premium_user"]  # the encoder's more probable label stays
    llm_only = pipeline("default=llm").merge(decision, ["billing", "aggressive"])
    assert llm_only.labels == ["billing", "frustrated", "aggressive"]
    assert merged.scores == decision.scores and merged.decided_by == "llm" and merged.escalated


def test_violations_name_what_is_wrong() -> None:
    rules = LabelRules.build(TAXONOMY.names, TAXONOMY.groups, TAXONOMY.exclusive_groups, TAXONOMY.implies)
    assert rules.violations(["urgent", "low_priority", "aggressive"]) == [
        "at most one of urgent, low_priority; found urgent, low_priority",
        "aggressive implies frustrated",
    ]


def test_run_escalates_below_the_threshold_only() -> None:
    names = TAXONOMY.names
    sure = [0.99 if n == "billing" else 0.01 for n in names]
    unsure = [0.55 if n == "billing" else 0.01 for n in names]
    asked: list[list[int]] = []

    def llm(rows: Sequence[int]) -> list[list[str]]:
        asked.append(list(rows))
        return [["technical_issue"]] * len(rows)

    decisions = pipeline(threshold=0.5).run(np.asarray([sure, unsure]), llm)
    assert asked == [[1]]
    assert [d.labels for d in decisions] == [["billing"], ["technical_issue"]]
    assert escalation_rate(decisions) == 0.5
    disabled = pipeline(threshold=0.5).run([unsure], None)
    assert disabled[0].escalation == EscalationStatus.DISABLED and disabled[0].labels == ["billing"]
    never = pipeline(threshold=0.5).run([unsure], llm, EscalationMode.NEVER)
    assert never[0].escalation == "not_needed" and asked == [[1]]


def test_build_refuses_a_policy_with_unknown_groups() -> None:
    with pytest.raises(ValueError, match="unknown group"):
        pipeline("emotoin=encoder")
    with pytest.raises(ValueError, match="15 labels but 2 thresholds"):
        HybridPipeline.for_taxonomy(TAXONOMY, [0.5, 0.5], 0.2, MergePolicy())
