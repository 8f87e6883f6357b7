"""The naive peer: FastAPI + uvicorn, one forward pass per request.

A synchronous endpoint, as FastAPI's documentation advises for blocking code: it runs in the threadpool, so
concurrent requests run concurrent forward passes (each with torch's intra-op threads) and nothing is batched.

    python -m app.jobs.peers.naive --checkpoint DIR --port 8001
    curl -s localhost:8001/classify -H 'content-type: application/json' -d '{"text": "refund please"}'
"""

from __future__ import annotations

from collections.abc import Sequence

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from app.jobs.peers import server_args
from app.jobs.peers.model import Classifier


class Ticket(BaseModel):
    text: str


class Scores(BaseModel):
    scores: dict[str, float]


def create_app(classifier: Classifier) -> FastAPI:
    app = FastAPI(title="naive peer: one forward pass per request")

    @app.post("/classify")
    def classify(ticket: Ticket) -> Scores:
        return Scores(scores=classifier.scores([ticket.text])[0])

    @app.get("/ready")
    def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app


def main(argv: Sequence[str] | None = None) -> None:
    args = server_args("naive FastAPI peer: one forward pass per request", argv)
    classifier = Classifier(args.checkpoint, args.dtype, args.threads)
    classifier.scores(["warm-up ticket: the app crashes when I open a recipe"])
    uvicorn.run(create_app(classifier), host=args.host, port=args.port, log_level="warning", timeout_keep_alive=120)


if __name__ == "__main__":
    main()
