"""``triage load-curve``: latency against offered load, open loop, on a real server: does batching cost latency?

One ``triage serve`` subprocess on loopback (LLM tier off, no load shedding: the batcher's own latency is measured),
and in order:
1. the forward time of one full batch: ``full_batches`` requests of ``max_batch_size`` tickets each, one after
   another on the idle server, timed by the server itself (``triage_inference_seconds``: the forward passes those
   tickets took; the planner splits them only where its cost model says that is cheaper than one padded pass);
2. the capacity, closed loop: ``concurrency`` clients, one ticket per request, as fast as answers come back;
3. each fraction of that capacity, open loop: ``requests_per_level`` one-ticket requests with exponential gaps
   (Poisson arrivals), each sent on schedule whatever happened to the earlier ones. Latency runs from the
   scheduled send time to the answer (a late client cannot hide queueing: no coordinated omission).

Every request must come back 200, or 429/503 with ``Retry-After``; none may be lost. The acceptance figure is the
p99 at half of capacity divided by the full-batch forward time (target: <= 2). Levels above capacity have no
steady state: their queue, and so their latency, grows with ``requests_per_level``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from tqdm.auto import tqdm

from app.jobs.bench import load_test, load_texts, random_mdeberta_checkpoint, served
from app.jobs.soak import Outcome, bucket_quantile_ms, request_duration_buckets, summarise_outcomes

ACCEPTANCE_FRACTION = 0.5
ACCEPTANCE_RATIO = 2.0
"""At half of the measured capacity, p99 <= 2 x the forward time of one full batch."""
DEFAULT_FRACTIONS = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.2)


@dataclass(frozen=True)
class LoadCurveConfig:
    architecture: str = "checkpoint"
    encoder: Path = Path("checkpoints/default/encoder")
    data: Path = Path("data/eurochef")
    dtype: str = "auto"
    threads: int | None = None
    max_batch_size: int = 32
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS
    """Offered load as fractions of the measured capacity; 0.5 (the acceptance level) is always added."""
    requests_per_level: int = 500
    capacity_requests: int = 0
    """Requests of the closed-loop capacity run; 0: about ten seconds' worth (from the warm-up's speed)."""
    concurrency: int = 0
    """Clients of the capacity run; 0: twice ``max_batch_size`` (a full batch queued while one runs)."""
    full_batches: int = 8
    seed: int = 0
    out: Path = Path("bench/load_curve.json")


@dataclass
class Counters:
    """The server's counters that one phase changes (read from /metrics before and after it)."""

    forward_s: float = 0.0
    passes: float = 0.0
    tickets: float = 0.0
    queue_wait_s: float = 0.0
    waits: float = 0.0
    buckets: tuple[tuple[float, float], ...] = ()
    """(upper bound s, cumulative count) of /classify's request duration."""

    @classmethod
    def parse(cls, metrics_text: str) -> Counters:
        values: dict[str, float] = {}
        for line in metrics_text.splitlines():
            name, _, value = line.rpartition(" ")
            if not line.startswith("#") and 'tier="encoder"' in name:
                values[name.split("{", 1)[0]] = float(value)
        return cls(
            forward_s=values.get("triage_inference_seconds_sum", 0.0),
            passes=values.get("triage_inference_seconds_count", 0.0),
            tickets=values.get("triage_batch_size_sum", 0.0),
            queue_wait_s=values.get("triage_queue_wait_seconds_sum", 0.0),
            waits=values.get("triage_queue_wait_seconds_count", 0.0),
            buckets=tuple(request_duration_buckets(metrics_text)),
        )

    def __sub__(self, before: Counters) -> Counters:
        earlier = dict(before.buckets)
        return Counters(
            self.forward_s - before.forward_s,
            self.passes - before.passes,
            self.tickets - before.tickets,
            self.queue_wait_s - before.queue_wait_s,
            self.waits - before.waits,
            tuple((le, count - earlier.get(le, 0.0)) for le, count in self.buckets),
        )

    def quantile_bound_ms(self, q: float) -> float | None:
        """The upper bound of the bucket holding the ``q`` quantile of the server-side latency (None: unbounded)."""
        return bucket_quantile_ms(self.buckets, q)


async def _counters(client: httpx.AsyncClient) -> Counters:
    return Counters.parse((await client.get("/metrics")).text)


async def measure_full_batch(url: str, texts: Sequence[str], batch: int, repeats: int) -> dict[str, Any]:
    """Forward seconds of ``batch`` tickets, by the server's clock: ``repeats`` requests of ``batch`` tickets, one
    at a time on the idle server."""
    async with httpx.AsyncClient(base_url=url, timeout=600.0) as client:
        before = await _counters(client)
        for k in range(repeats):
            chunk = [texts[(k * batch + i) % len(texts)] for i in range(batch)]
            response = await client.post("/classify", json={"tickets": [{"text": t} for t in chunk]})
            response.raise_for_status()
        spent = await _counters(client) - before
    if spent.tickets != batch * repeats or spent.passes < repeats:
        raise RuntimeError(
            f"the server counted {spent.tickets:g} tickets in {spent.passes:g} passes, not {batch * repeats}"
        )
    return {
        "tickets": batch,
        "forward_ms": round(1000 * spent.forward_s / repeats, 2),
        "passes_per_batch": round(spent.passes / repeats, 2),
        "repeats": repeats,
    }


