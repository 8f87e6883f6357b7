"""The batcher with a fake predict function (the seam it is built for)."""

import asyncio
import itertools
import logging
import random
import threading
import time
from collections.abc import Sequence

import pytest

from app.server import batcher as batcher_module
from app.server.batcher import (
    BatcherClosed,
    BatcherFailed,
    BatchPolicy,
    DeadlineExceeded,
    DynamicBatcher,
    QueueFull,
    company_wait,
    plan_batches,
)


class Recorder:
    """A predict function that doubles its inputs and records each batch it saw."""

    def __init__(self, delay: float = 0.0, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.delay = delay
        self.fail_on = fail_on
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()  # set once a predict call has started

    def __call__(self, items: list[int]) -> list[int]:
        self.entered.set()
        self.release.wait(5)
        self.batches.append(list(items))
        if self.delay:
            time.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in items:
            raise RuntimeError("model exploded")
        return [2 * x for x in items]


class Observer:
    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.depths: list[int] = []
        self.seconds: list[float] = []
        self.waits: list[float] = []

    def batch_done(self, size: int, padded_tokens: int, waits: Sequence[float], seconds: float) -> None:
        self.sizes.append(size)
        self.seconds.append(seconds)
        self.waits.extend(waits)

    def queue_depth(self, depth: int) -> None:
        self.depths.append(depth)


def plan_cost(batches: list[list[int]], costs: list[int], overhead: float) -> float:
    return sum(overhead + len(b) * max(costs[i] for i in b) for b in batches)


def test_plan_batches_covers_every_item_once_within_budgets() -> None:
    policy = BatchPolicy(max_batch_size=3, max_batch_tokens=100)
    costs = [50, 10, 11, 12, 40, 13]
    batches = plan_batches(costs, policy)
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert all(len(b) <= 3 for b in batches)
    assert all(len(b) * max(costs[i] for i in b) <= 100 or len(b) == 1 for b in batches)
    assert [costs[i] for i in batches[0]] == [10, 11]  # shortest first, sorted by cost


def test_plan_batches_finds_the_cheapest_split() -> None:
    """Against brute force over every split of the sorted items (the best split is contiguous there)."""
    rng = random.Random(0)
    for _ in range(200):
        costs = [rng.randint(1, 120) for _ in range(rng.randint(1, 8))]
        policy = BatchPolicy(max_batch_size=rng.randint(1, 5), max_batch_tokens=300, batch_overhead=rng.uniform(0, 150))
        order = sorted(range(len(costs)), key=costs.__getitem__)
        feasible = []
        for cuts in itertools.product([False, True], repeat=len(costs) - 1):
            batches, current = [], [order[0]]
            for cut, i in zip(cuts, order[1:], strict=True):
                if cut:
                    batches.append(current)
                    current = []
                current.append(i)
            batches.append(current)
            if all(
                len(b) <= policy.max_batch_size
                and (len(b) == 1 or len(b) * max(costs[i] for i in b) <= policy.max_batch_tokens)
                for b in batches
            ):
                feasible.append(plan_cost(batches, costs, policy.batch_overhead))
        planned = plan_batches(costs, policy)
        assert plan_cost(planned, costs, policy.batch_overhead) == pytest.approx(min(feasible))


def test_a_high_overhead_fills_batches_and_a_low_one_keeps_long_items_apart() -> None:
    costs = [5, 100, 5, 5, 100, 5, 5, 5]
    assert plan_batches(costs, BatchPolicy(max_batch_size=8, batch_overhead=1000)) == [[0, 2, 3, 5, 6, 7, 1, 4]]
    assert plan_batches(costs, BatchPolicy(max_batch_size=8, batch_overhead=10)) == [[0, 2, 3, 5, 6, 7], [1, 4]]
    equal = plan_batches([7] * 10, BatchPolicy(max_batch_size=4, batch_overhead=0))
    assert sorted(len(b) for b in equal) == [2, 4, 4]  # ties go to fewer batches


def test_an_item_over_the_token_budget_runs_alone() -> None:
    assert plan_batches([500, 5], BatchPolicy(max_batch_tokens=100)) == [[1], [0]]


def test_concurrent_submits_are_batched_and_each_caller_gets_its_own_results() -> None:
    predict, observer = Recorder(), Observer()

    async def main() -> list[list[int]]:
        batcher = DynamicBatcher(predict, BatchPolicy(max_batch_size=64, max_wait_s=0.05), observer=observer)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit([i, 100 + i], timeout=5) for i in range(20)))
        finally:
            await batcher.stop()

    results = asyncio.run(main())
    assert results == [[2 * i, 2 * (100 + i)] for i in range(20)]
    assert max(observer.sizes) > 2  # several callers shared a forward pass
    assert sum(observer.sizes) == 40


