"""A generic asyncio dynamic batcher: a bounded queue, a flush policy, one worker thread, futures to callers.

It knows nothing of tokenizers, models or HTTP. Callers ``submit`` a list of items with a deadline and get the
predict function's outputs back in order. The worker plans the queued items into batches of similar cost (token
count) where a predict call's fixed overhead is worth less than the padding it saves, runs the planned batch
holding the oldest item in a single worker thread, off the event loop, and plans the rest again with whatever
arrived meanwhile. Unbatched (``batching=False``), each request's items are one batch, through the same bounded
queue and worker.

When a batch starts (the flush rule):
- busy: when a forward pass returns with items queued (they arrived while it ran, or were planned out of it), the
  next batch is planned and started at once, without waiting for more. One batch is in flight while the next one
  forms, the forward pass never idles while items wait, and batches grow with the load by themselves (to about
  what arrives during one pass).
- idle: an item that finds the worker idle waits for company only while that pays by the cost model. A pass over
  ``n`` items costs ``o + n*c`` seconds: ``o`` is the fixed part (``batch_overhead`` cost units at the measured
  seconds per unit), ``c`` the padded work of one item (the widest queued). Taking the next arrival along, ``g``
  seconds away (the moving average of the gaps between ``submit`` calls), instead of running it in a pass of its
  own after this one, lowers the items' total latency iff ``(n + 1)*g < o - n*c``. So the worker waits while that
  holds and no longer than ``(o - n*c)/(n + 1)`` after the last arrival (less than half a fixed pass cost), and
  never past ``max_wait_s`` after the oldest item arrived. At low load (``g`` large) and once the queued items
  amortise the fixed cost (``n*c >= o``) a lone item runs at once. Before the first batch and the first gap are
  measured the cost of waiting is unknown, and the worker waits up to ``max_wait_s`` (a plain deadline batcher).
- a full batch (``max_batch_size`` queued) or ``stop`` flushes at once.

Every caller gets an answer: ``stop`` drains before it closes and never cancels a running batch, and a crash of
the worker loop fails only the items it held before the loop restarts (or, crashing again and again, gives up).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import numpy as np

from app.server.failures import FailureLog

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class BatcherError(Exception):
    """Base class for batcher failures seen by callers."""


class QueueFull(BatcherError):
    """The queue cannot take the submitted items; retry after ``retry_after`` seconds.

    ``expected_wait``: set when the items were refused because they would wait longer than the policy's
    ``max_queue_wait_s``, not because the queue holds ``capacity`` items.
    """

    def __init__(self, depth: int, capacity: int, retry_after: float, expected_wait: float | None = None) -> None:
        super().__init__(
            f"the items would wait {expected_wait:.2f}s"
            if expected_wait is not None
            else f"queue holds {depth} of {capacity} items"
        )
        self.depth, self.capacity, self.retry_after = depth, capacity, retry_after
        self.expected_wait = expected_wait


class DeadlineExceeded(BatcherError):
    """The items were not served within the caller's deadline (they are dropped from the queue)."""


class BatcherClosed(BatcherError):
    """The batcher is not running (not started yet, or shutting down)."""


class BatcherFailed(BatcherClosed):
    """The worker crashed too often and the batcher gave up; it takes no work until it is stopped and started."""


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int = 32
    max_batch_tokens: int = 8192
    """Budget on padded tokens: batch length x longest item."""
    max_wait_s: float = 0.005
    """Longest an item that found the worker idle waits for company; it waits less, or not at all, when the cost
    model says waiting does not pay (see the module docstring)."""
    max_queue: int = 1024
    sort_window: int = 4
    """How many batches' worth of the queue's head are planned together."""
    batching: bool = True
    """False: one predict call per submitted request (the unbatched baseline)."""
    batch_overhead: float = 64.0
    """Fixed cost of one predict call, in the unit of the items' cost (for the encoder: tokens); see plan_batches."""
    max_queue_wait_s: float | None = None
    """Refuse new items whose expected wait (the queue ahead of them at the measured seconds per item) exceeds
    this; None: only ``max_queue`` bounds the queue. An empty queue always takes a request."""

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.max_batch_tokens < 1 or self.max_queue < 1 or self.sort_window < 1:
            raise ValueError(f"batch policy values must be positive: {self}")
        if self.max_queue_wait_s is not None and self.max_queue_wait_s <= 0:
            raise ValueError(f"max_queue_wait_s must be > 0 or None: {self}")
        if self.max_wait_s < 0 or self.batch_overhead < 0:
            raise ValueError(f"max_wait_s and batch_overhead must be >= 0: {self}")


