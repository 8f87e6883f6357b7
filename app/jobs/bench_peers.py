"""``triage bench --peers``: triage against the servers a user would otherwise pick, in one run.

Every system serves the same checkpoint folder on loopback, one after the other, and the same load client
(:func:`app.jobs.bench.load_test`: ``concurrency`` keep-alive clients, one ticket per request) sends the same
tickets at each concurrency level; only the request path and JSON body differ (each server's own API). Measured at
each level: tickets/s, p50/p99 latency at the client, failures, and the resident memory of the server's whole
process tree (sampled during the run; its peak). Ratios compare triage with the best peer at each level.

The systems (modules in :mod:`app.jobs.peers`):
- ``triage``: ``triage serve`` (``TRIAGE_LLM_BACKEND=none``, no shedding limits), as ``triage bench`` runs it;
- ``naive``: FastAPI + uvicorn, one forward pass per request;
- ``bentoml``: BentoML adaptive batching (``@bentoml.api(batchable=True)``);
- ``ray``: Ray Serve with ``@serve.batch``;
- ``infinity``: Infinity (``infinity-emb``), its ``/classify`` endpoint; stock checkpoints only.

A peer whose package is not installed (``make peers``) is skipped with a one-line reason; the others still run.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import httpx
from tqdm.auto import tqdm

from app.jobs.bench import (
    _free_port,
    load_test,
    load_texts,
    random_mdeberta_checkpoint,
    served,
    server_process,
    tree_rss_mib,
    triage_payload,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL = "make peers"


@dataclass(frozen=True)
class Peer:
    """A serving peer: how to start it, ask it, and tell it is ready."""

    name: str
    title: str
    module: str
    """``python -m`` module under :mod:`app.jobs.peers` (its docstring says how the peer is configured, and why)."""
    requires: str
    """A module that must import in the peer's Python."""
    path: str
    payload: Callable[[str], Any]
    ready_path: str
    settings: str
    """One line for the report: the peer's configuration (``{batch}``: the batch size, ``{ongoing}``: twice it)."""
    stock_only: bool = False
    """The peer builds the model itself with the stock head: a checkpoint with a custom pooling is skipped."""
    install: str = INSTALL


def _texts_payload(text: str) -> dict[str, Any]:
    return {"texts": [text]}


def _infinity_payload(text: str) -> dict[str, Any]:
    return {"model": "classifier", "input": [text]}


PEERS: dict[str, Peer] = {
    peer.name: peer
    for peer in (
        Peer(
            "naive",
            "naive FastAPI",
            "app.jobs.peers.naive",
            "fastapi",
            "/classify",
            triage_payload,
            "/ready",
            "FastAPI + uvicorn, sync endpoint (threadpool), one forward pass per request",
        ),
        Peer(
            "bentoml",
            "BentoML",
            "app.jobs.peers.bentoml_peer",
            "bentoml",
            "/classify",
            _texts_payload,
            "/readyz",
            "@bentoml.api(batchable=True, max_batch_size={batch}, max_latency_ms=60000), workers=cpu_count "
            "(torch threads = cores / workers), traffic concurrency {batch}",
        ),
        Peer(
            "ray",
            "Ray Serve",
            "app.jobs.peers.ray_peer",
            "ray.serve",
            "/classify",
            triage_payload,
            "/classify",
            "@serve.batch(max_batch_size={batch}, batch_wait_timeout_s=0.01), 1 replica with num_cpus = all cores, "
            "max_ongoing_requests {ongoing}",
        ),
        Peer(
            "infinity",
            "Infinity",
            "app.jobs.peers.infinity_peer",
            "infinity_emb",
            "/classify",
            _infinity_payload,
            "/health",
            "infinity_emb v2 --engine torch --device cpu --batch-size {batch} (dynamic batching, length-sorted queue)",
            stock_only=True,
        ),
    )
}
SYSTEMS = ("triage", *PEERS)
COLORS = {"triage": "#2a7", "naive": "#c55", "bentoml": "#f90", "ray": "#37c", "infinity": "#85c"}


