"""A generic asyncio dynamic batcher: a bounded queue, a flush policy, one worker thread, futures to callers.

It knows nothing of tokenizers, models or HTTP. Callers ``submit`` a list of items with a deadline and get the
predict function's outputs back in order. The worker waits until ``max_batch_size`` items are queued or the oldest
has waited ``max_wait_s``, plans the queued items into batches of similar cost (token count) where a predict
call's fixed overhead is worth less than the padding it saves, runs the planned batch holding the oldest item in a
single worker thread, off the event loop, and plans the rest again with whatever arrived meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import numpy as np

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class BatcherError(Exception):
    """Base class for batcher failures seen by callers."""


class QueueFull(BatcherError):
    """The queue cannot take the submitted items; retry after ``retry_after`` seconds."""

    def __init__(self, depth: int, capacity: int, retry_after: float) -> None:
        super().__init__(f"queue holds {depth} of {capacity} items")
        self.depth, self.capacity, self.retry_after = depth, capacity, retry_after


class DeadlineExceeded(BatcherError):
    """The items were not served within the caller's deadline (they are dropped from the queue)."""


class BatcherClosed(BatcherError):
    """The batcher is not running (not started yet, or shutting down)."""


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int = 32
    max_batch_tokens: int = 8192
    """Budget on padded tokens: batch length x longest item."""
    max_wait_s: float = 0.005
    max_queue: int = 1024
    sort_window: int = 4
    """How many batches' worth of the queue's head are planned together."""
    batching: bool = True
    """False: one predict call per submitted request (the unbatched baseline)."""
    batch_overhead: float = 64.0
    """Fixed cost of one predict call, in the unit of the items' cost (for the encoder: tokens); see plan_batches."""

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.max_batch_tokens < 1 or self.max_queue < 1 or self.sort_window < 1:
            raise ValueError(f"batch policy values must be positive: {self}")
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


class BatchObserver(Protocol):
    """Receives what a metrics system wants to know. All methods are called on the event loop."""

    def batch_done(self, size: int, padded_tokens: int, waits: Sequence[float], seconds: float) -> None: ...

    def queue_depth(self, depth: int) -> None: ...


@dataclass
class _Item(Generic[T, R]):
    value: T
    cost: int
    future: asyncio.Future[R]
    enqueued: float = field(default_factory=time.perf_counter)


