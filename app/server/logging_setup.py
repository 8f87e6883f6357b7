"""Logging for machines: plain or one JSON object per line. Ticket text is never logged at INFO."""

from __future__ import annotations

import json
import logging
import time


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            data["request_id"] = request_id
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def configure_logging(level: str = "info", json_lines: bool = False) -> None:
    """One handler on the root logger for everything, uvicorn's loggers included (serve runs uvicorn without a
    log config of its own, so its lines propagate here); each line carries the request id when there is one."""
    from app.server.request_id import RequestIdFilter

    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if json_lines else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    root.setLevel(level.upper())
    # httpx logs every request at INFO: a line per ticket in load tests and per call to a remote LLM
    logging.getLogger("httpx").setLevel(max(root.level, logging.WARNING))