@dataclass(frozen=True)
class PeersConfig:
    architecture: str = "checkpoint"
    encoder: Path = Path("checkpoints/default/encoder")
    data: Path = Path("data/eurochef")
    systems: tuple[str, ...] = SYSTEMS
    """triage is always measured; the others as listed."""
    concurrency_levels: tuple[int, ...] = (1, 8, 32, 128)
    requests: int = 256
    """Requests per system and concurrency level (each level is warmed up first with ``max(level, 8)``)."""
    dtype: str = "float32"
    """The precision the peers load the model in (what their CPU documentation shows)."""
    triage_dtype: str = "auto"
    """triage's TRIAGE_DTYPE: auto is its CPU fast path (``models.fast_path``), as it serves by default."""
    threads: int | None = None
    max_batch_size: int = 32
    out: Path = Path("bench/peers.json")
    peers_dir: Path = REPO_ROOT / ".peers"
    """Where ``make peers`` puts a peer's own virtual environment (``<peers_dir>/<name>/bin/python``)."""
    startup_timeout_s: float = 600.0
    rss_interval_s: float = 0.2
    peers: Mapping[str, Peer] = field(default_factory=lambda: PEERS)


@contextmanager
def sampled_rss(pid: int, interval_s: float) -> Iterator[list[float]]:
    """Sample :func:`tree_rss_mib` every ``interval_s`` in a thread while the block runs (and once at each end)."""
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        if (value := tree_rss_mib(pid)) is not None:
            samples.append(value)

    def run() -> None:
        while not stop.wait(interval_s):
            sample()

    sample()
    thread = threading.Thread(target=run, name="rss-sampler", daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()
        sample()


def _peer_env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT) + (os.pathsep + path if path else ""),
        "HF_HUB_OFFLINE": "1",  # the checkpoint is a local folder: nothing to download
        "RAY_USAGE_STATS_ENABLED": "0",
        "BENTOML_DO_NOT_TRACK": "True",
        "INFINITY_ANONYMOUS_USAGE_STATS": "0",
        "DO_NOT_TRACK": "1",
    }


def peer_python(peer: Peer, peers_dir: Path) -> str | None:
    """The Python that has ``peer.requires``: its own venv's (``make peers``) first, else this one; None if neither."""
    candidates = [peers_dir / peer.name / "bin" / "python", Path(sys.executable)]
    for python in candidates:
        if not python.exists():
            continue
        check = subprocess.run(
            [str(python), "-c", f"import {peer.requires}"],
            env=_peer_env(),
            cwd=REPO_ROOT,
            capture_output=True,
            timeout=300,
        )
        if check.returncode == 0:
            return str(python)
    return None


def skip_reason(peer: Peer, checkpoint: Path, python: str | None, peers_dir: Path) -> str | None:
    """Why ``peer`` cannot run on ``checkpoint`` here (one line, with the fix), or None."""
    if python is None:
        return (
            f"{peer.title} not installed ({peer.requires} imports neither in {peers_dir / peer.name} nor here): "
            f"run `{peer.install}`"
        )
    if peer.stock_only:
        pooling = json.loads((checkpoint / "config.json").read_text()).get("pooling", "cls")
        if pooling != "cls":
            return (
                f"{peer.title} builds the stock classifier head itself and this checkpoint uses {pooling} pooling: "
                "run with --architecture mdeberta-v3-base (a stock mDeBERTa-v3-base)"
            )
    return None


def _measure(
    name: str,
    url: str,
    pid: int,
    texts: Sequence[str],
    config: PeersConfig,
    path: str,
    payload: Callable[[str], Any],
    metrics_path: str | None,
    progress: bool,
) -> dict[str, Any]:
    """Every concurrency level against one running server: warm-up, then the measured run with RSS sampling."""
    levels: dict[str, Any] = {}
    options: dict[str, Any] = {"path": path, "payload": payload, "errors_as_failures": True}
    rss_warm: float | None = None
    for level in config.concurrency_levels:
        warm = texts[: min(max(level, 8), len(texts))]  # at least 8: every worker of a multi-process server
        asyncio.run(load_test(url, warm, level, f"{name} warm-up ×{level}", progress, **options, metrics_path=None))
        if rss_warm is None:  # loaded and warm (some servers say ready before their workers load the model)
            rss_warm = tree_rss_mib(pid)
        with sampled_rss(pid, config.rss_interval_s) as rss:
            result = asyncio.run(
                load_test(url, texts, level, f"{name} ×{level}", progress, **options, metrics_path=metrics_path)
            )
        result["rss_mib"] = round(max(rss), 1) if rss else None
        levels[str(level)] = result
    return {"rss_mib_warm": round(rss_warm, 1) if rss_warm is not None else None, "levels": levels}


