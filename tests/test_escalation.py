"""Escalation policy: thresholds per mode, the traffic budget, and merging the two tiers' answers."""

from __future__ import annotations

import math
import random
import threading

import pytest

from router.escalation import (
    BudgetStats,
    EscalationBudget,
    EscalationMode,
    EscalationStatus,
    MergePolicy,
    needs_escalation,
)

GROUPS = {
    "topic": ["billing", "delivery", "account"],
    "urgency": ["urgent", "low_priority"],
    "emotion": ["frustrated", "aggressive"],
}


class FakeClock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# --- needs_escalation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("confidence", "mode", "expected"),
    [
        (0.10, EscalationMode.AUTO, True),
        (0.49, EscalationMode.AUTO, True),
        (0.50, EscalationMode.AUTO, False),  # exactly at the threshold stays with the encoder
        (0.90, EscalationMode.AUTO, False),
        (0.90, EscalationMode.FORCE, True),
        (1.00, EscalationMode.FORCE, True),
        (0.00, EscalationMode.NEVER, False),
        (0.49, EscalationMode.NEVER, False),
    ],
)
def test_needs_escalation_per_mode(confidence: float, mode: EscalationMode, expected: bool) -> None:
    assert needs_escalation(confidence, 0.5, mode) is expected


def test_modes_and_statuses_are_strings_from_the_wire() -> None:
    assert needs_escalation(0.1, 0.5, EscalationMode("never")) is False
    assert EscalationMode("force") is EscalationMode.FORCE
    assert EscalationStatus.SKIPPED_BUDGET == "skipped_budget"
    assert {s.value for s in EscalationStatus} >= {
        "not_needed",
        "done",
        "skipped_budget",
        "unavailable",
        "timeout",
        "disabled",
    }
    with pytest.raises(ValueError):
        EscalationMode("sometimes")


# --- EscalationBudget: the fraction rule ------------------------------------------------------------------------


def test_first_ticket_of_a_quiet_window_escalates_then_rule_is_exact() -> None:
    budget = EscalationBudget(max_fraction=0.10, max_in_flight=100, window_s=60.0)
    budget.record(1, now=0.0)
    assert budget.try_acquire(now=0.0)  # E=0 <= 0.1 * 1
    budget.record(1, now=1.0)
    assert not budget.try_acquire(now=1.0)  # E=1 > 0.1 * 2
    budget.record(8, now=2.0)
    assert budget.try_acquire(now=2.0)  # E=1 <= 0.1 * 10
    assert not budget.try_acquire(now=2.0)  # E=2 > 0.1 * 10
    budget.record(10, now=3.0)
    assert budget.try_acquire(now=3.0)  # E=2 <= 0.1 * 20
    assert budget.stats(now=3.0) == BudgetStats(tickets_in_window=20, escalated_in_window=3, in_flight=3)


def test_no_tickets_recorded_means_no_escalation() -> None:
    budget = EscalationBudget(max_fraction=1.0, max_in_flight=10)
    assert not budget.try_acquire(now=0.0)
    budget.record(2, now=0.0)
    assert budget.try_acquire(now=0.0)
    assert budget.try_acquire(now=0.0)
    assert not budget.try_acquire(now=0.0)  # never more escalations than tickets in the window


def test_fraction_is_compared_on_its_decimal_value() -> None:
    # In floats 0.29 * 100 == 28.999999999999996, which would refuse the 30th grant (E=29 <= 29).
    budget = EscalationBudget(max_fraction=0.29, max_in_flight=1000)
    budget.record(100, now=0.0)
    grants = sum(budget.try_acquire(now=0.0) for _ in range(200))
    assert grants == 30


def test_zero_fraction_refuses_all_but_forced() -> None:
    budget = EscalationBudget(max_fraction=0.0, max_in_flight=2)
    budget.record(1000, now=0.0)
    assert not budget.try_acquire(now=0.0)
    assert budget.try_acquire(now=0.0, respect_fraction=False)


