"""Logging a failure streak as state changes, not as a traceback per failure.

During an outage (an LLM backend down, every batch failing) one traceback per failure drowns the log. A
``FailureLog`` writes the first failure of a streak with its traceback, then at most one summary line per
``interval_s`` while the streak lasts, and one line when it ends.
"""

from __future__ import annotations

import logging
import threading
import time


class FailureLog:
    """Thread-safe: failures may be reported from worker threads and the event loop alike."""

    def __init__(self, logger: logging.Logger, what: str, interval_s: float = 60.0) -> None:
        self.logger, self.what, self.interval_s = logger, what, interval_s
        self.failing = False
        self.streak = 0
        self._since_summary = 0
        self._started = self._summarised = 0.0
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        with self._lock:
            self.streak += 1
            self._since_summary += 1
            if not self.failing:
                self.failing, self._started, self._summarised, self._since_summary = True, now, now, 0
                self.logger.error("%s failing: %s: %s", self.what, type(exc).__name__, exc, exc_info=exc)
            elif now - self._summarised >= self.interval_s:
                self.logger.warning(
                    "%s still failing: %d failure(s) in the last %.0fs (%d in this outage), last: %s: %s",
                    self.what,
                    self._since_summary,
                    now - self._summarised,
                    self.streak,
                    type(exc).__name__,
                    exc,
                )
                self._summarised, self._since_summary = now, 0

    def succeeded(self) -> None:
        with self._lock:
            if self.failing:
                self.logger.info(
                    "%s recovered after %d failure(s) over %.1fs",
                    self.what,
                    self.streak,
                    time.monotonic() - self._started,
                )
            self.failing, self.streak, self._since_summary = False, 0, 0


class CircuitBreaker:
    """Stops calling a backend that keeps failing: ``threshold`` consecutive failures open it for ``open_s``
    seconds (callers are refused at once), then one trial call is let through per ``open_s``; a success closes it.
    ``threshold`` 0 disables it."""

    def __init__(self, threshold: int, open_s: float, logger: logging.Logger, what: str) -> None:
        self.threshold, self.open_s, self.logger, self.what = threshold, open_s, logger, what
        self.state = "closed"  # closed | open | half_open
        self.failures = 0
        self.opened = 0  # how many times it opened
        self._opened_at = 0.0
        self._lock = threading.Lock()

    def allow(self) -> bool:
        """Whether a call may go to the backend now (a half-open breaker lets one through per ``open_s``)."""
        if self.threshold == 0:
            return True
        with self._lock:
            if self.state == "closed":
                return True
            if time.monotonic() - self._opened_at >= self.open_s:
                self.state, self._opened_at = "half_open", time.monotonic()  # one trial; re-armed for the next
                return True
            return False

    def record(self, ok: bool) -> None:
        if self.threshold == 0:
            return
        with self._lock:
            if ok:
                if self.state != "closed":
                    self.logger.info("%s circuit breaker closed: the trial call succeeded", self.what)
                self.state, self.failures = "closed", 0
                return
            self.failures += 1
            if self.state == "half_open" or (self.state == "closed" and self.failures >= self.threshold):
                if self.state == "closed":
                    self.opened += 1
                    self.logger.warning(
                        "%s circuit breaker open after %d consecutive failures: refusing calls for %.0fs",
                        self.what,
                        self.failures,
                        self.open_s,
                    )
                self.state, self._opened_at = "open", time.monotonic()
