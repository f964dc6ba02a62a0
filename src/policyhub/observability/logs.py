"""Logs: one JSON object per line, or a line of text for people, each carrying the call's trace
id, domain, caller and method, with secrets (tokens, API keys, JWTs) masked wherever they appear."""

from __future__ import annotations

import contextvars
import json
import logging
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

# Per-call fields, set by the RPC interceptor and the caller resolver for the call's thread.
call_fields: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "call_fields", default=MappingProxyType({})
)

_SECRET_KEYS = re.compile(r"token|api_key|password|secret|authorization|key_hash", re.I)
_SECRET_VALUES = re.compile(r"phk_[0-9a-f]{12}_[A-Za-z0-9_-]+|eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
MASK = "***"


def bind(**fields: str) -> None:
    """Adds fields to every log line of the current call."""
    call_fields.set({**call_fields.get(), **{k: v for k, v in fields.items() if v}})


def mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: MASK if _SECRET_KEYS.search(str(key)) else mask(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask(item) for item in value]
    if isinstance(value, str):
        return _SECRET_VALUES.sub(MASK, value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": mask(record.getMessage()),
            **call_fields.get(),
        }
        if hasattr(record, "audit"):
            entry["audit"] = mask(record.audit)
        if record.exc_info:
            entry["exception"] = mask(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """`<time> <level> <logger> [<call fields as key=value>]: <message>`, then the audit entry
    and the exception, masked as in JSON."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{key}={value}" for key, value in call_fields.get().items())
        line = f"{self.formatTime(record)} {record.levelname} {record.name}"
        line += f" [{fields}]: " if fields else ": "
        line += mask(record.getMessage())
        if hasattr(record, "audit"):
            line += " audit=" + json.dumps(mask(record.audit), default=str)
        if record.exc_info:
            line += "\n" + mask(self.formatException(record.exc_info))
        return line


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