def peer_ratios(systems: Mapping[str, Any], levels: Sequence[int]) -> dict[str, Any]:
    """At each level: triage's tickets/s over the best peer's, and triage's p99 over the best peer's (lowest).

    Only peers that answered every request at that level compete: a peer that dropped some would look faster
    and, its latencies being those of the answered ones only, quicker. None where no peer qualifies.
    """
    ratios: dict[str, Any] = {}
    for level in map(str, levels):
        triage = systems["triage"]["levels"][level]
        peers = {
            name: system["levels"][level]
            for name, system in systems.items()
            if name != "triage" and level in system["levels"]
        }
        clean = {name: r for name, r in peers.items() if not r["failures"] and r["ok"] > 0}
        entry: dict[str, Any] = {"excluded_for_failures": sorted(set(peers) - set(clean))}
        if clean:
            best = max(clean, key=lambda name: clean[name]["tickets_per_s"])
            quickest = min(clean, key=lambda name: clean[name]["p99_ms"])
            entry["throughput"] = {
                "best_peer": best,
                "ratio": round(triage["tickets_per_s"] / clean[best]["tickets_per_s"], 3),
            }
            triage_p99 = triage["p99_ms"]
            entry["p99"] = {
                "best_peer": quickest,
                "ratio": round(triage_p99 / clean[quickest]["p99_ms"], 3) if triage_p99 is not None else None,
            }
        else:
            entry["throughput"] = entry["p99"] = None
        ratios[level] = entry
    return ratios


def run_peers(config: PeersConfig, progress: bool = True) -> dict[str, Any]:
    """Measure triage and each available peer at every concurrency level; print a table, write JSON and a PNG."""
    checkpoint = config.encoder
    if config.architecture == "mdeberta-v3-base":
        checkpoint = random_mdeberta_checkpoint(config.encoder)
    checkpoint = checkpoint.resolve()
    texts = load_texts(config.data, config.requests)
    unknown = [name for name in config.systems if name != "triage" and name not in config.peers]
    if unknown:
        raise ValueError(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(config.peers)}")
    names = ["triage", *(name for name in config.systems if name != "triage")]
    logs = config.out.parent / f"{config.out.stem}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    systems: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    for name in names:
        if name == "triage":
            env = {
                "TRIAGE_DTYPE": config.triage_dtype,
                "TRIAGE_MAX_BATCH_SIZE": str(config.max_batch_size),
                "TRIAGE_DEVICE": "cpu",  # where every peer runs the model
            }
            if config.threads:
                env["TRIAGE_TORCH_THREADS"] = str(config.threads)
            pid: list[int] = []
            _note(progress, "starting triage")
            with served(checkpoint, env, config.startup_timeout_s, pid=pid) as url:
                precision = httpx.get(f"{url}/info", timeout=10).json()["encoder"]["precision"]
                measured = _measure(name, url, pid[0], texts, config, "/classify", triage_payload, "/metrics", progress)
            systems[name] = {
                "title": "triage",
                "python": sys.executable,
                "precision": precision,
                "settings": f"triage serve, TRIAGE_DTYPE={config.triage_dtype} (served {precision}), "
                f"TRIAGE_MAX_BATCH_SIZE={config.max_batch_size}, TRIAGE_LLM_BACKEND=none, "
                "no shedding limits (TRIAGE_MAX_ACTIVE_REQUESTS=0)",
                **measured,
            }
            continue
        peer = config.peers[name]
        python = peer_python(peer, config.peers_dir)
        reason = skip_reason(peer, checkpoint, python, config.peers_dir)
        if reason is not None or python is None:
            skipped[name] = reason or "not installed"
            print(f"skipped {name}: {skipped[name]}", file=sys.stderr)
            continue
        port = _free_port()
        cmd = [python, "-m", peer.module, "--checkpoint", str(checkpoint), "--port", str(port)]
        cmd += ["--max-batch-size", str(config.max_batch_size), "--dtype", config.dtype]
        if config.threads:
            cmd += ["--threads", str(config.threads)]
        pid = []
        log = logs / f"{name}.log"
        _note(progress, f"starting {peer.title} (log: {log})")
        try:
            with server_process(
                cmd, _peer_env(), port, peer.ready_path, config.startup_timeout_s, pid, log=log, cwd=REPO_ROOT
            ) as url:
                measured = _measure(name, url, pid[0], texts, config, peer.path, peer.payload, None, progress)
        except RuntimeError as exc:  # it did not start: the others still run
            failed[name] = str(exc).splitlines()[0] + f" (log: {log})"
            print(f"failed {name}: {failed[name]}", file=sys.stderr)
            continue
        settings = peer.settings.format(batch=config.max_batch_size, ongoing=2 * config.max_batch_size)
        systems[name] = {"title": peer.title, "python": python, "settings": settings, **measured}
    result: dict[str, Any] = {
        "config": {
            f.name: str(value) if isinstance(value := getattr(config, f.name), Path) else value
            for f in fields(config)
            if f.name != "peers"
        },
        "checkpoint": str(checkpoint),
        "weights": "random (speed only)" if config.architecture == "mdeberta-v3-base" else "trained",
        "cpu_count": os.cpu_count(),
        "concurrency_levels": list(config.concurrency_levels),
        "systems": systems,
        "skipped": skipped,
        "failed": failed,
        "ratios": peer_ratios(systems, config.concurrency_levels),
    }
    config.out.parent.mkdir(parents=True, exist_ok=True)
    config.out.write_text(json.dumps(result, indent=2) + "\n")
    plot_peers(result, config.out.with_suffix(".png"))
    print(format_peers(result))
    return result


