"""``triage bench``: raw encoder throughput vs the same encoder served over real HTTP, batched and unbatched.

All three are measured in one run on one machine, so their ratios mean something even on noisy machines:
- raw: ``EncoderClassifier.predict_ids`` on the ticket stream in arrival order at each fixed batch size (the
  best is "raw"), and planned the server's way (windows of ``max_batch_size`` tickets split by ``plan_batches``:
  the stricter reference, which isolates what HTTP and queueing cost);
- served: a real ``triage serve`` subprocess on loopback, ``concurrency`` clients each sending one ticket per
  request over keep-alive connections;
- unbatched: the same server with ``TRIAGE_BATCHING=false`` (one forward pass per request).
The servers run without the LLM tier (``TRIAGE_LLM_BACKEND=none``): escalations would share the encoder's
processor, and the raw figure has none.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

RANDOM_MDEBERTA_DIR = Path("bench/mdeberta-v3-base-random")
MDEBERTA_VOCAB = 250_102


@dataclass(frozen=True)
class BenchConfig:
    architecture: str = "checkpoint"
    encoder: Path = Path("checkpoints/default/encoder")
    concurrency: int = 32
    requests: int = 256
    raw_batch_sizes: tuple[int, ...] = (1, 8, 16, 32, 64)
    dtype: str = "auto"
    threads: int | None = None
    out: Path = Path("bench/results.json")
    data: Path = Path("data/eurochef")
    max_batch_size: int = 32


def random_mdeberta_checkpoint(tokenizer_from: Path, out: Path = RANDOM_MDEBERTA_DIR) -> Path:
    """The mDeBERTa-v3-base architecture (250k vocabulary, 278M parameters) with random weights: speed only.

    The tokenizer is the ``tokenizer_from`` checkpoint's; token ids stay below the 250k vocabulary, so the
    compute per token is the real model's.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from models.checkpoint import Manifest, atomic_folder, read_manifest
    from models.tiny import mdeberta_v3_base_config

    if (out / "triage_manifest.json").exists():
        return out
    source = read_manifest(tokenizer_from, kind="encoder")
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_from))
    labels = source.labels()
    config = mdeberta_v3_base_config(MDEBERTA_VOCAB, len(labels), int(tokenizer.pad_token_id))
    model = AutoModelForSequenceClassification.from_config(config)
    manifest = Manifest(
        kind="encoder",
        version="mdeberta-v3-base-random-weights",
        base_model="mdeberta-v3-base architecture, RANDOM WEIGHTS (speed only)",
        taxonomy=source.taxonomy,
        thresholds=[0.5] * len(labels),
        temperatures=[1.0] * len(labels),
        max_length=256,
    )
    with atomic_folder(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        manifest.write(tmp)
    return out


def load_texts(data: Path, n: int, seed: int = 0) -> list[str]:
    """Ticket texts to send: the dataset's test split if present, else freshly generated ones."""
    from models.datasets import read_examples
    from models.generate import generate_splits

    path = data / "test.jsonl"
    texts = [ex.text for ex in read_examples(path)] if path.exists() else []
    if not texts:
        texts = [ex.text for ex in generate_splits(max(n, 200), seed)["test"]]
    rng = np.random.default_rng(seed)
    return [texts[i] for i in rng.integers(0, len(texts), size=n)]


def measure_raw(
    checkpoint: Path,
    texts: Sequence[str],
    batch_sizes: Sequence[int],
    dtype: str,
    max_batch_size: int = 32,
    progress: bool = True,
) -> dict[str, Any]:
    """Tickets/s of the bare encoder, no server: at each fixed batch size, and with the server's batch planning.

    Fixed sizes run the stream in arrival order. Planned runs it in windows of ``max_batch_size`` tickets, each
    split by ``plan_batches`` with the encoder's measured overhead: what the server does when that many tickets
    are queued, without HTTP, queueing or the event loop.
    """
    from app.server.batcher import BatchPolicy, plan_batches
    from models.encoder import load_for_serving

    encoder = load_for_serving(checkpoint, device="auto", dtype=dtype)  # as the server loads it
    ids = encoder.encode(texts)
    policy = BatchPolicy(max_batch_size=max_batch_size, batch_overhead=encoder.measure_batch_overhead())
    planned = [
        [ids[start + i] for i in batch]
        for start in range(0, len(ids), max_batch_size)
        for batch in plan_batches([len(x) for x in ids[start : start + max_batch_size]], policy)
    ]
    runs = {str(size): [ids[i : i + size] for i in range(0, len(ids), size)] for size in batch_sizes}
    runs["planned"] = planned
    speeds: dict[str, float] = {}
    for name, batches in tqdm(runs.items(), desc="raw encoder", unit="run", disable=not progress):
        encoder.predict_ids(batches[0])  # one warm pass at this shape
        start = time.perf_counter()
        for batch in batches:
            encoder.predict_ids(batch)
        speeds[name] = round(len(ids) / (time.perf_counter() - start), 2)
    fixed = {k: v for k, v in speeds.items() if k != "planned"}
    best = max(fixed, key=fixed.__getitem__)
    return {
        "per_batch_size": fixed,
        "best_batch_size": int(best),
        "tickets_per_s": fixed[best],
        "planned": {
            "tickets_per_s": speeds["planned"],
            "window": max_batch_size,
            "overhead_tokens": round(policy.batch_overhead, 1),
            "mean_batch_size": round(len(ids) / len(planned), 2),
        },
        "mean_tokens": round(float(np.mean([len(x) for x in ids])), 1),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served(
    checkpoint: Path, env_overrides: dict[str, str], startup_timeout: float = 600.0, pid: list[int] | None = None
) -> Iterator[str]:
    """A real ``triage serve`` subprocess on loopback; yields its base URL once /ready answers 200 (and appends
    the process id to ``pid`` when given)."""
    port = _free_port()
    env = {
        **os.environ,
        "TRIAGE_ENCODER_PATH": str(checkpoint),
        "TRIAGE_REQUEST_TIMEOUT_S": "600",
        "TRIAGE_MAX_QUEUE": "100000",
        "TRIAGE_MAX_ACTIVE_REQUESTS": "0",  # bench measures throughput, not shedding (soak overrides it back)
        "TRIAGE_MAX_QUEUE_WAIT_S": "0",
        "TRIAGE_LOG_LEVEL": "warning",
        "TRIAGE_LLM_BACKEND": "none",  # the encoder tier is measured; escalations would share its CPU or GPU
        **env_overrides,
    }
    cmd = [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--timeout-keep-alive", "120"]
    with server_process(cmd, env, port, "/ready", startup_timeout, pid) as url:
        yield url


@contextmanager
def server_process(
    cmd: Sequence[str],
    env: Mapping[str, str],
    port: int,
    ready_path: str,
    startup_timeout: float = 600.0,
    pid: list[int] | None = None,
    log: Path | None = None,
    cwd: Path | None = None,
) -> Iterator[str]:
    """Run ``cmd`` (a server listening on loopback ``port``); yield its base URL once ``GET ready_path`` answers
    200, then stop it and every process it started.

    The server's stderr (and stdout) go to ``log`` when given (servers that log a lot would fill a pipe), else
    stderr to a pipe read if it exits during start-up. The process id is appended to ``pid`` when given.
    """
    import psutil

    url = f"http://127.0.0.1:{port}"
    sink = log.open("w") if log is not None else None
    proc = subprocess.Popen(
        list(cmd),
        env=dict(env),
        cwd=cwd,
        stdout=sink if sink is not None else subprocess.DEVNULL,
        stderr=sink if sink is not None else subprocess.PIPE,
        text=True,
    )
    if pid is not None:
        pid.append(proc.pid)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                if log is not None:
                    output = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
                else:
                    output = proc.stderr.read() if proc.stderr else ""
                raise RuntimeError(f"server exited with {proc.returncode}: {output}")
            try:
                if httpx.get(f"{url}{ready_path}", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready after {startup_timeout:.0f}s")
            time.sleep(0.2)
        yield url
    finally:
        try:
            children = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _, alive = psutil.wait_procs(children, timeout=10)  # workers its own shutdown did not end
        for child in alive:
            with suppress(psutil.NoSuchProcess):
                child.kill()
        if sink is not None:
            sink.close()


def tree_rss_mib(pid: int) -> float | None:
    """Resident memory of a process and all its descendants, MiB (None once it is gone).

    Pages shared between processes (forked workers) count once per process, as ``ps`` shows them.
    """
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return None
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total / 2**20


def triage_payload(text: str) -> dict[str, Any]:
    """One ticket, the way triage's POST /classify takes it."""
    return {"text": text}


async def load_test(
    url: str,
    texts: Sequence[str],
    concurrency: int,
    label: str,
    progress: bool = True,
    *,
    path: str = "/classify",
    payload: Callable[[str], Any] = triage_payload,
    metrics_path: str | None = "/metrics",
    errors_as_failures: bool = False,
) -> dict[str, Any]:
    """``concurrency`` clients send one ticket per request until all ``texts`` are sent.

    Each request is ``POST path`` with the JSON ``payload(text)``: the client, timing and percentiles are the same
    whatever server answers. The mean batch size comes from triage's ``metrics_path`` (None: not asked). A
    connection error or timeout raises, unless ``errors_as_failures`` counts it under its exception's name.
    """
    queue: asyncio.Queue[str] = asyncio.Queue()
    for text in texts:
        queue.put_nowait(text)
    latencies: list[float] = []
    failures: dict[str, int] = {}
    bar = tqdm(total=len(texts), desc=label, unit="req", disable=not progress)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600.0, limits=limits) as client:

        async def worker() -> None:
            while not queue.empty():
                text = queue.get_nowait()
                start = time.perf_counter()
                try:
                    response = await client.post(path, json=payload(text))
                except httpx.HTTPError as exc:
                    if not errors_as_failures:
                        raise
                    failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
                else:
                    if response.status_code == 200:
                        latencies.append(time.perf_counter() - start)
                    else:
                        failures[str(response.status_code)] = failures.get(str(response.status_code), 0) + 1
                bar.update(1)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - start
        metrics = (await client.get(metrics_path)).text if metrics_path is not None else ""
    bar.close()
    lat = np.asarray(latencies) * 1000
    return {
        "tickets_per_s": round(len(latencies) / seconds, 2),
        "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
        "failures": failures,
        "mean_batch_size": _mean_batch_size(metrics),
        "requests": len(texts),
        "ok": len(latencies),
    }


def _mean_batch_size(metrics_text: str) -> float | None:
    values = {}
    for line in metrics_text.splitlines():
        for key in ("triage_batch_size_sum", "triage_batch_size_count"):
            if line.startswith(key + '{tier="encoder"}'):
                values[key] = float(line.split()[-1])
    count = values.get("triage_batch_size_count", 0.0)
    return round(values["triage_batch_size_sum"] / count, 2) if count else None


def run_bench(config: BenchConfig, progress: bool = True) -> dict[str, Any]:
    """Run raw, served-batched and served-unbatched measurements; print a table and write JSON + PNG."""
    checkpoint = config.encoder
    if config.architecture == "mdeberta-v3-base":
        checkpoint = random_mdeberta_checkpoint(config.encoder)
    texts = load_texts(config.data, config.requests)
    env = {"TRIAGE_DTYPE": config.dtype, "TRIAGE_MAX_BATCH_SIZE": str(config.max_batch_size)}
    if config.threads:
        env["TRIAGE_TORCH_THREADS"] = str(config.threads)
        import torch

        torch.set_num_threads(config.threads)
    raw = measure_raw(checkpoint, texts, config.raw_batch_sizes, config.dtype, config.max_batch_size, progress)
    with served(checkpoint, env) as url:
        asyncio.run(load_test(url, texts[: config.concurrency], config.concurrency, "warm-up", progress))
        batched = asyncio.run(load_test(url, texts, config.concurrency, "served, batched", progress))
    with served(checkpoint, {**env, "TRIAGE_BATCHING": "false"}) as url:
        asyncio.run(load_test(url, texts[: config.concurrency], config.concurrency, "warm-up", progress))
        unbatched = asyncio.run(load_test(url, texts, config.concurrency, "served, unbatched", progress))
    result: dict[str, Any] = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "checkpoint": str(checkpoint),
        "weights": "random (speed only)" if config.architecture == "mdeberta-v3-base" else "trained",
        "cpu_count": os.cpu_count(),
        "raw": raw,
        "served_batched": batched,
        "served_unbatched": unbatched,
        "ratios": {
            "served_over_raw": round(batched["tickets_per_s"] / raw["tickets_per_s"], 3),
            "served_over_raw_planned": round(batched["tickets_per_s"] / raw["planned"]["tickets_per_s"], 3),
            "batched_over_unbatched": round(batched["tickets_per_s"] / unbatched["tickets_per_s"], 3),
        },
    }
    config.out.parent.mkdir(parents=True, exist_ok=True)
    config.out.write_text(json.dumps(result, indent=2) + "\n")
    plot_bench(result, config.out.with_suffix(".png"))
    print(format_bench(result))
    return result


def format_bench(result: dict[str, Any]) -> str:
    raw, b, u = result["raw"], result["served_batched"], result["served_unbatched"]
    lines = [
        f"architecture: {result['config']['architecture']} ({result['weights']}), dtype {result['config']['dtype']}, "
        f"concurrency {result['config']['concurrency']}, {result['config']['requests']} requests",
        f"{'run':<22}{'tickets/s':>11}{'p50 ms':>10}{'p99 ms':>10}{'mean batch':>12}",
        *(
            f"{'raw (' + name + ')':<22}{speed:>11.2f}{'':>10}{'':>10}{size:>12}"
            for name, speed, size in [
                *((f"batch {k}", v, k) for k, v in raw["per_batch_size"].items()),
                ("planned", raw["planned"]["tickets_per_s"], raw["planned"]["mean_batch_size"]),
            ]
        ),
        *(
            f"{name:<22}{r['tickets_per_s']:>11.2f}{r['p50_ms']:>10}{r['p99_ms']:>10}{r['mean_batch_size']:>12}"
            for name, r in (("served, batched", b), ("served, unbatched", u))
        ),
        f"served/raw (batch {raw['best_batch_size']}) = {result['ratios']['served_over_raw']:.2f}   "
        f"served/raw planned = {result['ratios']['served_over_raw_planned']:.2f}   "
        f"batched/unbatched = {result['ratios']['batched_over_unbatched']:.2f}",
    ]
    return "\n".join(lines)


def plot_bench(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    raw = result["raw"]["per_batch_size"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot([int(k) for k in raw], list(raw.values()), marker="o", label="fixed batch size, arrival order")
    planned = result["raw"]["planned"]
    left.axhline(
        planned["tickets_per_s"], color="#2a7", linestyle="--", label=f"planned ({planned['window']}-ticket windows)"
    )
    left.legend(fontsize=8)
    left.set_xscale("log", base=2)
    left.set_xlabel("batch size")
    left.set_ylabel("tickets/s")
    left.set_title("raw encoder")
    names = ["raw (best size)", "raw (planned)", "served batched", "served unbatched"]
    values = [
        result["raw"]["tickets_per_s"],
        result["raw"]["planned"]["tickets_per_s"],
        result["served_batched"]["tickets_per_s"],
        result["served_unbatched"]["tickets_per_s"],
    ]
    right.bar(names, values, color=["#888", "#8b8", "#2a7", "#c55"])
    right.tick_params(axis="x", labelrotation=15)
    right.set_ylabel("tickets/s")
    right.set_title(f"{result['config']['architecture']} ({result['weights']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