def run_all_low_confidence(arrivals: list[tuple[float, int]], budget: EscalationBudget) -> tuple[int, list[float]]:
    """Every ticket wants escalation; each granted job ends at once. Checks the in-window bound at every grant."""
    grant_times: list[float] = []
    for t, n in arrivals:
        budget.record(n, now=t)
        for _ in range(n):
            if budget.try_acquire(now=t):
                grant_times.append(t)
                s = budget.stats(now=t)
                assert s.escalated_in_window <= budget.max_fraction * s.tickets_in_window + 1
                budget.release()
    return len(grant_times), grant_times


def run_bound(budget: EscalationBudget, tickets: int, grant_times: list[float]) -> float:
    span = grant_times[-1] - grant_times[0] if grant_times else 0.0
    return budget.max_fraction * tickets + 1 + math.floor(span / budget.window_s)


def test_ten_percent_of_a_thousand_low_confidence_tickets_over_five_windows() -> None:
    budget = EscalationBudget(max_fraction=0.10, max_in_flight=4, window_s=60.0)
    arrivals = [(i * 0.3, 1) for i in range(1000)]  # 300 s: five windows
    escalated, grant_times = run_all_low_confidence(arrivals, budget)
    # At most 10 % plus one per window of run time ...
    assert escalated <= 100 + 5
    assert escalated <= run_bound(budget, 1000, grant_times)
    # ... and the budget is actually used, not refused wholesale.
    assert escalated >= 100
    assert budget.stats(now=300.0).in_flight == 0


def test_bursts_at_window_starts_get_one_ticket_of_rounding_each() -> None:
    budget = EscalationBudget(max_fraction=0.10, max_in_flight=100, window_s=60.0)
    arrivals = [(k * 60.0, 100) for k in range(10)]  # 1,000 tickets, one burst per window
    escalated, grant_times = run_all_low_confidence(arrivals, budget)
    assert escalated == 10 * 11  # per burst: E = 0..10 all satisfy E <= 0.1 * 100
    assert escalated <= run_bound(budget, 1000, grant_times)


@pytest.mark.parametrize("seed", range(20))
def test_bound_holds_for_random_traffic(seed: int) -> None:
    rng = random.Random(seed)
    fraction = rng.choice([0.05, 0.1, 0.25, 0.5])
    budget = EscalationBudget(max_fraction=fraction, max_in_flight=1000, window_s=10.0)
    t, arrivals = 0.0, []
    for _ in range(300):
        t += rng.choice([0.0, 0.01, 0.5, 3.0, 9.99, 10.0, 25.0])
        arrivals.append((t, rng.randint(1, 20)))
    tickets = sum(n for _, n in arrivals)
    escalated, grant_times = run_all_low_confidence(arrivals, budget)
    assert 0 < escalated <= run_bound(budget, tickets, grant_times)


# --- EscalationBudget: in-flight cap, release, sliding window ---------------------------------------------------


def test_in_flight_cap_and_release() -> None:
    budget = EscalationBudget(max_fraction=1.0, max_in_flight=2)
    budget.record(10, now=0.0)
    assert budget.try_acquire(now=0.0)
    assert budget.try_acquire(now=0.0)
    assert not budget.try_acquire(now=0.0)
    assert not budget.try_acquire(now=0.0, respect_fraction=False)  # force still obeys the in-flight cap
    assert budget.stats(now=0.0).in_flight == 2
    budget.release()
    assert budget.stats(now=0.0) == BudgetStats(tickets_in_window=10, escalated_in_window=2, in_flight=1)
    assert budget.try_acquire(now=0.0)
    # Releasing frees a concurrent slot but not window budget: escalations stay counted until they expire.
    assert budget.stats(now=0.0).escalated_in_window == 3