def _note(progress: bool, message: str) -> None:
    if progress:
        tqdm.write(message, file=sys.stderr)


def format_peers(result: dict[str, Any]) -> str:
    config = result["config"]
    lines = [
        f"architecture: {config['architecture']} ({result['weights']}), triage dtype {config['triage_dtype']}, "
        f"peers {config['dtype']}, "
        f"{config['requests']} requests per system and level, {result['cpu_count']} CPUs",
        f"{'system':<16}{'clients':>8}{'tickets/s':>11}{'p50 ms':>10}{'p99 ms':>10}{'failures':>10}{'RSS MiB':>10}",
    ]
    for system in result["systems"].values():
        for level, r in system["levels"].items():
            failures = sum(r["failures"].values())
            lines.append(
                f"{system['title']:<16}{level:>8}{r['tickets_per_s']:>11.2f}{_cell(r['p50_ms'])}{_cell(r['p99_ms'])}"
                f"{failures:>10}{_cell(r['rss_mib'], 0)}"
            )
    for level, entry in result["ratios"].items():
        if entry["throughput"] is None:
            lines.append(f"clients {level}: no peer answered every request")
            continue
        p99 = entry["p99"]
        p99_text = f"{p99['ratio']:.2f}" if p99["ratio"] is not None else "–"
        lines.append(
            f"clients {level}: triage/best peer tickets/s = {entry['throughput']['ratio']:.2f} "
            f"({entry['throughput']['best_peer']}), p99 = {p99_text} ({p99['best_peer']})"
        )
    lines += [f"skipped {name}: {reason}" for name, reason in result["skipped"].items()]
    lines += [f"failed {name}: {reason}" for name, reason in result["failed"].items()]
    return "\n".join(lines)


def _cell(value: float | None, digits: int = 1) -> str:
    return f"{value:>10.{digits}f}" if value is not None else f"{'–':>10}"


def plot_peers(result: dict[str, Any], path: Path) -> None:
    """Two panels against concurrency: tickets/s and p99 latency, one line per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, system in result["systems"].items():
        levels = [int(level) for level in system["levels"]]
        runs = list(system["levels"].values())
        style = {"linewidth": 2.5 if name == "triage" else 1.5, "color": COLORS.get(name)}
        left.plot(levels, [r["tickets_per_s"] for r in runs], marker="o", label=system["title"], **style)
        p99 = [(lv, r["p99_ms"]) for lv, r in zip(levels, runs, strict=True) if r["p99_ms"] is not None]
        right.plot([lv for lv, _ in p99], [v for _, v in p99], marker="o", label=system["title"], **style)
    right.set_yscale("log")
    right.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    right.yaxis.set_minor_formatter(NullFormatter())
    for axis, label in ((left, "tickets/s"), (right, "p99 latency (ms), log scale")):
        axis.set_xscale("log", base=2)
        axis.set_xticks(result["concurrency_levels"])
        axis.xaxis.set_major_formatter(ScalarFormatter())
        axis.yaxis.set_major_formatter(ScalarFormatter())
        axis.set_xlabel("concurrent clients")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    left.legend(fontsize=8)
    left.set_title("throughput")
    right.set_title("tail latency")
    fig.suptitle(f"{result['config']['architecture']} ({result['weights']}), {result['cpu_count']} CPUs", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
