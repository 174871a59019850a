"""Logging setup: human-readable lines by default, one JSON object per line with --log-format json.

Both formats go to stderr (stdout carries alerts, summaries and command output) and both pass
through `redact`, so a Slack token never reaches a log, whatever put it into a message or a
traceback (an exception that quotes a request, a URL with a token in it).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import TextIO

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Slack bot, user, app-level, refresh and config tokens; and Authorization headers.
_SECRETS = re.compile(
    r"\b(?:xox[abposre]|xapp|xoxe\.xox[bp])-[A-Za-z0-9-]{6,}"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}"
)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    return _SECRETS.sub(REDACTED, text)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """{"time", "level", "logger", "message"[, "exception"]}: what log shippers index."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = redact(record.exc_text)
        return json.dumps(entry, ensure_ascii=False)


def setup(*, verbose: bool = False, fmt: str = "text", stream: TextIO | None = None) -> None:
    """Like logging.basicConfig (and, like it, nothing happens when the root logger already has
    handlers, as under pytest), with the chosen format and redaction."""
    root = logging.getLogger()
    if root.handlers:
        return
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
