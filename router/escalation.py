"""Escalation policy: when a ticket goes to the LLM tier, how many may go, and how the two answers merge.

Pure policy over numbers and label names: no torch, no HTTP. The service asks ``needs_escalation`` per ticket,
reserves a slot from an ``EscalationBudget``, and, when the LLM answers, ``router.pipeline.HybridPipeline.merge``
builds the final decision with a ``MergePolicy``. Every ticket ends with one ``EscalationStatus`` saying what happened.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from typing import Literal, cast, get_args

Tier = Literal["llm", "encoder", "union", "agree"]
"""Which tier's labels a group takes: the LLM's, the encoder's, either's (union) or only those both gave (agree)."""

TIERS: tuple[str, ...] = get_args(Tier)


class EscalationMode(StrEnum):
    """What a request may ask for."""

    AUTO = "auto"
    """Escalate only when the encoder's confidence is below the threshold (and the budget allows)."""
    NEVER = "never"
    """Never escalate: the encoder's answer is final."""
    FORCE = "force"
    """Always escalate, regardless of confidence; still limited by the in-flight cap."""


class EscalationStatus(StrEnum):
    """What happened to one ticket's escalation, reported per ticket and counted in metrics."""

    NOT_NEEDED = "not_needed"
    """The encoder was confident enough (or the request said ``never``): no escalation was attempted."""
    DONE = "done"
    """The LLM answered and its labels were merged into the decision."""
    SKIPPED_BUDGET = "skipped_budget"
    """Escalation was wanted but the budget (fraction of traffic or in-flight cap) refused it: encoder answer."""
    UNAVAILABLE = "unavailable"
    """Escalation was wanted but the LLM tier is configured and not ready (loading, failed to load): encoder answer."""
    TIMEOUT = "timeout"
    """The LLM did not answer within the deadline: encoder answer."""
    DISABLED = "disabled"
    """Escalation was wanted but no LLM tier is configured on this server: encoder answer."""
    FAILED = "failed"
    """The LLM call raised (bad output, backend error): encoder answer."""


def needs_escalation(confidence: float, threshold: float, mode: EscalationMode) -> bool:
    """Whether a ticket should go to the LLM tier, before any budget check.

    ``auto``: ``confidence < threshold`` (a ticket exactly at the threshold stays with the encoder);
    ``force``: always; ``never``: never.
    """
    mode = EscalationMode(mode)
    if mode is EscalationMode.FORCE:
        return True
    if mode is EscalationMode.NEVER:
        return False
    return confidence < threshold


@dataclass(frozen=True)
class BudgetStats:
    """A snapshot of the budget for metrics."""

    tickets_in_window: int
    escalated_in_window: int
    in_flight: int


