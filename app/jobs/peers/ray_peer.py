"""The Ray Serve peer: one deployment whose batch method is wrapped in ``@serve.batch``.

Configured as Ray Serve's documentation advises for this case:
- ``@serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)`` (the "Dynamic Request Batching" guide: an
  ``async`` method taking and returning a list; 0.01 s is its default wait, a power of two its advised batch size,
  32 triage's ``TRIAGE_MAX_BATCH_SIZE``);
- ``max_ongoing_requests`` = 2 x the batch size: the guide's batching code warns unless it is at least
  ``max_batch_size`` x ``max_concurrent_batches``; twice lets the next batch queue while one runs;
- one replica with ``ray_actor_options={"num_cpus": <all cores>}`` (the "Resource Allocation" guide: a replica
  reserves one CPU by default, and Ray then sets ``OMP_NUM_THREADS`` to the replica's CPUs, so torch would use one
  thread on a multi-core machine);
- a local Ray instance without its dashboard (``include_dashboard=False``: serving does not use it).

    python -m app.jobs.peers.ray_peer --checkpoint DIR --port 8003
    curl -s localhost:8003/classify -H 'content-type: application/json' -d '{"text": "refund please"}'
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import ray
from ray import serve
from starlette.requests import Request

from app.jobs.peers import server_args


class Classifier:
    """The deployment's class (made a deployment in :func:`main`, with the bench's options)."""

    def __init__(self, checkpoint: str, max_batch_size: int, dtype: str, threads: int | None) -> None:
        from app.jobs.peers.model import Classifier as Model

        self.model = Model(Path(checkpoint), dtype, threads)
        self.model.scores(["warm-up ticket: the app crashes when I open a recipe"])
        self.classify.set_max_batch_size(max_batch_size)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def classify(self, texts: list[str]) -> list[dict[str, float]]:
        return self.model.scores(texts)

    async def __call__(self, request: Request) -> dict[str, Any]:
        if request.method == "GET":
            return {"status": "ready"}
        body = await request.json()
        return {"scores": await self.classify(body["text"])}


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> None:
    args = server_args("Ray Serve peer: @serve.batch", argv)
    cpus = os.cpu_count() or 1
    signal.signal(signal.SIGTERM, _stop)  # shut Ray down (its processes with it) when the bench stops us
    ray.init(num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING)
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        deployment = serve.deployment(
            Classifier,
            num_replicas=1,
            max_ongoing_requests=2 * args.max_batch_size,
            ray_actor_options={"num_cpus": cpus},
        )
        app = deployment.bind(str(args.checkpoint.resolve()), args.max_batch_size, args.dtype, args.threads)
        serve.run(app, route_prefix="/classify", blocking=True)
    finally:
        serve.shutdown()
        ray.shutdown()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