def test_the_oldest_item_goes_first_and_the_rest_are_planned_again_with_new_arrivals() -> None:
    predict = Recorder()
    predict.release.clear()  # hold the worker inside its first batch
    policy = BatchPolicy(max_batch_size=4, max_wait_s=1.0, batch_overhead=10)

    async def main() -> list[list[int]]:
        batcher = DynamicBatcher(predict, policy, cost=lambda v: v)
        await batcher.start()
        long_first = asyncio.create_task(batcher.submit([90], timeout=5))
        short = [asyncio.create_task(batcher.submit([v], timeout=5)) for v in (1, 2, 3)]
        await asyncio.sleep(0.1)  # four items queued: planned as [1, 2, 3] and [90]; [90] is the oldest
        later = asyncio.create_task(batcher.submit([4], timeout=5))
        await asyncio.sleep(0.05)
        predict.release.set()
        results = await asyncio.gather(long_first, *short, later)
        await batcher.stop()
        return results

    assert asyncio.run(main()) == [[180], [2], [4], [6], [8]]
    assert predict.batches == [[90], [1, 2, 3, 4]]  # the short ones waited and shared a batch with the newcomer


def test_full_queue_raises_queue_full_with_retry_hint() -> None:
    predict = Recorder()
    predict.release.clear()  # hold the worker so the queue fills up

    async def main() -> None:
        batcher = DynamicBatcher(predict, BatchPolicy(max_batch_size=2, max_queue=4, max_wait_s=0))
        await batcher.start()
        first = asyncio.create_task(batcher.submit([1, 2, 3, 4], timeout=5))
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull) as info:
            await batcher.submit([5], timeout=5)
        assert info.value.retry_after >= 1
        predict.release.set()
        assert await first == [2, 4, 6, 8]
        await batcher.stop()

    asyncio.run(main())


def test_load_is_shed_by_expected_wait_not_only_by_count() -> None:
    """At 20 ms per item, a 0.2 s budget admits about ten queued items; the rest get QueueFull at once, with the
    expected wait that refused them."""
    predict = Recorder(delay=0.04)  # batches of 2: 20 ms per item
    policy = BatchPolicy(max_batch_size=2, max_queue=1000, max_wait_s=0, max_queue_wait_s=0.2)

    async def main() -> tuple[list[float], list[QueueFull]]:
        batcher = DynamicBatcher(predict, policy)
        await batcher.start()
        assert batcher.expected_wait(5) is None  # nothing measured yet: no shedding by time
        await batcher.submit([0, 0], timeout=5)  # one measured batch
        assert batcher.expected_wait(1) == pytest.approx(0.02, rel=0.5)

        async def one(value: int) -> float | QueueFull:
            started = time.monotonic()
            try:
                await batcher.submit([value], timeout=5)
            except QueueFull as exc:
                return exc
            return time.monotonic() - started

        outcomes = await asyncio.gather(*(one(i) for i in range(60)))
        await batcher.stop()
        return [o for o in outcomes if isinstance(o, float)], [o for o in outcomes if isinstance(o, QueueFull)]

    served, refused = asyncio.run(main())
    assert 1 <= len(served) <= 20 and len(refused) == 60 - len(served)  # ~10 fit a 0.2 s budget at 20 ms each
    assert all(r.expected_wait is not None and r.expected_wait > 0.2 and r.retry_after >= 1 for r in refused)


def test_deadline_drops_queued_items_and_never_hangs() -> None:
    predict = Recorder()

    async def main() -> None:
        batcher = DynamicBatcher(predict, BatchPolicy(max_batch_size=10, max_wait_s=1.0))
        await batcher.start()
        with pytest.raises(DeadlineExceeded):
            await batcher.submit([1], timeout=0.05)
        assert batcher.depth == 0
        await batcher.stop()

    asyncio.run(main())
    assert predict.batches == []  # the expired item never reached the model


