"""The serving peers ``triage bench --peers`` compares triage with, one small server script per module.

Each module is run as a subprocess, ``python -m app.jobs.peers.<module> --checkpoint DIR --port N``, from the
repository root (which is on its ``PYTHONPATH``), by the Python of the environment that has the peer's package:
``.peers/<name>/bin/python`` when ``make peers`` made one (Infinity: its pins conflict with triage's), else
triage's own (BentoML, Ray Serve: the ``peers`` extra). So this package imports only the standard library at
import time, and each module imports only what its own environment has.

- ``naive``: FastAPI + uvicorn, one forward pass per request (what a first server usually is);
- ``bentoml_peer``: a BentoML service whose API is ``batchable`` (adaptive batching);
- ``ray_peer``: a Ray Serve deployment whose method is wrapped in ``@serve.batch``;
- ``infinity_peer``: Infinity's own CLI (``infinity_emb v2``), which serves sequence classifiers on ``/classify``.

Each returns a sigmoid score per label (multi-label); none applies triage's thresholds or calibration.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path


def server_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The options every peer server takes (the bench passes the same values to all of them)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--checkpoint", type=Path, required=True, help="a save_pretrained folder with its tokenizer")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-batch-size", type=int, default=32, help="the largest batch a batching peer forms")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's own)")
    return parser.parse_args(argv)