def poisson_schedule(rate: float, n: int, seed: int) -> np.ndarray:
    """Send times (seconds from the start) of ``n`` Poisson arrivals at ``rate`` per second; the first at 0."""
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, size=n)
    gaps[0] = 0.0
    return np.cumsum(gaps)


async def offer_level(
    client: httpx.AsyncClient, texts: Sequence[str], rate: float, n: int, seed: int, label: str, progress: bool
) -> dict[str, Any]:
    """Open loop: ``n`` one-ticket requests at Poisson times of mean ``rate``/s; every outcome and its latency from
    the scheduled send time."""
    schedule = poisson_schedule(rate, n, seed)
    outcomes: list[Outcome] = []
    bar = tqdm(total=n, desc=label, unit="req", disable=not progress)
    lateness: list[float] = []

    async def one(text: str, due: float) -> None:
        try:
            response = await client.post("/classify", json={"text": text})
            outcomes.append((str(response.status_code), time.perf_counter() - due, "retry-after" in response.headers))
        except httpx.HTTPError as exc:
            outcomes.append((type(exc).__name__, time.perf_counter() - due, False))
        bar.update(1)

    before = await _counters(client)
    tasks = []
    start = time.perf_counter()
    for k, offset in enumerate(schedule):
        due = start + float(offset)
        if (ahead := due - time.perf_counter()) > 0:
            await asyncio.sleep(ahead)
        lateness.append(time.perf_counter() - due)
        tasks.append(asyncio.create_task(one(texts[(seed + k) % len(texts)], due)))
    sent_s = time.perf_counter() - start
    await asyncio.gather(*tasks)
    spent = await _counters(client) - before
    bar.close()
    return {
        "target_per_s": round(rate, 2),
        "offered_per_s": round((n - 1) / sent_s, 2) if n > 1 and sent_s > 0 else round(rate, 2),
        "sent": n,
        **summarise_outcomes(outcomes, percentiles=(50, 90, 99)),
        "server_p50_le_ms": spent.quantile_bound_ms(0.5),
        "server_p99_le_ms": spent.quantile_bound_ms(0.99),
        "mean_batch_size": round(spent.tickets / spent.passes, 2) if spent.passes else None,
        "mean_queue_wait_ms": round(1000 * spent.queue_wait_s / spent.waits, 2) if spent.waits else None,
        "forward_busy": round(spent.forward_s / max(sent_s, 1e-9), 3),
        "send_late_p99_ms": round(float(np.percentile(lateness, 99)) * 1000, 2),
    }


async def offer_levels(
    url: str, texts: Sequence[str], capacity: float, config: LoadCurveConfig, progress: bool
) -> list[dict[str, Any]]:
    levels = []
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=url, timeout=600.0, limits=limits) as client:
        for k, fraction in enumerate(fractions_of(config)):
            label = f"{fraction:g} x capacity"
            level = await offer_level(
                client, texts, fraction * capacity, config.requests_per_level, config.seed + k, label, progress
            )
            levels.append({"fraction": fraction, **level})
    return levels


def fractions_of(config: LoadCurveConfig) -> list[float]:
    return sorted({*config.fractions, ACCEPTANCE_FRACTION})


def run_load_curve(config: LoadCurveConfig, progress: bool = True) -> dict[str, Any]:
    """Measure, print a table, write JSON and a PNG; returns the result."""
    if config.requests_per_level < 1 or config.full_batches < 1 or not all(f > 0 for f in config.fractions):
        raise ValueError(f"requests_per_level, full_batches and fractions must be positive: {config}")
    checkpoint = config.encoder
    if config.architecture == "mdeberta-v3-base":
        checkpoint = random_mdeberta_checkpoint(config.encoder)
    concurrency = config.concurrency or 2 * config.max_batch_size
    texts = load_texts(config.data, 2000, config.seed)
    env = {"TRIAGE_DTYPE": config.dtype, "TRIAGE_MAX_BATCH_SIZE": str(config.max_batch_size)}
    if config.threads:
        env["TRIAGE_TORCH_THREADS"] = str(config.threads)
    with served(checkpoint, env) as url:
        warm = asyncio.run(load_test(url, texts[: 2 * concurrency], concurrency, "warm-up", progress=False))
        full = asyncio.run(measure_full_batch(url, texts, config.max_batch_size, config.full_batches))
        n = config.capacity_requests or max(2 * concurrency, int(10 * warm["tickets_per_s"]))
        stream = [texts[i % len(texts)] for i in range(n)]
        closed = asyncio.run(load_test(url, stream, concurrency, "capacity (closed loop)", progress))
        if closed["failures"]:
            raise RuntimeError(f"the capacity run got failures: {closed['failures']}")
        capacity = float(closed["tickets_per_s"])
        levels = asyncio.run(offer_levels(url, texts, capacity, config, progress))
    half = next(level for level in levels if level["fraction"] == ACCEPTANCE_FRACTION)
    ratio = round(half["p99_ms"] / full["forward_ms"], 3) if half["p99_ms"] is not None else None
    result: dict[str, Any] = {
        "config": {
            k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
            for k, v in asdict(config).items()
        },
        "checkpoint": str(checkpoint),
        "weights": "random (speed only)" if config.architecture == "mdeberta-v3-base" else "trained",
        "cpu_count": os.cpu_count(),
        "full_batch": full,
        "capacity": {
            "tickets_per_s": capacity,
            "concurrency": concurrency,
            "requests": n,
            "mean_batch_size": closed["mean_batch_size"],  # since start-up: warm-up and full batches included
        },
        "levels": levels,
        "acceptance": {
            "fraction": ACCEPTANCE_FRACTION,
            "p99_ms": half["p99_ms"],
            "full_batch_forward_ms": full["forward_ms"],
            "p99_over_full_batch": ratio,
            "target": ACCEPTANCE_RATIO,
            "met": ratio is not None and ratio <= ACCEPTANCE_RATIO,
        },
    }
    config.out.parent.mkdir(parents=True, exist_ok=True)
    config.out.write_text(json.dumps(result, indent=2) + "\n")
    plot_load_curve(result, config.out.with_suffix(".png"))
    return result