class DynamicBatcher(Generic[T, R]):
    """Batches concurrent ``submit`` calls into ``predict`` calls run in one worker thread."""

    def __init__(
        self,
        predict: Callable[[list[T]], Sequence[R]],
        policy: BatchPolicy,
        cost: Callable[[T], int] = lambda _: 1,
        observer: BatchObserver | None = None,
        name: str = "batcher",
    ) -> None:
        self._predict = predict
        self.policy = policy
        self._cost = cost
        self._observer = observer
        self.name = name
        self._queue: deque[_Item[T, R]] = deque()
        self._in_flight = 0
        self._wakeup = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._worker: asyncio.Task[None] | None = None
        self._recent_batch_seconds = 0.05

    @property
    def depth(self) -> int:
        """Items queued or running (what the queue bound applies to)."""
        return len(self._queue) + self._in_flight

    @property
    def running(self) -> bool:
        return self._executor is not None

    async def start(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.name}-worker")
        if self.policy.batching:
            self._worker = asyncio.create_task(self._run(), name=f"{self.name}-loop")

    async def stop(self) -> None:
        """Stop taking work; queued items fail with BatcherClosed; the running batch finishes."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(BatcherClosed(f"{self.name} is shutting down"))
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True)

    def retry_after(self) -> float:
        """Seconds until the queue has likely drained by one batch: the caller's Retry-After hint."""
        batches_ahead = max(1, self.depth // self.policy.max_batch_size)
        return max(1.0, round(batches_ahead * self._recent_batch_seconds, 1))

    async def submit(self, values: Sequence[T], timeout: float) -> list[R]:
        """Queue ``values`` and wait up to ``timeout`` seconds for their results, in order."""
        if self._executor is None:
            raise BatcherClosed(f"{self.name} is not running")
        if not values:
            return []
        if self.depth + len(values) > self.policy.max_queue:
            raise QueueFull(self.depth, self.policy.max_queue, self.retry_after())
        if not self.policy.batching:
            return await self._run_unbatched(list(values), timeout)
        loop = asyncio.get_running_loop()
        items = [_Item[T, R](v, self._cost(v), loop.create_future()) for v in values]
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

    def _drop(self, items: list[_Item[T, R]]) -> int:
        ids = {id(i) for i in items}
        before = len(self._queue)
        self._queue = deque(i for i in self._queue if id(i) not in ids)
        for item in items:
            item.future.cancel()
        self._report_depth()
        return before - len(self._queue)

    async def _run_unbatched(self, values: list[T], timeout: float) -> list[R]:
        assert self._executor is not None  # checked by submit
        loop = asyncio.get_running_loop()
        self._in_flight += len(values)
        self._report_depth()
        submitted = time.perf_counter()
        try:
            job = loop.run_in_executor(self._executor, self._timed_predict, values)
            try:
                results, started, seconds = await asyncio.wait_for(asyncio.shield(job), timeout)
            except TimeoutError as exc:
                raise DeadlineExceeded(f"{len(values)} item(s) not served within {timeout:g}s") from exc
        finally:
            self._in_flight -= len(values)
            self._report_depth()
        self._recent_batch_seconds = 0.8 * self._recent_batch_seconds + 0.2 * seconds
        waits = [started - submitted] * len(values)  # behind other requests, for the one worker thread
        self._observe(len(values), len(values) * max(self._cost(v) for v in values), waits, seconds)
        return list(results)

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            deadline = self._queue[0].enqueued + self.policy.max_wait_s
            while len(self._queue) < self.policy.max_batch_size and (left := deadline - time.perf_counter()) > 0:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), left)
                except TimeoutError:
                    break
                if not self._queue:
                    break
            batch = self._next_batch()
            if batch:
                await self._run_batch(batch)

    def _next_batch(self) -> list[_Item[T, R]]:
        """Plan the head of the queue and take the planned batch that holds the oldest item.

        The rest stay queued, in order, and are planned again together with whatever arrives while this batch
        runs: plans see as many items as possible, and the oldest item always goes next (nothing starves).
        """
        limit = self.policy.max_batch_size * self.policy.sort_window
        window: list[_Item[T, R]] = []
        while self._queue and len(window) < limit:
            item = self._queue.popleft()
            if not item.future.done():  # cancelled by its caller's deadline
                window.append(item)
        if not window:
            return []
        chosen = next(b for b in plan_batches([i.cost for i in window], self.policy) if 0 in b)
        taken = set(chosen)
        self._queue.extendleft(reversed([item for k, item in enumerate(window) if k not in taken]))
        self._in_flight += len(chosen)
        self._report_depth()
        return [window[k] for k in chosen]

    async def _run_batch(self, batch: list[_Item[T, R]]) -> None:
        assert self._executor is not None  # only the worker calls this, while running
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        waits = [start - i.enqueued for i in batch]
        try:
            values = [i.value for i in batch]
            results, _, seconds = await loop.run_in_executor(self._executor, self._timed_predict, values)
            if len(results) != len(batch):
                raise RuntimeError(f"predict returned {len(results)} results for {len(batch)} items")
        except Exception as exc:  # delivered to every caller of the batch; the loop keeps serving
            logger.exception("%s: batch of %d failed", self.name, len(batch))
            seconds = time.perf_counter() - start
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
        else:
            for item, result in zip(batch, results, strict=True):
                if not item.future.done():
                    item.future.set_result(result)
        finally:
            self._in_flight -= len(batch)
        self._recent_batch_seconds = 0.8 * self._recent_batch_seconds + 0.2 * seconds
        self._observe(len(batch), len(batch) * max(i.cost for i in batch), waits, seconds)
        self._report_depth()

    def _timed_predict(self, values: list[T]) -> tuple[Sequence[R], float, float]:
        """Results, start time and duration, taken in the worker thread: the time waited for it is not inference."""
        start = time.perf_counter()
        results = self._predict(values)
        return results, start, time.perf_counter() - start

    def _observe(self, size: int, padded: int, waits: Sequence[float], seconds: float) -> None:
        if self._observer is not None:
            self._observer.batch_done(size, padded, waits, seconds)

    def _report_depth(self) -> None:
        if self._observer is not None:
            self._observer.queue_depth(self.depth)
