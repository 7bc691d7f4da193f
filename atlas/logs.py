"""One log format for every Atlas process: the message, then the fields passed in `extra=`.

`atlas serve`, `atlas worker` and `atlas agent` all log through `formatter()`:

- text (the default), one line per record with the fields as key=value:
  `2026-12-04 17:51:03,120 INFO session_api job submitted job_id=job_3f... key_id=key_9a...`
- `ATLAS_LOG_FORMAT=json`: one JSON object per line, the fields as top-level keys, for log
  shippers.

`agent` and `session_api` both import this module (neither may import the other), so it needs
nothing but the standard library and pydantic-settings.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_VAR = "ATLAS_LOG_FORMAT"
FORMATS = ("text", "json")

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
# Extras that only repeat the message for another renderer (uvicorn's ANSI-coloured copy).
_NOISE = frozenset({"color_message"})


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The `extra=` fields of a record, in the order they were given."""
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _RECORD_ATTRS and key not in _NOISE and not key.startswith("_")
    }


def _text_value(value: Any) -> str:
    text = str(value)
    if not text or any(ch in text for ch in ' ="\\\n\r\t'):
        return json.dumps(text, ensure_ascii=False)  # quoted and escaped: one field, one line
    return text


class TextFormatter(logging.Formatter):
    """`time LEVEL logger message key=value ...`; a traceback follows on the next lines."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        line = super().formatMessage(record)
        fields = record_fields(record)
        if not fields:
            return line
        return line + " " + " ".join(f"{key}={_text_value(v)}" for key, v in fields.items())


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, then fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record_fields(record).items():
            payload.setdefault(key, value)  # a field never hides the record's own keys
        if record.exc_info:
            payload["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            payload["exc_info"] = record.exc_text
        if record.stack_info:
            payload["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


class LogSettings(BaseSettings):
    """ATLAS_LOG_FORMAT: `text` (the default) or `json`."""

    model_config = SettingsConfigDict(env_prefix="ATLAS_", extra="ignore", frozen=True)

    log_format: Literal["text", "json"] = "text"


def format_name() -> str:
    """`text` or `json`, from ATLAS_LOG_FORMAT; a ValueError names a bad value in one line."""
    try:
        return LogSettings().log_format
    except ValidationError:
        value = os.environ.get(ENV_VAR, "")
        raise ValueError(f"{ENV_VAR} must be one of {', '.join(FORMATS)}, not {value!r}") from None


def formatter() -> logging.Formatter:
    return JsonFormatter() if format_name() == "json" else TextFormatter()


_HANDLER_NAME = "atlas"


def configure(level: int | str = logging.INFO, *, stream: TextIO | None = None) -> None:
    """Log the root logger to `stream` (stderr) in the Atlas format; calling it again replaces
    the handler it added, and leaves anyone else's alone.

    Raises ValueError for an unknown ATLAS_LOG_FORMAT, before touching any handler.
    """
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(formatter())
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def reformat_root_handlers() -> None:
    """Give the root logger's existing handlers the Atlas format (for a framework that set
    them up itself, keeping its streams, levels and filters)."""
    chosen = formatter()
    for handler in logging.getLogger().handlers:
        handler.setFormatter(chosen)