def test_release_without_acquire_is_an_error() -> None:
    budget = EscalationBudget(max_fraction=0.5, max_in_flight=1)
    with pytest.raises(RuntimeError, match="no escalation in flight"):
        budget.release()


def test_old_escalations_and_tickets_expire_after_the_window() -> None:
    clock = FakeClock()
    budget = EscalationBudget(max_fraction=0.10, max_in_flight=100, window_s=60.0, clock=clock)
    budget.record(10)
    assert budget.try_acquire()
    assert budget.try_acquire()
    assert not budget.try_acquire()
    clock.t = 30.0
    budget.record(1)
    assert not budget.try_acquire()  # E=2 > 0.1 * 11
    clock.t = 59.999
    assert budget.stats() == BudgetStats(tickets_in_window=11, escalated_in_window=2, in_flight=2)
    clock.t = 60.0  # the window is (0, 60]: everything stamped at 0 has left
    assert budget.stats() == BudgetStats(tickets_in_window=1, escalated_in_window=0, in_flight=2)
    assert budget.try_acquire()  # E=0 <= 0.1 * 1
    clock.t = 90.0
    assert budget.stats() == BudgetStats(tickets_in_window=0, escalated_in_window=1, in_flight=3)
    assert not budget.try_acquire()  # no tickets left in the window


def test_forced_escalations_bypass_the_fraction_but_use_up_budget() -> None:
    budget = EscalationBudget(max_fraction=0.10, max_in_flight=100, window_s=60.0)
    budget.record(20, now=0.0)
    for _ in range(5):
        assert budget.try_acquire(now=0.0, respect_fraction=False)
    assert budget.stats(now=0.0).escalated_in_window == 5
    assert not budget.try_acquire(now=0.0)  # E=5 > 0.1 * 20: auto tickets wait for the forced ones to expire
    assert budget.try_acquire(now=60.0, respect_fraction=False)  # force works even with no tickets in window


def test_budget_is_thread_safe_under_the_in_flight_cap() -> None:
    budget = EscalationBudget(max_fraction=1.0, max_in_flight=3, window_s=1e9)
    budget.record(1_000_000, now=0.0)
    lock, active, peak, grants = threading.Lock(), [0], [0], [0]

    def worker() -> None:
        for _ in range(2000):
            if budget.try_acquire(now=0.0):
                with lock:
                    active[0] += 1
                    peak[0] = max(peak[0], active[0])
                    grants[0] += 1
                with lock:
                    active[0] -= 1
                budget.release()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    s = budget.stats(now=0.0)
    assert peak[0] <= 3
    assert s.in_flight == 0
    assert s.escalated_in_window == grants[0] > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_fraction": 1.5, "max_in_flight": 1}, "max_fraction must be between 0 and 1; got 1.5"),
        ({"max_fraction": -0.1, "max_in_flight": 1}, "max_fraction must be between 0 and 1"),
        ({"max_fraction": 0.1, "max_in_flight": 0}, "max_in_flight must be at least 1; got 0"),
        ({"max_fraction": 0.1, "max_in_flight": 1, "window_s": 0.0}, "window_s must be positive; got 0.0"),
    ],
)
def test_budget_rejects_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        EscalationBudget(**kwargs)


def test_record_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="n_tickets must be zero or more; got -1"):
        EscalationBudget(0.1, 1).record(-1, now=0.0)


# --- MergePolicy ------------------------------------------------------------------------------------------------


def test_default_policy_lets_the_llm_answer_replace_the_encoders() -> None:
    merged = MergePolicy().merge(["billing", "urgent"], ["delivery", "frustrated"], GROUPS)
    assert merged == ["delivery", "frustrated"]


