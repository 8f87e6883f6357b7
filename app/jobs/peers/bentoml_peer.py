"""The BentoML peer: a service whose API is ``batchable`` (BentoML's adaptive batching).

Configured as BentoML's documentation advises for this case:
- ``@bentoml.api(batchable=True, batch_dim=0, max_batch_size=32, max_latency_ms=...)`` (the "Adaptive batching"
  guide: a batchable endpoint takes one list parameter and returns a list of the same length); 32 is both the
  guide's example and triage's ``TRIAGE_MAX_BATCH_SIZE``. ``max_latency_ms`` is BentoML's default (60 s): the guide
  says a service that cannot meet it answers 503, and the bench measures throughput, not shedding (triage runs
  without its shedding limits too);
- ``workers="cpu_count"`` (the "Workers" guide, CPU workloads: one process per core, past the GIL), each with
  torch's intra-op threads set to cores / workers so the workers do not oversubscribe the cores;
- ``traffic={"timeout": 600, "concurrency": 32}`` (the "Concurrency" guide: with adaptive batching, set
  concurrency to the batch size; the timeout is triage's request timeout in the bench).

The bench's settings come in environment variables (``bentoml serve`` imports this module in each worker):

    python -m app.jobs.peers.bentoml_peer --checkpoint DIR --port 8002
    curl -s localhost:8002/classify -H 'content-type: application/json' -d '{"texts": ["refund please"]}'
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import bentoml

from app.jobs.peers import server_args

ENV_PREFIX = "TRIAGE_PEER_"
MAX_BATCH_SIZE = int(os.environ.get(f"{ENV_PREFIX}MAX_BATCH_SIZE", "32"))
MAX_LATENCY_MS = int(os.environ.get(f"{ENV_PREFIX}MAX_LATENCY_MS", "60000"))
_workers = os.environ.get(f"{ENV_PREFIX}WORKERS", "cpu_count")
WORKERS: int | str = _workers if _workers == "cpu_count" else int(_workers)


def threads_per_worker(workers: int | str, threads: str | None, cpus: int | None = None) -> int:
    """torch intra-op threads in each worker: the bench's ``--threads`` if given, else cores / workers (at least 1)."""
    if threads:
        return int(threads)
    cores = cpus or os.cpu_count() or 1
    count = cores if workers == "cpu_count" else int(workers)
    return max(1, cores // max(1, count))


@bentoml.service(workers=WORKERS, traffic={"timeout": 600, "concurrency": MAX_BATCH_SIZE})
class Classifier:
    def __init__(self) -> None:
        from app.jobs.peers.model import Classifier as Model

        threads = threads_per_worker(WORKERS, os.environ.get(f"{ENV_PREFIX}THREADS"))
        self.model = Model(Path(os.environ[f"{ENV_PREFIX}CHECKPOINT"]), os.environ[f"{ENV_PREFIX}DTYPE"], threads)
        self.model.scores(["warm-up ticket: the app crashes when I open a recipe"])

    @bentoml.api(batchable=True, batch_dim=0, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS)
    def classify(self, texts: list[str]) -> list[dict[str, float]]:
        return self.model.scores(texts)


def main(argv: Sequence[str] | None = None) -> None:
    args = server_args("BentoML peer: adaptive batching", argv)
    os.environ.update(
        {
            f"{ENV_PREFIX}CHECKPOINT": str(args.checkpoint.resolve()),
            f"{ENV_PREFIX}DTYPE": args.dtype,
            f"{ENV_PREFIX}MAX_BATCH_SIZE": str(args.max_batch_size),
            "BENTOML_DO_NOT_TRACK": "True",
        }
    )
    if args.threads:
        os.environ[f"{ENV_PREFIX}THREADS"] = str(args.threads)
    service = "app.jobs.peers.bentoml_peer:Classifier"
    cmd = [sys.executable, "-m", "bentoml", "serve", service, "--host", args.host, "--port", str(args.port)]
    os.execv(sys.executable, cmd)  # the same process id: the bench measures this process tree


if __name__ == "__main__":
    main()