def test_predict_failure_reaches_only_its_batch() -> None:
    predict = Recorder(fail_on=13)

    async def main() -> None:
        batcher = DynamicBatcher(predict, BatchPolicy(max_batch_size=1, max_wait_s=0))
        await batcher.start()
        bad, good = await asyncio.gather(
            batcher.submit([13], timeout=5), batcher.submit([7], timeout=5), return_exceptions=True
        )
        assert isinstance(bad, RuntimeError) and good == [14]
        assert await batcher.submit([8], timeout=5) == [16]  # the worker keeps serving
        await batcher.stop()

    asyncio.run(main())


def test_unbatched_mode_runs_one_predict_per_request() -> None:
    predict, observer = Recorder(delay=0.1), Observer()

    async def main() -> float:
        batcher = DynamicBatcher(predict, BatchPolicy(batching=False), observer=observer)
        await batcher.start()
        start = time.perf_counter()
        await asyncio.gather(*(batcher.submit([i], timeout=5) for i in range(5)))
        seconds = time.perf_counter() - start
        await batcher.stop()
        return seconds

    wall = asyncio.run(main())
    assert sorted(predict.batches) == [[0], [1], [2], [3], [4]]
    # the worker ran them one after another; each call's inference time excludes its wait for the worker,
    # which is reported as queue wait instead
    # (bounds the 0.1 s sleeps guarantee, whatever the machine's load)
    assert sum(observer.seconds) <= wall
    assert all(s >= 0.1 for s in observer.seconds)
    assert max(observer.waits) >= 0.4  # the last request waited for the four before it


def test_submit_before_start_and_after_stop_is_refused() -> None:
    async def main() -> None:
        batcher = DynamicBatcher(Recorder(), BatchPolicy())
        with pytest.raises(BatcherClosed):
            await batcher.submit([1], timeout=1)
        await batcher.start()
        await batcher.stop()
        with pytest.raises(BatcherClosed):
            await batcher.submit([1], timeout=1)

    asyncio.run(main())


def test_invalid_policy_is_rejected() -> None:
    with pytest.raises(ValueError, match="positive"):
        BatchPolicy(max_batch_size=0)


async def wait_entered(predict: Recorder) -> None:
    """Until the worker thread is inside ``predict`` (held there while ``predict.release`` is clear)."""
    assert await asyncio.to_thread(predict.entered.wait, 5), "predict was never called"


def failing_planner(monkeypatch: pytest.MonkeyPatch, poison: int | None = None) -> None:
    """Plant a bug in planning: it raises for batches holding an item of cost ``poison`` (every batch if None)."""
    plan = batcher_module.plan_batches

    def buggy(costs: Sequence[int], policy: BatchPolicy) -> list[list[int]]:
        if poison is None or poison in costs:
            raise RuntimeError("planner bug")
        return plan(costs, policy)

    monkeypatch.setattr(batcher_module, "plan_batches", buggy)


def test_stop_answers_queued_callers_at_once_and_lets_the_running_batch_deliver() -> None:
    predict = Recorder()
    predict.release.clear()  # hold the worker inside the first batch

    async def main() -> None:
        batcher = DynamicBatcher(predict, BatchPolicy(max_batch_size=2, max_wait_s=0))
        await batcher.start()
        assert batcher.healthy
        running = asyncio.create_task(batcher.submit([1, 2], timeout=5))
        await wait_entered(predict)
        queued = [asyncio.create_task(batcher.submit([v], timeout=5)) for v in (3, 4)]
        await asyncio.sleep(0.05)
        assert batcher.depth == 4
        stopping = asyncio.create_task(batcher.stop(drain_timeout=0))
        answers = await asyncio.gather(*queued, return_exceptions=True)
        assert all(isinstance(a, BatcherClosed) for a in answers), answers
        assert not running.done()  # still inside predict, not cancelled
        assert not batcher.healthy
        with pytest.raises(BatcherClosed, match="shutting down"):
            await batcher.submit([5], timeout=5)
        predict.release.set()
        assert await running == [2, 4]
        await stopping
        assert not batcher.running and batcher.depth == 0

    asyncio.run(main())
    assert predict.batches == [[1, 2]]


def test_stop_drains_the_queue_before_closing() -> None:
    predict, observer = Recorder(), Observer()
    predict.release.clear()

    async def main() -> list[list[int]]:
        batcher = DynamicBatcher(predict, BatchPolicy(max_batch_size=1, max_wait_s=0), observer=observer)
        await batcher.start()
        callers = [asyncio.create_task(batcher.submit([v], timeout=10)) for v in (1, 2, 3)]
        await wait_entered(predict)
        stopping = asyncio.create_task(batcher.stop(drain_timeout=10))
        await asyncio.sleep(0.05)
        with pytest.raises(BatcherClosed):  # refused at once, while the queue drains
            await batcher.submit([4], timeout=10)
        predict.release.set()
        results = await asyncio.gather(*callers)
        await stopping
        return results

    assert asyncio.run(main()) == [[2], [4], [6]]
    assert predict.batches == [[1], [2], [3]]
    assert observer.sizes == [1, 1, 1] and observer.depths[-1] == 0