def plan_batches(costs: Sequence[int], policy: BatchPolicy) -> list[list[int]]:
    """Split item indices into the batches that minimise the predicted total cost of their predict calls.

    One call is modelled as costing ``policy.batch_overhead + len(batch) * max(cost)``: a fixed part (kernel
    launches, input-independent work) plus the padded work. Sorted by cost, the best split is into contiguous
    runs, found by a dynamic programme under the size and padded-token budgets. A large overhead gives few full
    batches; a small one keeps long items apart from short ones to cut padding. Ties go to fewer batches. An item
    over the token budget still gets a batch alone.
    """
    order = sorted(range(len(costs)), key=costs.__getitem__)
    width = np.asarray([costs[i] for i in order], dtype=np.float64)
    best = np.zeros(len(order) + 1)  # best[k]: least total cost of the first k sorted items ...
    count = np.zeros(len(order) + 1, dtype=np.int64)  # ... in this many batches
    begin_of = np.zeros(len(order) + 1, dtype=np.int64)
    for end in range(1, len(order) + 1):
        widest = width[end - 1]
        longest_batch = min(policy.max_batch_size, max(1, int(policy.max_batch_tokens // max(widest, 1))))
        begins = np.arange(max(0, end - longest_batch), end)
        totals = best[begins] + policy.batch_overhead + (end - begins) * widest
        tied = np.flatnonzero(totals <= totals.min() * (1 + 1e-9))
        pick = int(tied[np.argmin(count[begins[tied]])])  # fewest batches; then the biggest last batch
        best[end], count[end], begin_of[end] = totals[pick], count[begins[pick]] + 1, begins[pick]
    batches: list[list[int]] = []
    end = len(order)
    while end > 0:
        begin = int(begin_of[end])
        batches.append(order[begin:end])
        end = begin
    return batches[::-1]


def company_wait(queued: int, widest: float, overhead: float, unit_seconds: float, gap: float) -> float:
    """How long after the last arrival an idle worker holding ``queued`` items should wait for the next one; 0:
    run them now.

    ``overhead``: the fixed cost of a predict call and ``widest``: the widest queued item's cost (both in cost
    units), ``unit_seconds``: the measured seconds per cost unit, ``gap``: the expected seconds to the next arrival.
    With the fixed part ``o = overhead * unit_seconds`` and one item's work ``c = widest * unit_seconds``, waiting
    for the next item instead of running it in a pass of its own lowers the total latency iff
    ``(queued + 1) * gap < o - queued * c``; the wait is bounded by ``(o - queued * c) / (queued + 1)``.
    """
    limit = unit_seconds * (overhead - queued * widest) / (queued + 1)
    return limit if 0 <= gap < limit else 0.0


class BatchObserver(Protocol):
    """Receives what a metrics system wants to know. All methods are called on the event loop."""

    def batch_done(self, size: int, padded_tokens: int, waits: Sequence[float], seconds: float) -> None: ...

    def queue_depth(self, depth: int) -> None: ...


@dataclass
class _Item(Generic[T, R]):
    value: T
    cost: int
    future: asyncio.Future[R]
    request: int
    """Which ``submit`` call queued it: in unbatched mode one request's items are one batch."""
    enqueued: float = field(default_factory=time.perf_counter)


class DynamicBatcher(Generic[T, R]):
    """Batches concurrent ``submit`` calls into ``predict`` calls run in one worker thread.

    Lifecycle: ``start`` begins the worker loop; ``stop`` refuses new work at once, drains the queue until a
    deadline, answers whatever is still queued with ``BatcherClosed`` and never cancels a running batch. A crash
    of the loop outside the predict call fails only the items the worker held, is logged and the loop restarts;
    after ``max_restarts`` crashes within ``restart_window_s`` the batcher gives up (``healthy`` turns False,
    queued and new work get ``BatcherFailed``).
    """

    def __init__(
        self,
        predict: Callable[[list[T]], Sequence[R]],
        policy: BatchPolicy,
        cost: Callable[[T], int] = lambda _: 1,
        observer: BatchObserver | None = None,
        name: str = "batcher",
        max_restarts: int = 5,
        restart_window_s: float = 60.0,
    ) -> None:
        if max_restarts < 0 or restart_window_s <= 0:
            raise ValueError(
                f"max_restarts must be >= 0 and restart_window_s > 0; found {max_restarts} and {restart_window_s}"
            )
        self._predict = predict
        self.policy = policy
        self._cost = cost
        self._observer = observer
        self.name = name
        self.max_restarts = max_restarts
        self.restart_window_s = restart_window_s
        self._queue: deque[_Item[T, R]] = deque()
        self._taken: list[_Item[T, R]] = []  # held by the worker: being planned or running
        self._requests = itertools.count()
        self._wakeup = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._worker: asyncio.Task[None] | None = None
        self._stopping: asyncio.Task[None] | None = None
        self._closing = False
        self._failure: str | None = None  # why the worker gave up
        self._crashes: deque[float] = deque()  # monotonic times of the restarts within the window
        self._restarts = 0
        self._observer_errors = 0
        self._item_seconds: float | None = None  # moving average of inference seconds per item; None: no batch yet
        self._unit_seconds: float | None = None  # ... per cost unit, the fixed part included (the flush rule's cost)
        self._gap: float | None = None  # moving average of the seconds between accepted submits; None: < 2 yet
        self._last_arrival: float | None = None  # perf_counter time of the last accepted submit
        self._failures = FailureLog(logger, f"{name}: predict")

    @property
    def depth(self) -> int:
        """Items queued or running (what the queue bound applies to)."""
        return len(self._queue) + len(self._taken)

    @property
    def running(self) -> bool:
        """Started and not yet fully stopped (True while draining and after giving up, until ``stop`` ends)."""
        return self._executor is not None

    @property
    def healthy(self) -> bool:
        """Taking work: started, not stopping, and the worker has not given up after repeated crashes."""
        worker_alive = self._worker is not None and not self._worker.done()
        return self.running and worker_alive and not self._closing and self._failure is None

    @property
    def restarts(self) -> int:
        """How many times the worker loop was restarted after a crash since ``start``."""
        return self._restarts

    async def start(self) -> None:
        if self._executor is not None:
            return
        self._queue.clear()
        self._taken = []
        self._wakeup = asyncio.Event()
        self._stopping, self._closing, self._failure = None, False, None
        self._crashes.clear()
        self._restarts = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.name}-worker")
        self._worker = asyncio.create_task(self._supervise(), name=f"{self.name}-loop")

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop taking work at once; keep serving the queue for up to ``drain_timeout`` seconds, then answer
        whatever is still queued with ``BatcherClosed``, wait for the running batch (never cancelled: its callers
        get their results) and shut down the worker thread. Cancelling the caller does not cut the shutdown short.
        """
        if self._executor is None:
            return
        if self._stopping is None:
            self._stopping = asyncio.create_task(self._shutdown(drain_timeout), name=f"{self.name}-stop")
        await asyncio.shield(self._stopping)

    async def _shutdown(self, drain_timeout: float) -> None:
        self._closing = True
        self._wakeup.set()  # a worker waiting to fill a batch flushes now
        worker = self._worker
        if worker is not None and drain_timeout > 0:
            await asyncio.wait({worker}, timeout=drain_timeout)  # the worker returns once the queue is empty
        self._fail_queued(BatcherClosed(f"{self.name} is shutting down; the queue was not drained in time"))
        self._wakeup.set()
        if worker is not None:
            await asyncio.wait({worker})  # the running batch finishes and delivers; wait() never cancels it
        executor, self._executor, self._worker = self._executor, None, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True)

    def retry_after(self) -> float:
        """Seconds until the queue ahead has likely drained (at least 1): the caller's Retry-After hint."""
        return max(1.0, round(self.expected_wait() or 0.0, 1))

    def expected_wait(self, extra: int = 0) -> float | None:
        """Seconds until ``extra`` new items would be served behind the current queue, from measured batches."""
        if self._item_seconds is None:
            return None
        return (self.depth + extra) * self._item_seconds

    async def submit(self, values: Sequence[T], timeout: float) -> list[R]:
        """Queue ``values`` and wait up to ``timeout`` seconds for their results, in order.

        Raises ``QueueFull`` when the queue bound would be passed, ``DeadlineExceeded`` when the deadline passes
        (the items still queued are dropped), ``BatcherClosed`` when not running (``BatcherFailed`` after the
        worker gave up), and whatever ``predict`` or a crash of the worker raised for these items.
        """
        if self._failure is not None:
            raise BatcherFailed(self._failure)
        if self._executor is None:
            raise BatcherClosed(f"{self.name} is not running")
        if self._closing:
            raise BatcherClosed(f"{self.name} is shutting down")
        if not values:
            return []
        if self.depth + len(values) > self.policy.max_queue:
            raise QueueFull(self.depth, self.policy.max_queue, self.retry_after())
        budget = self.policy.max_queue_wait_s
        wait = self.expected_wait(len(values))
        if budget is not None and wait is not None and self.depth > 0 and wait > budget:
            raise QueueFull(self.depth, self.policy.max_queue, self.retry_after(), expected_wait=wait)
        now = time.perf_counter()
        if self._last_arrival is not None:
            gap = now - self._last_arrival
            self._gap = gap if self._gap is None else 0.8 * self._gap + 0.2 * gap
        self._last_arrival = now
        loop = asyncio.get_running_loop()
        request = next(self._requests)
        items = [_Item[T, R](v, self._cost(v), loop.create_future(), request) for v in values]
        self._queue.extend(items)
        self._report_depth()
        self._wakeup.set()
        try:
            return list(await asyncio.wait_for(asyncio.gather(*(i.future for i in items)), timeout))
        except TimeoutError as exc:
            dropped = self._drop(items)  # wait_for already cancelled their futures; unqueue them too
            raise DeadlineExceeded(
                f"{len(values)} item(s) not served within {timeout:g}s ({dropped} still queued were dropped)"
            ) from exc
        except asyncio.CancelledError:
            self._drop(items)
            raise

    def _drop(self, items: list[_Item[T, R]]) -> int:
        ids = {id(i) for i in items}
        before = len(self._queue)
        self._queue = deque(i for i in self._queue if id(i) not in ids)
        for item in items:
            item.future.cancel()
        self._report_depth()
        return before - len(self._queue)

    def _fail_queued(self, error: BatcherError) -> None:
        queued, self._queue = self._queue, deque()
        for item in queued:
            if not item.future.done():
                item.future.set_exception(error)
        if queued:
            self._report_depth()

    async def _supervise(self) -> None:
        """Run the worker loop; after a crash fail the items it held and restart it, or give up if it keeps crashing."""
        while True:
            try:
                await self._loop()
                return  # stopping, and the queue is empty
            except asyncio.CancelledError:
                closed = BatcherClosed(f"{self.name} worker was cancelled")
                self._fail_taken(closed)
                self._fail_queued(closed)
                raise
            except Exception as exc:
                logger.exception("%s: worker loop crashed holding %d item(s)", self.name, len(self._taken))
                self._fail_taken(exc)
                if not self._may_restart():
                    self._give_up(exc)
                    return

    def _may_restart(self) -> bool:
        now = time.monotonic()
        while self._crashes and now - self._crashes[0] > self.restart_window_s:
            self._crashes.popleft()
        if len(self._crashes) >= self.max_restarts:
            return False
        self._crashes.append(now)
        self._restarts += 1
        return True

    def _give_up(self, exc: Exception) -> None:
        # the message reaches clients in a 503 body: the error itself is in the log, with its traceback
        self._failure = (
            f"{self.name} stopped serving: its worker crashed {len(self._crashes) + 1} times within"
            f" {self.restart_window_s:g}s (see the server log); restart the service"
        )
        logger.error("%s; last error: %r", self._failure, exc)
        self._fail_queued(BatcherFailed(self._failure))

    def _fail_taken(self, error: BaseException) -> None:
        taken, self._taken = self._taken, []
        for item in taken:
            if not item.future.done():
                item.future.set_exception(error)
        self._report_depth()

    async def _loop(self) -> None:
        idle = True  # no batch has run since the queue was last empty
        while True:
            if not self._queue:
                if self._closing:
                    return
                idle = True
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if idle and self.policy.batching:
                await self._fill()  # only an idle worker waits for company; a busy one starts the next batch at once
            idle = False
            batch = self._next_batch()
            if batch:
                await self._run_batch(batch)

    async def _fill(self) -> None:
        """Wait while waiting for company pays (the flush rule, module docstring): until a full batch is queued, the
        flush time passes with no new arrival, or the batcher stops."""
        while self._queue and not self._closing and len(self._queue) < self.policy.max_batch_size:
            left = self._flush_at() - time.perf_counter()
            if left <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), left)
            except TimeoutError:
                return

    def _flush_at(self) -> float:
        """When the queued items should run if nothing more arrives (``time.perf_counter`` time)."""
        deadline = self._queue[0].enqueued + self.policy.max_wait_s
        if self._unit_seconds is None or self._gap is None or self._last_arrival is None:
            return deadline  # nothing measured yet: whether waiting pays is unknown
        widest = max(i.cost for i in self._queue)
        wait = company_wait(len(self._queue), widest, self.policy.batch_overhead, self._unit_seconds, self._gap)
        return min(deadline, self._last_arrival + wait)

    def _next_batch(self) -> list[_Item[T, R]]:
        """Take the next batch off the queue: the planned batch holding the oldest item, or (unbatched) the oldest
        request's items.

        The rest stay queued, in order, and are planned again together with whatever arrives while this batch
        runs: plans see as many items as possible, and the oldest item always goes next (nothing starves).
        """
        while self._queue and self._queue[0].future.done():  # cancelled by its caller's deadline
            self._queue.popleft()
        if not self._queue:
            return []
        if not self.policy.batching:
            request = self._queue[0].request
            while self._queue and self._queue[0].request == request:
                self._taken.append(self._queue.popleft())
            self._taken = [i for i in self._taken if not i.future.done()]
            self._report_depth()
            return list(self._taken)
        limit = self.policy.max_batch_size * self.policy.sort_window
        while self._queue and len(self._taken) < limit:
            item = self._queue.popleft()
            if not item.future.done():
                self._taken.append(item)  # held from here: a crash in planning fails these callers, not others
        window = self._taken
        chosen = next(b for b in plan_batches([i.cost for i in window], self.policy) if 0 in b)
        taken = set(chosen)
        self._queue.extendleft(reversed([item for k, item in enumerate(window) if k not in taken]))
        self._taken = [window[k] for k in chosen]
        self._report_depth()
        return list(self._taken)

    async def _run_batch(self, batch: list[_Item[T, R]]) -> None:
        assert self._executor is not None  # only the worker calls this, and stop waits for it
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        try:
            values = [i.value for i in batch]
            results, start, seconds = await loop.run_in_executor(self._executor, self._timed_predict, values)
            if len(results) != len(batch):
                raise RuntimeError(f"predict returned {len(results)} results for {len(batch)} items")
        except Exception as exc:  # delivered to every caller of the batch; the loop keeps serving
            self._failures.failed(exc)
            seconds = time.perf_counter() - start
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
        else:
            self._failures.succeeded()
            for item, result in zip(batch, results, strict=True):
                if not item.future.done():
                    item.future.set_result(result)
        self._taken = []  # answered: nothing is lost if what follows raises
        # the wait is up to the start of inference in the worker thread: for unbatched requests too, it includes
        # the time spent behind other requests
        waits = [start - i.enqueued for i in batch]
        per_item = seconds / len(batch)
        self._item_seconds = per_item if self._item_seconds is None else 0.8 * self._item_seconds + 0.2 * per_item
        padded = len(batch) * max(i.cost for i in batch)
        per_unit = seconds / max(self.policy.batch_overhead + padded, 1e-9)
        self._unit_seconds = per_unit if self._unit_seconds is None else 0.8 * self._unit_seconds + 0.2 * per_unit
        self._observe(len(batch), padded, waits, seconds)
        self._report_depth()

    def _timed_predict(self, values: list[T]) -> tuple[Sequence[R], float, float]:
        """Results, start time and duration, taken in the worker thread: the time waited for it is not inference."""
        start = time.perf_counter()
        results = self._predict(values)
        return results, start, time.perf_counter() - start

    def _observe(self, size: int, padded: int, waits: Sequence[float], seconds: float) -> None:
        if self._observer is None:
            return
        try:
            self._observer.batch_done(size, padded, waits, seconds)
        except Exception:
            self._observer_failed("batch_done")

    def _report_depth(self) -> None:
        if self._observer is None:
            return
        try:
            self._observer.queue_depth(self.depth)
        except Exception:
            self._observer_failed("queue_depth")

    def _observer_failed(self, method: str) -> None:
        """Metrics must never cost a caller its answer: log and go on."""
        self._observer_errors += 1
        # a broken observer fails on every batch: one traceback at ERROR, the rest at DEBUG, not a log flood
        if self._observer_errors == 1:
            logger.exception("%s: observer.%s failed; further observer errors are logged at DEBUG", self.name, method)
        else:
            logger.debug("%s: observer.%s failed (%d so far)", self.name, method, self._observer_errors, exc_info=True)
