"""Loggers for websockets that never write a secret (and do not repeat our own lines).

At DEBUG level websockets logs every handshake header (the Authorization header carries the charge
point's password in base64) and the first bytes of every frame (a ChangeConfiguration of
AuthorizationKey, or a 2.0.1 SetVariables of BasicAuthPassword, carries a new password in clear).
The filter here rewrites those records before any handler sees them, and drops the connection
object websockets attaches to each record (it cannot be pickled across processes).
"""

from __future__ import annotations

import logging

from websockets.frames import Frame, Opcode

REDACTED = "[redacted]"
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization"})
_DATA_OPCODES = frozenset({Opcode.TEXT, Opcode.BINARY, Opcode.CONT})


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("websocket", None)
        args = record.args
        if isinstance(args, tuple) and args:
            if (
                len(args) == 2
                and isinstance(args[0], str)
                and args[0].lower() in _SECRET_HEADERS
                and record.msg in ("< %s: %s", "> %s: %s")
            ):
                record.args = (args[0], REDACTED)
            elif isinstance(args[0], Frame) and args[0].opcode in _DATA_OPCODES:
                frame = args[0]
                record.args = (f"{frame.opcode.name} [{len(frame.data)} bytes]", *args[1:])
        return True


# websockets' INFO lines for each connection's open and close name no charge point and no
# cloud link; ours do (the listener's "charge point connected" / "charge point disconnected",
# the cloud links' own): at INFO a 500-point site's start wrote each connection twice.
_PER_CONNECTION = frozenset({"connection open", "connection closed"})


class QuietPerConnection(logging.Filter):
    """websockets' per-connection open and close lines, only where the logger is at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and record.msg in _PER_CONNECTION:
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def printable(text: str) -> str:
    """``text`` as it may reach a terminal or a log line: a peer chooses many strings (a
    2.0.1 transactionId is any string, a payload's unknown key anything), and a control
    character in one (a newline) would forge a line or act on the operator's screen."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def websockets_logger(name: str) -> logging.Logger:
    """A logger for websockets' ``logger=`` option, with :class:`RedactSecrets` and
    :class:`QuietPerConnection` attached once."""
    logger = logging.getLogger(name)
    for kind in (RedactSecrets, QuietPerConnection):
        if not any(isinstance(f, kind) for f in logger.filters):
            logger.addFilter(kind())
    return logger
