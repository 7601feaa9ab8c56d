"""What ``hfgit serve`` writes to its logs, and the one step that keeps secrets out of them.

Every handler hfgit and gunicorn set up carries :class:`Redact`, which rewrites each
record (message, arguments, traceback) through :func:`redact` before any formatter sees
it: token-shaped strings, ``Authorization`` values and URL userinfo never reach a log,
wherever they came from (a token pasted into a URL path, an exception message).

Two formats: ``text`` (gunicorn's, the default) and ``json``, one object per line, for
log pipelines. The access line's extra fields (route, repository, user, request id) come
from the WSGI environ, where the application leaves them (:mod:`hfgit.server.observe`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from datetime import UTC, datetime

from gunicorn.glogging import Logger

from .server.observe import REPO, REQUEST_ID, ROUTE, USER

FORMATS = ("text", "json")

#: What gets replaced, and with what. Token shapes are matched loosely (any length from
#: 20 on, digits too): a truncated or mistyped token is still a secret.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"hf_[A-Za-z0-9]{20,}"), "hf_***"),
    (re.compile(r"api_org_[A-Za-z0-9]{20,}"), "api_org_***"),
    (
        re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)[^\r\n\"']+"),
        r"\1***",
    ),
    (re.compile(r"\b(Basic|Bearer)\s+[A-Za-z0-9._~+/=-]{16,}"), r"\1 ***"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@\"']+@"), r"\1***@"),
)


def redact(text: str) -> str:
    """``text`` with every secret it may hold replaced by ``***``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class Redact(logging.Filter):
    """Render a record's message and traceback now, redacted, so no formatter sees the raw
    arguments. Attached to every handler: the one redaction step of every log line."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = redact(self._formatter.formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """An error or application record as one JSON object; the traceback is a field."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_text:
            line["traceback"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line)


def access_line(resp, environ: dict, request_time) -> dict:
    """The JSON access line: path without the query, no header values, no Basic username."""
    status = resp.status
    if isinstance(status, str):
        status = status.split(None, 1)[0]
    line = {
        "time": _iso(datetime.now(UTC).timestamp()),
        "method": environ.get("REQUEST_METHOD"),
        "path": environ.get("PATH_INFO") or "/",
        "route": environ.get(ROUTE),
        "status": int(status) if str(status).isdigit() else status,
        "bytes": getattr(resp, "sent", None) or 0,
        "duration_ms": round(request_time.total_seconds() * 1000, 3),
        "request_id": environ.get(REQUEST_ID),
        "remote": environ.get("REMOTE_ADDR"),
        "pid": os.getpid(),
    }
    if environ.get(REPO):
        line["repo"] = environ[REPO]
    if environ.get(USER):
        line["user"] = environ[USER]
    return line


def announce(message: str, log_format: str) -> None:
    """A message of ``hfgit serve``'s own (where it listens, first steps), in the log's
    format, so a JSON log holds nothing but JSON lines."""
    if log_format == "json":
        line = {
            "time": _iso(time.time()),
            "level": "info",
            "logger": "hfgit.serve",
            "pid": os.getpid(),
            "message": message,
        }
        message = json.dumps(line)
    print(redact(message), file=sys.stderr, flush=True)


def gunicorn_logger(log_format: str) -> type[Logger]:
    """gunicorn's logger class for ``log_format``, with :class:`Redact` on every handler."""
    if log_format not in FORMATS:
        raise ValueError(f"Unknown log format {log_format!r}: use text or json.")

    class HfgitLogger(Logger):
        def setup(self, cfg) -> None:
            super().setup(cfg)
            errors = (
                JsonFormatter()
                if log_format == "json"
                else logging.Formatter(Logger.error_fmt, Logger.datefmt)
            )
            for handler in self.error_log.handlers:
                handler.addFilter(Redact())
                handler.setFormatter(errors)
            for handler in self.access_log.handlers:
                handler.addFilter(Redact())
            _configure_application_logs(errors)

        def access(self, resp, req, environ, request_time) -> None:
            if log_format == "text":
                super().access(resp, req, environ, request_time)
                return
            if not self.access_log_enabled:
                return
            self.access_log.info("%s", json.dumps(access_line(resp, environ, request_time)))

    return HfgitLogger


def _configure_application_logs(formatter: logging.Formatter) -> None:
    """hfgit's own records (and any library's) go to stderr through the same redaction."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_hfgit", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(Redact())
    handler.setFormatter(formatter)
    handler._hfgit = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    if root.level > logging.WARNING or root.level == logging.NOTSET:
        root.setLevel(logging.WARNING)
    logging.getLogger("hfgit").setLevel(logging.INFO)