def test_per_group_policy_takes_each_group_from_its_tier() -> None:
    policy = MergePolicy(default="llm", per_group={"urgency": "llm", "emotion": "encoder"})
    merged = policy.merge(
        encoder_labels=["billing", "low_priority", "aggressive"],
        llm_labels=["frustrated", "urgent", "delivery"],
        groups=GROUPS,
    )
    # topic (default llm) -> delivery; urgency (llm) -> urgent; emotion (encoder) -> aggressive; in group order.
    assert merged == ["delivery", "urgent", "aggressive"]


def test_union_takes_both_tiers_in_group_label_order() -> None:
    policy = MergePolicy(default="encoder", per_group={"topic": "union"})
    merged = policy.merge(["account", "urgent"], ["billing", "account", "low_priority", "frustrated"], GROUPS)
    assert merged == ["billing", "account", "urgent"]
    assert MergePolicy(default="union").merge(["frustrated"], ["aggressive", "billing"], GROUPS) == [
        "billing",
        "frustrated",
        "aggressive",
    ]


def test_labels_in_no_group_follow_the_default_tier() -> None:
    assert MergePolicy(default="encoder").merge(["billing", "spam"], ["vip"], GROUPS) == ["billing", "spam"]
    assert MergePolicy(default="llm").merge(["billing", "spam"], ["vip"], GROUPS) == ["vip"]
    assert MergePolicy(default="union").merge(["spam"], ["vip", "spam"], GROUPS) == ["spam", "vip"]


def test_parse_environment_string() -> None:
    assert MergePolicy.parse("default=llm,emotion=encoder") == MergePolicy("llm", {"emotion": "encoder"})
    assert MergePolicy.parse(" default = union , urgency=llm ,") == MergePolicy("union", {"urgency": "llm"})
    assert MergePolicy.parse("") == MergePolicy()
    assert MergePolicy.parse("topic=encoder").tier_for("emotion") == "llm"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("default=llm,emotion", "merge policy part 'emotion' must look like group=tier"),
        ("=llm", "merge policy part '=llm' must look like group=tier"),
        ("emotion=", "merge policy part 'emotion=' must look like group=tier"),
        ("default=llm,emotion=gpt", "merge policy part 'emotion=gpt': unknown tier 'gpt'; expected one of llm"),
        ("emotion=llm,emotion=encoder", "merge policy part 'emotion=encoder': 'emotion' is set more than once"),
    ],
)
def test_parse_errors_name_the_bad_part(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        MergePolicy.parse(spec)
    assert message in str(info.value)


def test_constructor_and_check_groups_validate() -> None:
    with pytest.raises(ValueError, match="default: unknown tier 'both'"):
        MergePolicy(default="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="group 'emotion': unknown tier 'x'"):
        MergePolicy(per_group={"emotion": "x"})  # type: ignore[dict-item]
    MergePolicy(per_group={"emotion": "encoder"}).check_groups(GROUPS)
    with pytest.raises(
        ValueError, match="unknown group\\(s\\) or label\\(s\\) emotoin; known groups: topic, urgency, emotion; known"
    ):
        MergePolicy(per_group={"emotoin": "encoder"}).check_groups(GROUPS)
    MergePolicy(per_group={"urgent": "llm"}).check_groups(GROUPS)  # a label is a key too


def test_a_label_key_overrides_its_group() -> None:
    policy = MergePolicy.parse("default=encoder,emotion=llm,frustrated=encoder,urgent=llm")
    assert policy.tier_for("emotion", "frustrated") == "encoder"
    assert policy.tier_for("emotion", "aggressive") == "llm"
    assert policy.tier_for("urgency", "urgent") == "llm"
    merged = policy.merge(["billing", "frustrated"], ["delivery", "urgent", "aggressive"], GROUPS)
    assert merged == ["billing", "urgent", "frustrated", "aggressive"]
    assert MergePolicy.parse(policy.spec()) == policy
    agree = MergePolicy.parse("default=encoder,emotion=agree")
    assert agree.merge(["billing", "frustrated", "aggressive"], ["frustrated"], GROUPS) == ["billing", "frustrated"]
