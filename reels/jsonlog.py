"""JSON logs, one object a line, with the trace and span id of the current span.

SREs grep logs by trace id found in a trace viewer (and the other way round), so
every line carries both ids when a span is active.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from opentelemetry import trace

from reels.config import PlatformSettings, platform


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            entry["trace_id"] = f"{ctx.trace_id:032x}"
            entry["span_id"] = f"{ctx.span_id:016x}"
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class RepeatFilter(logging.Filter):
    """Lets the same message (logger + template) through at most once per ``window_s``.

    Client libraries retry connecting in tight loops and log every attempt (aiokafka
    logs "Unable connect to ..." about 170 times a second while a broker is down); one
    line per window, with how many were held back, says the same thing.
    """

    def __init__(self, prefixes: tuple[str, ...], window_s: float = 10.0) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.window_s = window_s
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        last, held = self._seen.get(key, (0.0, 0))
        if now - last < self.window_s:
            self._seen[key] = (last, held + 1)
            return False
        if held:
            record.msg = f"{record.msg} (repeated {held} times in {self.window_s:.0f}s)"
        self._seen[key] = (now, 0)
        if len(self._seen) > 1000:
            self._seen.clear()
        return True


# Loggers of client libraries that log every retry.
CHATTY_LOGGERS = ("aiokafka", "kafka")


def setup_logging(service: str, settings: PlatformSettings | None = None) -> None:
    settings = settings or platform()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if settings.log_file is not None:  # REELS_LOG_FILE: this process's own file as well
        settings.log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(settings.log_file))
    for handler in handlers:
        handler.setFormatter(JsonFormatter(service))
        handler.addFilter(RepeatFilter(CHATTY_LOGGERS))  # one per handler: own counts
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(settings.log_level.upper())
