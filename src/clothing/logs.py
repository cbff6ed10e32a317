"""Logging for both tiers: one line per record, as text for people or JSON for collectors.

``json`` writes one object per line: ``time`` (RFC 3339, UTC, milliseconds),
``level``, ``logger`` and ``message``, then the fields a record carries (an
access line's request id, route, status and timings: see :func:`log_access`),
and ``exception`` with the traceback when there is one. ``text`` writes
``time level logger: message`` followed by the same fields as ``key=value``.

Uvicorn's loggers go through the same handler (the tiers hand uvicorn
``log_config=None``), so a JSON log has no line of another shape. Standard
library only: both tiers import this module.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

FORMATS = ("text", "json")
LEVELS = ("critical", "error", "warning", "info", "debug")

# The attribute of a LogRecord holding the fields beyond the message
# (``log.info(..., extra={FIELDS: {...}})``).
FIELDS = "fields"


def _utc_time(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in values are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc_time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields: Mapping[str, Any] | None = getattr(record, FIELDS, None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"), default=str)


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...``, for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_utc_time(record)} {record.levelname} {record.name}: {record.getMessage()}"
        fields: Mapping[str, Any] | None = getattr(record, FIELDS, None)
        if fields:
            line += "".join(f" {key}={_text_value(value)}" for key, value in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _text_value(value: Any) -> str:
    if isinstance(value, Mapping):
        return ",".join(f"{key}:{item}" for key, item in value.items())
    text = str(value)
    # Quoted when a value could be read as more than one field.
    return json.dumps(text) if not text or any(c in text for c in ' "=\n') else text


def formatter(log_format: str) -> logging.Formatter:
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {log_format!r}")
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure(log_format: str, level: str = "info", stream: TextIO | None = None) -> None:
    """Send every logger's records to ``stream`` (stderr) in ``log_format`` from ``level`` up.

    Replaces the root logger's handlers, so calling it again changes the format.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Uvicorn's loggers keep no handlers of their own: their records reach this one.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True


def log_access(
    logger: logging.Logger, message: str, fields: Mapping[str, Any], level: int = logging.INFO
) -> None:
    """One access line: ``message`` for people, ``fields`` for queries."""
    if logger.isEnabledFor(level):
        logger.log(level, message, extra={FIELDS: fields})
