"""The batcher with a fake predict function (the seam it is built for)."""

import asyncio
import itertools
import random
import threading
import time
from collections.abc import Sequence

import pytest

from app.server.batcher import (
    BatcherClosed,
    BatchPolicy,
    DeadlineExceeded,
    DynamicBatcher,
    QueueFull,
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

    def __call__(self, items: list[int]) -> list[int]:
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