def test_a_crash_in_the_worker_loop_fails_its_items_is_logged_and_the_loop_restarts(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    failing_planner(monkeypatch, poison=666)
    predict = Recorder()

    async def main() -> None:
        batcher = DynamicBatcher(predict, BatchPolicy(max_batch_size=4, max_wait_s=0), cost=lambda v: v)
        await batcher.start()
        with pytest.raises(RuntimeError, match="planner bug"):
            await batcher.submit([666], timeout=5)
        assert batcher.restarts == 1 and batcher.healthy and batcher.depth == 0
        assert await batcher.submit([7, 8], timeout=5) == [14, 16]  # the restarted loop serves
        await batcher.stop()

    with caplog.at_level(logging.ERROR, logger="app.server.batcher"):
        asyncio.run(main())
    crashes = [r for r in caplog.records if "worker loop crashed" in r.getMessage()]
    assert len(crashes) == 1 and crashes[0].exc_info is not None
    assert predict.batches == [[7, 8]]


def test_an_observer_that_raises_loses_no_results_and_does_not_stop_the_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(Observer):
        def batch_done(self, size: int, padded_tokens: int, waits: Sequence[float], seconds: float) -> None:
            raise ValueError("metrics bug")

        def queue_depth(self, depth: int) -> None:
            raise ValueError("metrics bug")

    async def main() -> list[list[int]]:
        batcher = DynamicBatcher(Recorder(), BatchPolicy(max_batch_size=1, max_wait_s=0), observer=Broken())
        await batcher.start()
        results = [await batcher.submit([v], timeout=5) for v in (1, 2, 3)]
        assert batcher.healthy and batcher.restarts == 0  # ignored, not a crash
        await batcher.stop()
        return results

    with caplog.at_level(logging.ERROR, logger="app.server.batcher"):
        assert asyncio.run(main()) == [[2], [4], [6]]
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(logged) == 1 and "observer" in logged[0].getMessage()  # once, not once per batch


def test_repeated_crashes_mark_the_batcher_unhealthy_and_fail_queued_callers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failing_planner(monkeypatch)
    predict = Recorder()

    async def main() -> None:
        policy = BatchPolicy(max_batch_size=1, sort_window=1, max_wait_s=0)  # each crash takes one caller's item
        batcher = DynamicBatcher(predict, policy, max_restarts=2, restart_window_s=3600)
        await batcher.start()
        answers = await asyncio.gather(*(batcher.submit([v], timeout=5) for v in range(4)), return_exceptions=True)
        assert [type(a) for a in answers] == [RuntimeError, RuntimeError, RuntimeError, BatcherFailed]
        assert batcher.restarts == 2 and not batcher.healthy and batcher.depth == 0
        with pytest.raises(BatcherClosed, match="crashed 3 times"):  # BatcherFailed is a BatcherClosed (a 503)
            await batcher.submit([9], timeout=5)
        await batcher.stop()
        assert not batcher.running

    asyncio.run(main())
    assert predict.batches == []


def test_unbatched_overload_raises_queue_full_instead_of_growing_a_backlog() -> None:
    predict = Recorder()
    predict.release.clear()

    async def main() -> None:
        batcher = DynamicBatcher(predict, BatchPolicy(batching=False, max_queue=2))
        await batcher.start()
        with pytest.raises(DeadlineExceeded):  # taken at once, then held in predict past its deadline
            await batcher.submit([1], timeout=0.05)
        await wait_entered(predict)
        with pytest.raises(DeadlineExceeded):  # queued behind it, and dropped
            await batcher.submit([2], timeout=0.05)
        assert batcher.depth == 1  # the running call still occupies the worker
        accepted = asyncio.create_task(batcher.submit([3], timeout=5))
        await asyncio.sleep(0.05)
        assert batcher.depth == 2
        with pytest.raises(QueueFull) as info:
            await batcher.submit([4], timeout=5)
        assert (info.value.depth, info.value.capacity) == (2, 2) and info.value.retry_after >= 1
        predict.release.set()
        assert await accepted == [6]
        assert batcher.depth == 0
        await batcher.stop()

    asyncio.run(main())
    assert predict.batches == [[1], [3]]


def test_an_unbatched_caller_that_times_out_leaves_no_work_queued() -> None:
    predict, observer = Recorder(), Observer()
    predict.release.clear()

    async def main() -> None:
        batcher = DynamicBatcher(predict, BatchPolicy(batching=False), observer=observer)
        await batcher.start()
        first = asyncio.create_task(batcher.submit([1, 2], timeout=5))
        await wait_entered(predict)
        with pytest.raises(DeadlineExceeded, match="1 still queued were dropped"):
            await batcher.submit([3], timeout=0.05)
        assert batcher.depth == 2
        predict.release.set()
        assert await first == [2, 4]
        assert batcher.depth == 0
        await batcher.stop()  # waits for the worker thread: anything left in it would run now

    asyncio.run(main())
    assert predict.batches == [[1, 2]]  # the expired request never reached the model
    assert observer.sizes == [2] and observer.depths[-1] == 0


def test_a_cancelled_caller_is_removed_from_the_queue() -> None:
    predict = Recorder()

    async def main() -> None:
        batcher = DynamicBatcher(predict, BatchPolicy(max_batch_size=10, max_wait_s=60))
        await batcher.start()
        caller = asyncio.create_task(batcher.submit([1, 2], timeout=5))
        await asyncio.sleep(0.01)
        assert batcher.depth == 2
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert batcher.depth == 0
        await batcher.stop()

    asyncio.run(main())
    assert predict.batches == []


def test_invalid_restart_limits_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_restarts must be >= 0"):
        DynamicBatcher(Recorder(), BatchPolicy(), max_restarts=-1)


class Clock:
    """A predict function whose every call takes ``seconds`` whatever the batch (a pass that is all fixed cost),
    recording each call's items, start and end (``time.perf_counter``); ``gate`` cleared holds calls back."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls: list[tuple[list[int], float, float]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, items: list[int]) -> list[int]:
        self.entered.set()
        self.gate.wait(5)
        start = time.perf_counter()
        time.sleep(self.seconds)
        self.calls.append((list(items), start, time.perf_counter()))
        return [2 * x for x in items]

    @property
    def sizes(self) -> list[int]:
        return [len(items) for items, _, _ in self.calls]


async def offer(batcher: DynamicBatcher[int, int], values: Sequence[int], spacing: float) -> dict[int, float]:
    """Open-loop arrivals: submit each value alone, ``spacing`` seconds apart, whatever the answers; return when
    all are answered (each must be, within 3 s: far less than the 5 s ``max_wait_s`` of the tests that use this)."""
    sent: dict[int, float] = {}
    tasks = []
    for value in values:
        sent[value] = time.perf_counter()
        tasks.append(asyncio.create_task(batcher.submit([value], timeout=3)))
        await asyncio.sleep(spacing)
    assert await asyncio.gather(*tasks) == [[2 * v] for v in values]
    return sent


def test_company_wait_pays_only_for_dense_arrivals_while_the_fixed_cost_dominates() -> None:
    # a pass costs 0.1 s fixed (1000 units at 0.1 ms) + 0.1 ms per item
    assert company_wait(1, 1, 1000, 1e-4, gap=0.001) == pytest.approx(1e-4 * 999 / 2)  # the next item comes soon
    assert company_wait(1, 1, 1000, 1e-4, gap=0.2) == 0  # sparse arrivals: run the lone item now
    assert company_wait(3, 1, 1000, 1e-4, gap=0.001) < company_wait(1, 1, 1000, 1e-4, gap=0.001)  # less as it fills
    assert company_wait(10, 100, 1000, 1e-4, gap=0.0) == 0  # the queued work already amortises the fixed cost
    assert company_wait(1, 1, 0, 1e-4, gap=0.0) == 0  # no fixed cost: a bigger batch saves nothing


def test_a_lone_request_on_an_idle_worker_is_not_held_when_waiting_cannot_pay() -> None:
    """Instant predict calls: the fixed cost is nothing next to the 0.2 s between arrivals, so each lone request
    runs at once instead of waiting the 60 s ``max_wait_s`` (which would miss its 5 s deadline)."""
    predict = Recorder()

    async def main() -> None:
        batcher = DynamicBatcher(predict, BatchPolicy(max_batch_size=4, max_wait_s=60))
        await batcher.start()
        assert await batcher.submit([1, 2, 3, 4], timeout=5) == [2, 4, 6, 8]  # a full batch runs at once; measured
        for value in (5, 6, 7):
            await asyncio.sleep(0.2)
            assert await batcher.submit([value], timeout=5) == [2 * value]
        await batcher.stop()

    asyncio.run(main())
    assert predict.batches == [[1, 2, 3, 4], [5], [6], [7]]


@pytest.mark.parametrize(("overhead", "pays"), [(1000.0, True), (0.0, False)])
def test_an_idle_worker_waits_for_dense_arrivals_only_when_the_fixed_cost_makes_it_pay(
    overhead: float, pays: bool
) -> None:
    """Arrivals 20 ms apart, passes of 0.5 s whatever their size. With a large fixed cost the first arrival after
    an idle spell waits for the next ones (about 0.25 s at most, not the 5 s ``max_wait_s``); with none it runs
    alone at once and the others follow in one batch."""
    predict = Clock(0.5)

    async def main() -> None:
        policy = BatchPolicy(max_batch_size=8, max_wait_s=5, batch_overhead=overhead)
        batcher = DynamicBatcher(predict, policy)
        await batcher.start()
        await asyncio.gather(*(batcher.submit([v], timeout=3) for v in range(8)))  # a full batch: measured
        await offer(batcher, range(10, 18), spacing=0.02)
        await batcher.stop()

    asyncio.run(main())
    assert predict.sizes[0] == 8 and sum(predict.sizes) == 16
    if pays:
        assert predict.sizes[1] >= 2
    else:
        assert predict.sizes[1:] == [1, 7]


def test_a_busy_worker_starts_the_next_batch_the_moment_the_pass_returns() -> None:
    """Items queued while a pass runs go next at once, not after ``max_wait_s`` (60 s: their 5 s deadline would
    pass first)."""
    predict = Clock(0.0)
    predict.gate.clear()  # hold the first pass

    async def main() -> None:
        batcher = DynamicBatcher(predict, BatchPolicy(max_batch_size=4, max_wait_s=60))
        await batcher.start()
        first = asyncio.create_task(batcher.submit([0, 1, 2, 3], timeout=5))  # a full batch: runs at once
        assert await asyncio.to_thread(predict.entered.wait, 5)
        queued = [asyncio.create_task(batcher.submit([v], timeout=5)) for v in (10, 11, 12)]
        await asyncio.sleep(0.05)
        assert batcher.depth == 7
        predict.gate.set()
        assert await asyncio.gather(first, *queued) == [[0, 2, 4, 6], [20], [22], [24]]
        await batcher.stop()

    asyncio.run(main())
    assert [items for items, _, _ in predict.calls] == [[0, 1, 2, 3], [10, 11, 12]]
    (_, _, first_end), (_, second_start, _) = predict.calls
    assert second_start - first_end < 1.0  # an event-loop hop, far below max_wait_s


def test_batches_grow_with_the_load_and_the_worker_never_idles_while_items_wait() -> None:
    """Passes of 50 ms: arrivals 0.25 s apart run alone; arrivals 5 ms apart queue during each pass and go in
    the next one, which starts when the pass returns."""
    predict = Clock(0.05)

    async def main() -> tuple[dict[int, float], dict[int, float]]:
        batcher = DynamicBatcher(predict, BatchPolicy(max_batch_size=32, max_wait_s=5))
        await batcher.start()
        await batcher.submit(list(range(1000, 1032)), timeout=3)  # a full batch: runs at once; measured
        light = await offer(batcher, range(8), spacing=0.25)
        heavy = await offer(batcher, range(100, 160), spacing=0.005)
        await batcher.stop()
        return light, heavy

    light, heavy = asyncio.run(main())
    calls = predict.calls[1:]
    light_sizes = [len(items) for items, _, _ in calls if items[0] in light]
    heavy_sizes = [len(items) for items, _, _ in calls if items[0] in heavy]
    assert sum(light_sizes) == 8 and sum(heavy_sizes) == 60
    assert sum(light_sizes) / len(light_sizes) <= 1.5  # (all 1 unless the machine stalls)
    assert max(heavy_sizes) >= 4 and len(heavy_sizes) <= 30
    sent = {**light, **heavy}
    for (_, _, end), (items, start, _) in itertools.pairwise(calls):
        if min(sent[v] for v in items) < end:  # items were waiting when the previous pass returned
            assert start - end < 0.5, (items, start - end)  # no wait for company (max_wait_s is 5 s)
