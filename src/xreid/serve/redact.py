"""No secret in any log: the token a client puts in an address (``/?token=...``, the one way a
browser can hand it over) is replaced by ``[redacted]`` in uvicorn's access and error logs and in
the audit log."""

from __future__ import annotations

import logging
import re

#: ``token=VALUE`` in a query string (also ``access_token=``, percent-encoded or not), up to ``&``,
#: whitespace, a quote or a backslash, so a JSON line stays valid when redacted
_TOKEN = re.compile(r"((?:^|[?&;\s\"'/])(?:access_)?token=)[^&\s\"'\\#]+", re.IGNORECASE)
REDACTED = "[redacted]"
#: secrets this process knows (the server's token): replaced wherever they appear, however they came
_SECRETS: set[str] = set()


def add_secret(value: str | None) -> None:
    if value:
        _SECRETS.add(value)


def redact(text: str) -> str:
    """``text`` with every ``token=VALUE`` of a query string replaced by ``token=[redacted]`` and
    every known secret by ``[redacted]``."""
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return _TOKEN.sub(lambda m: m.group(1) + REDACTED, text) if "token=" in text.lower() else text


class RedactFilter(logging.Filter):
    """A logging filter that redacts tokens in a record's message and arguments (uvicorn's access log
    passes the request line, query string included, as an argument)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


LOGGERS = ("uvicorn.access", "uvicorn.error", "uvicorn", "xreid")


def install(loggers: tuple[str, ...] = LOGGERS) -> None:
    """Add the filter to the loggers that may see a request's address (idempotent). Filters act on
    records logged on that logger itself, hence each by name."""
    for name in loggers:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactFilter) for f in logger.filters):
            logger.addFilter(RedactFilter())
