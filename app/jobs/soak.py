"""``triage soak``: a real server under twice the load it can serve, to show that overload is answered, not queued.

First the capacity is measured closed-loop (``concurrency`` clients, one ticket per request, as fast as answers
come back). Then requests are offered open-loop at ``factor`` times that rate for ``duration_s``: each is sent on
schedule whatever happened to the earlier ones, as real traffic does. Every request must come back 200, or 429/503
with ``Retry-After``; none may be lost (a client-side error or timeout). The report gives the statuses, the latency
of the answered ones against the server's wait budget (``TRIAGE_MAX_QUEUE_WAIT_S``) and the server's resident
memory over the run.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from app.jobs.bench import load_test, load_texts, served, tree_rss_mib

EXPECTED = ("200", "429", "503")
"""Answered, or refused with a Retry-After: anything else under overload is a bug."""
Outcome = tuple[str, float, bool]
"""One request: its status (or the client error's name), its latency in seconds, whether Retry-After came back."""


@dataclass(frozen=True)
class SoakConfig:
    encoder: Path = Path("checkpoints/default/encoder")
    data: Path = Path("data/eurochef")
    duration_s: float = 60.0
    factor: float = 2.0
    capacity_s: float = 10.0
    concurrency: int = 32
    max_queue_wait_s: float = 1.0
    max_active_requests: int = 32
    """The server's TRIAGE_MAX_ACTIVE_REQUESTS (its default)."""
    request_timeout_s: float = 30.0
    out: Path = Path("bench/soak.json")


async def _offer(url: str, texts: list[str], rate: float, seconds: float, timeout: float, pid: int) -> dict[str, Any]:
    """Send ``rate`` requests per second for ``seconds``, on schedule; collect every outcome."""
    outcomes: list[Outcome] = []
    rss: list[float] = []
    limits = httpx.Limits(max_connections=1024, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:

        async def one(text: str) -> None:
            start = time.perf_counter()
            try:
                response = await client.post("/classify", json={"text": text})
                outcomes.append(
                    (str(response.status_code), time.perf_counter() - start, "retry-after" in response.headers)
                )
            except httpx.HTTPError as exc:
                outcomes.append((type(exc).__name__, time.perf_counter() - start, False))

        tasks = []
        started = time.perf_counter()
        sent = 0
        while (elapsed := time.perf_counter() - started) < seconds:
            due = int(elapsed * rate) + 1
            while sent < due:
                tasks.append(asyncio.create_task(one(texts[sent % len(texts)])))
                sent += 1
            if sent % 50 == 0 and (value := tree_rss_mib(pid)) is not None:
                rss.append(value)
            await asyncio.sleep(min(0.01, 1 / rate))
        offered_s = time.perf_counter() - started
        await asyncio.gather(*tasks)
        server_side = server_quantiles((await client.get("/metrics")).text)
    return {
        "sent": sent,
        "offered_per_s": round(sent / offered_s, 1),
        **summarise_outcomes(outcomes),
        "rss_mib": {"start": rss[0], "max": max(rss), "end": rss[-1]} if rss else None,
        "server_ms": server_side,
    }


def summarise_outcomes(outcomes: Sequence[Outcome], percentiles: Sequence[int] = (50, 99)) -> dict[str, Any]:
    """Statuses, what was lost (client errors), unexpected (not 200/429/503) or refused without Retry-After, and
    latency percentiles of the answered requests, in ms: the verdict ``soak`` and ``load-curve`` both give."""
    statuses: dict[str, int] = {}
    for status, _, _ in outcomes:
        statuses[status] = statuses.get(status, 0) + 1
    answered = np.asarray([s for status, s, _ in outcomes if status == "200"]) * 1000
    refused = [has for status, _, has in outcomes if status in ("429", "503")]
    return {
        "statuses": statuses,
        "answered": len(answered),
        "refused": len(refused),
        "lost": sum(n for status, n in statuses.items() if not status.isdigit()),
        "unexpected": sum(n for status, n in statuses.items() if status.isdigit() and status not in EXPECTED),
        "refused_without_retry_after": sum(1 for has in refused if not has),
        **{f"p{q}_ms": round(float(np.percentile(answered, q)), 1) if len(answered) else None for q in percentiles},
        "max_ms": round(float(answered.max()), 1) if len(answered) else None,
    }


def request_duration_buckets(metrics_text: str, route: str = "/classify") -> list[tuple[float, float]]:
    """(upper bound in s, cumulative count) of the server's ``triage_request_duration_seconds`` for ``route``."""
    buckets: list[tuple[float, float]] = []
    for line in metrics_text.splitlines():
        if line.startswith("triage_request_duration_seconds_bucket{") and f'route="{route}"' in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
    return sorted(buckets)


def bucket_quantile_ms(buckets: Sequence[tuple[float, float]], q: float) -> float | None:
    """The upper bound (ms) of the bucket holding the ``q`` quantile; None when unbounded or empty."""
    total = buckets[-1][1] if buckets else 0.0
    upper = next((b for b, count in buckets if total and count >= q * total), None)
    return None if upper is None or upper == float("inf") else round(upper * 1000, 1)


def server_quantiles(metrics_text: str, route: str = "/classify") -> dict[str, float | None]:
    """p50/p99 of the server's own request latency (``triage_request_duration_seconds``), from its buckets: the
    time inside the server, without the load generator's own backlog."""
    buckets = request_duration_buckets(metrics_text, route)
    return {name: bucket_quantile_ms(buckets, q) for name, q in (("p50", 0.5), ("p99", 0.99))}


def run_soak(config: SoakConfig, progress: bool = True) -> dict[str, Any]:
    texts = load_texts(config.data, 2000)
    env = {
        "TRIAGE_MAX_ACTIVE_REQUESTS": str(config.max_active_requests),
        "TRIAGE_MAX_QUEUE_WAIT_S": str(config.max_queue_wait_s),
        "TRIAGE_MAX_QUEUE": "1024",
        "TRIAGE_REQUEST_TIMEOUT_S": str(config.request_timeout_s),
    }
    pid: list[int] = []
    with served(config.encoder, env, pid=pid) as url:
        warm = asyncio.run(load_test(url, texts[:64], config.concurrency, "warm-up", progress=False))
        n = max(64, int(warm["tickets_per_s"] * config.capacity_s))
        capacity = asyncio.run(load_test(url, texts[:n], config.concurrency, "capacity", progress=progress))
        rate = config.factor * capacity["tickets_per_s"]
        load = asyncio.run(_offer(url, texts, rate, config.duration_s, config.request_timeout_s + 10, pid[0]))
    result = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "capacity_per_s": capacity["tickets_per_s"],
        "target_per_s": round(rate, 1),
        **load,
    }
    config.out.parent.mkdir(parents=True, exist_ok=True)
    config.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def format_soak(result: dict[str, Any]) -> str:
    rss = result["rss_mib"] or {}
    return "\n".join(
        [
            f"capacity {result['capacity_per_s']} tickets/s; offered {result['offered_per_s']}/s "
            f"(target {result['target_per_s']}) for {result['config']['duration_s']}s: {result['sent']} requests",
            f"statuses {result['statuses']}; lost {result['lost']}; unexpected {result['unexpected']}; "
            f"429/503 without Retry-After {result['refused_without_retry_after']}",
            f"answered p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, max {result['max_ms']} ms at the client; "
            f"inside the server p50 <= {result['server_ms']['p50']} ms, p99 <= {result['server_ms']['p99']} ms "
            f"(bucket bounds; wait budget {result['config']['max_queue_wait_s']} s)",
            f"server RSS {rss.get('start', 0):.0f} -> max {rss.get('max', 0):.0f} -> {rss.get('end', 0):.0f} MiB",
        ]
    )