class EscalationBudget:
    """Caps escalations to a fraction of traffic over a sliding window and to a number of concurrent LLM jobs.

    The window at time ``now`` is the half-open interval ``(now - window_s, now]``: a ticket or escalation stamped
    at ``t`` counts until ``t + window_s`` (exclusive). Call ``record`` for every ticket the service sees *before*
    asking ``try_acquire`` for any of them; call ``release`` once per successful ``try_acquire`` when the LLM job
    ends, whatever its outcome.

    Rule: with ``E`` escalations and ``N`` tickets in the window, ``try_acquire`` grants one more escalation iff

    * ``in_flight < max_in_flight``, and, when ``respect_fraction`` is true (the default),
    * ``max_fraction > 0`` and ``E < N`` and ``E <= max_fraction * N`` (compared exactly, on the decimal value of
      ``max_fraction``: ``0.1`` means 1/10).

    So after a grant the window holds at most ``max_fraction * N + 1`` escalations: the "+1" is the rounding
    allowance that lets the first low-confidence ticket of a quiet window escalate. Over any run, the
    fraction-respecting grants number at most ``max_fraction * T + 1 + floor(D / window_s)``, where ``T`` is the
    tickets recorded and ``D`` the time from the first grant to the last: i.e. ``max_fraction`` of the traffic plus
    one per window of run time. (Proof: walking back from the last grant, pick grants at least ``window_s`` apart;
    their windows are disjoint, cover every grant, and each holds at most ``max_fraction * N_j + 1`` of them.)
    ``max_fraction = 0`` grants nothing that respects the fraction; no grant ever exceeds the tickets in window.

    ``force`` requests should call ``try_acquire(respect_fraction=False)``: they skip the fraction test but still
    respect the in-flight cap, and they are counted in the window, so they use up budget that ``auto`` tickets would
    otherwise get (the window measures real LLM load). The bound above covers fraction-respecting grants only.

    Time comes from ``now`` arguments or, when those are ``None``, from ``clock`` (``time.monotonic`` by default);
    it must not go backwards. Thread-safe: every method holds one lock.
    """

    def __init__(
        self,
        max_fraction: float,
        max_in_flight: int,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.0 <= max_fraction <= 1.0:
            raise ValueError(f"max_fraction must be between 0 and 1; got {max_fraction!r}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1; got {max_in_flight!r}")
        if not window_s > 0.0:
            raise ValueError(f"window_s must be positive; got {window_s!r}")
        self.max_fraction = max_fraction
        self.max_in_flight = max_in_flight
        self.window_s = window_s
        self._clock = clock
        # The decimal the user wrote, not its binary approximation: 0.29 * 100 is 28.999999999999996 in floats.
        self._fraction = Fraction(repr(float(max_fraction)))
        self._lock = threading.Lock()
        self._tickets: deque[tuple[float, int]] = deque()
        self._tickets_in_window = 0
        self._escalations: deque[float] = deque()
        self._in_flight = 0

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else now

    def _expire(self, now: float) -> None:
        """Drop entries stamped at or before ``now - window_s``. Caller holds the lock."""
        horizon = now - self.window_s
        while self._tickets and self._tickets[0][0] <= horizon:
            self._tickets_in_window -= self._tickets.popleft()[1]
        while self._escalations and self._escalations[0] <= horizon:
            self._escalations.popleft()

    def record(self, n_tickets: int, now: float | None = None) -> None:
        """Count ``n_tickets`` tickets seen by the service (all of them, escalated or not)."""
        if n_tickets < 0:
            raise ValueError(f"n_tickets must be zero or more; got {n_tickets!r}")
        with self._lock:
            t = self._now(now)
            self._expire(t)
            if n_tickets:
                self._tickets.append((t, n_tickets))
                self._tickets_in_window += n_tickets

    def try_acquire(self, now: float | None = None, respect_fraction: bool = True) -> bool:
        """Reserve one escalation if the limits allow (see the class docstring); on success it counts in the window.

        Every ``True`` must be matched by one ``release()`` when the LLM job ends.
        """
        with self._lock:
            t = self._now(now)
            self._expire(t)
            if self._in_flight >= self.max_in_flight:
                return False
            if respect_fraction:
                escalated, tickets = len(self._escalations), self._tickets_in_window
                if self._fraction == 0 or escalated >= tickets:
                    return False
                if escalated * self._fraction.denominator > self._fraction.numerator * tickets:
                    return False
            self._escalations.append(t)
            self._in_flight += 1
            return True

    def release(self) -> None:
        """End one escalation's LLM job (success or failure). Raises ``RuntimeError`` if none is in flight."""
        with self._lock:
            if self._in_flight == 0:
                raise RuntimeError("release() called with no escalation in flight; call it once per try_acquire()")
            self._in_flight -= 1

    def stats(self, now: float | None = None) -> BudgetStats:
        """Tickets and escalations in the current window, and LLM jobs in flight."""
        with self._lock:
            self._expire(self._now(now))
            return BudgetStats(
                tickets_in_window=self._tickets_in_window,
                escalated_in_window=len(self._escalations),
                in_flight=self._in_flight,
            )


def _check_tier(tier: str, where: str) -> Tier:
    if tier not in TIERS:
        raise ValueError(f"{where}: unknown tier {tier!r}; expected one of {', '.join(TIERS)}")
    return cast(Tier, tier)


@dataclass(frozen=True)
class MergePolicy:
    """Per label group, whose labels win when an escalated ticket has both an encoder and an LLM answer.

    ``llm`` takes the group's labels from the LLM, ``encoder`` from the encoder, ``union`` from either, ``agree``
    only those both gave (a second opinion that can veto the encoder's doubtful labels). Groups not
    named in ``per_group``, and labels in no group, follow ``default``. The default policy (``llm`` everywhere) makes
    the LLM's answer replace the encoder's.

    A ``per_group`` key may also name a single label (per-label arbitration, as ``calibrate-router --arbitrate``
    chooses it): a label's own tier wins over its group's.
    """

    default: Tier = "llm"
    per_group: Mapping[str, Tier] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_tier(self.default, "default")
        for group, tier in self.per_group.items():
            _check_tier(tier, f"group {group!r}")
        object.__setattr__(self, "per_group", dict(self.per_group))

    @classmethod
    def parse(cls, spec: str) -> MergePolicy:
        """Build a policy from ``"default=llm,emotion=encoder"`` (e.g. an environment variable).

        Comma-separated ``key=tier`` pairs; the key ``default`` sets the default tier, any other key is a group
        name. Whitespace around parts is ignored; an empty string gives the default policy.
        """
        default: Tier = "llm"
        per_group: dict[str, Tier] = {}
        seen: set[str] = set()
        for raw in spec.split(","):
            part = raw.strip()
            if not part:
                continue
            key, sep, value = (s.strip() for s in part.partition("="))
            if not sep or not key or not value:
                raise ValueError(f"merge policy part {part!r} must look like group=tier (e.g. emotion=encoder)")
            if key in seen:
                raise ValueError(f"merge policy part {part!r}: {key!r} is set more than once")
            seen.add(key)
            tier = _check_tier(value, f"merge policy part {part!r}")
            if key == "default":
                default = tier
            else:
                per_group[key] = tier
        return cls(default=default, per_group=per_group)

    def tier_for(self, group: str, label: str | None = None) -> Tier:
        """The tier whose labels the given group (or, when it has its own, the given label) takes."""
        if label is not None and label in self.per_group:
            return self.per_group[label]
        return self.per_group.get(group, self.default)

    def spec(self) -> str:
        """The policy in the form :meth:`parse` reads."""
        return ",".join([f"default={self.default}", *(f"{key}={tier}" for key, tier in self.per_group.items())])

    def check_groups(self, groups: Mapping[str, Sequence[str]]) -> None:
        """Raise ``ValueError`` if ``per_group`` names neither a group nor a label of the taxonomy (call it at
        startup)."""
        labels = {label for names in groups.values() for label in names}
        unknown = [g for g in self.per_group if g not in groups and g not in labels]
        if unknown:
            raise ValueError(
                f"merge policy names unknown group(s) or label(s) {', '.join(unknown)}; known groups: "
                f"{', '.join(groups)}; known labels: {', '.join(sorted(labels))}"
            )

    def merge(
        self, encoder_labels: Sequence[str], llm_labels: Sequence[str], groups: Mapping[str, Sequence[str]]
    ) -> list[str]:
        """Merge two tiers' labels group by group.

        Output: the grouped labels in the groups' order and each group's label order, then labels in no group
        (encoder's first, then the LLM's), without duplicates. A label listed in several groups follows the first.
        """
        enc, llm = set(encoder_labels), set(llm_labels)

        def pick(tier: Tier, label: str) -> bool:
            if tier == "llm":
                return label in llm
            if tier == "encoder":
                return label in enc
            if tier == "agree":
                return label in enc and label in llm
            return label in enc or label in llm

        out: list[str] = []
        grouped: set[str] = set()
        for group, names in groups.items():
            for label in names:
                if label in grouped:
                    continue
                grouped.add(label)
                if pick(self.tier_for(group, label), label):
                    out.append(label)
        for label in [*encoder_labels, *llm_labels]:
            if label not in grouped and label not in out and pick(self.default, label):
                out.append(label)
        return out
