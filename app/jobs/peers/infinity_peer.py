"""The Infinity peer: Infinity's own server (``infinity_emb v2``), which serves a sequence classifier on
``POST /classify`` with its dynamic batching (a queue sorted by length, batches of ``--batch-size``).

Run by the Python of ``.peers/infinity`` (``make peers``): Infinity's server extra pins click < 8.2, typer 0.12
and numpy < 2, which triage's transformers 5 cannot have. Started as its documentation's CLI does, with:
- ``--engine torch --device cpu``: Infinity's README advises ``--engine optimum`` (ONNX) for CPUs, but that
  engine needs a ``*.onnx`` file in the model folder, and optimum-onnx needs transformers < 4.58, which cannot
  read this checkpoint's tokenizer (written by transformers 5); torch is Infinity's default engine;
- ``--batch-size 32`` (Infinity's default, and triage's ``TRIAGE_MAX_BATCH_SIZE``), the dtype the bench asks for;
  no vector disk cache (its default: a cache would answer repeated tickets without the model).

Infinity 0.0.78 counts tokens with ``tokenizer.batch_encode_plus``, which transformers 5 removed; it is added back
here as the tokenizer call it was, before Infinity starts. Infinity builds the model itself with the stock
``AutoModelForSequenceClassification`` head, so it serves stock checkpoints only (the random mDeBERTa-v3-base,
not the tiny default's mean-pooling head).

    .peers/infinity/bin/python -m app.jobs.peers.infinity_peer --checkpoint DIR --port 8004
    curl -s localhost:8004/classify -H 'content-type: application/json' \
      -d '{"model": "classifier", "input": ["refund please"]}'
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from app.jobs.peers import server_args

SERVED_NAME = "classifier"


def infinity_argv(args: Any) -> list[str]:
    """The ``infinity_emb v2`` command line for the bench's options."""
    return [
        "infinity_emb",
        "v2",
        "--model-id",
        str(args.checkpoint.resolve()),
        "--served-model-name",
        SERVED_NAME,
        "--engine",
        "torch",
        "--device",
        "cpu",
        "--batch-size",
        str(args.max_batch_size),
        "--dtype",
        args.dtype,
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--log-level",
        "warning",
    ]


def restore_batch_encode_plus() -> None:
    """transformers 5 removed ``batch_encode_plus``; Infinity 0.0.78 still calls it (for token counts)."""
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    if not hasattr(PreTrainedTokenizerBase, "batch_encode_plus"):

        def batch_encode_plus(self: Any, batch_text_or_text_pairs: Any, **kwargs: Any) -> Any:
            return self(batch_text_or_text_pairs, **kwargs)

        PreTrainedTokenizerBase.batch_encode_plus = batch_encode_plus  # type: ignore[attr-defined]


def main(argv: Sequence[str] | None = None) -> None:
    args = server_args("Infinity peer: infinity_emb v2 on the checkpoint", argv)
    os.environ.setdefault("INFINITY_ANONYMOUS_USAGE_STATS", "0")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    restore_batch_encode_plus()
    from infinity_emb.cli import cli

    sys.argv = infinity_argv(args)
    cli()


if __name__ == "__main__":
    main()