def format_load_curve(result: dict[str, Any]) -> str:
    cfg, full, acc = result["config"], result["full_batch"], result["acceptance"]
    header = (
        f"{'load':>6}{'offered/s':>11}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'max ms':>10}"
        f"{'batch':>8}{'ok':>7}{'refused':>9}{'lost':>6}"
    )
    rows = [
        f"{level['fraction']:>6.2f}{level['offered_per_s']:>11.1f}{_ms(level['p50_ms'])}{_ms(level['p90_ms'])}"
        f"{_ms(level['p99_ms'])}{_ms(level['max_ms'])}{level['mean_batch_size'] or 0:>8.1f}{level['answered']:>7}"
        f"{level['refused']:>9}{level['lost']:>6}"
        for level in result["levels"]
    ]
    ratio = acc["p99_over_full_batch"]
    return "\n".join(
        [
            f"architecture: {cfg['architecture']} ({result['weights']}), dtype {cfg['dtype']}, max batch "
            f"{cfg['max_batch_size']}, {cfg['requests_per_level']} Poisson requests per level",
            f"capacity {result['capacity']['tickets_per_s']:.1f} tickets/s (closed loop, concurrency "
            f"{result['capacity']['concurrency']}); full batch of {full['tickets']}: {full['forward_ms']:.2f} ms "
            f"forward ({full['passes_per_batch']:g} pass(es))",
            header,
            *rows,
            f"p99 at {acc['fraction']:.0%} of capacity / full-batch forward time = {acc['p99_ms']} / "
            f"{acc['full_batch_forward_ms']} = {'n/a' if ratio is None else f'{ratio:.2f}'} "
            f"(target <= {acc['target']:g}: {'met' if acc['met'] else 'NOT met'})",
        ]
    )


def _ms(value: float | None) -> str:
    return f"{'-':>10}" if value is None else f"{value:>10.1f}"


def plot_load_curve(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    levels = result["levels"]
    x = [level["fraction"] for level in levels]
    full = result["full_batch"]["forward_ms"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    for key, style in (("p50_ms", "o-"), ("p90_ms", "s-"), ("p99_ms", "^-")):
        points = [(f, level[key]) for f, level in zip(x, levels, strict=True) if level[key] is not None]
        left.plot([p[0] for p in points], [p[1] for p in points], style, label=key.removesuffix("_ms"))
    left.axhline(full, color="#2a7", linestyle="--", label=f"1x full-batch forward ({full:.1f} ms)")
    left.axhline(2 * full, color="#c55", linestyle="--", label=f"2x full-batch forward ({2 * full:.1f} ms)")
    left.axvline(ACCEPTANCE_FRACTION, color="#888", linestyle=":", linewidth=1)
    left.set_yscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    left.yaxis.set_major_formatter(plain)
    left.yaxis.set_minor_formatter(plain)
    left.tick_params(axis="y", which="minor", labelsize=7)
    left.set_xlabel("offered load (fraction of closed-loop capacity, Poisson arrivals)")
    left.set_ylabel("latency at the client (ms)")
    cap = result["capacity"]["tickets_per_s"]
    left.set_title(
        f"{result['config']['architecture']} ({result['weights']}), capacity {cap:.0f} tickets/s", fontsize=10
    )
    left.legend(fontsize=8)
    right.plot(x, [level["mean_batch_size"] or 0 for level in levels], "o-", color="#47a")
    right.axhline(result["config"]["max_batch_size"], color="#888", linestyle=":", linewidth=1)
    right.set_xlabel("offered load (fraction of capacity)")
    right.set_ylabel("mean tickets per forward pass")
    right.set_title(f"batch size (max {result['config']['max_batch_size']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
