"""Logging inside node processes.

Thespian replaces each actor process's root logger with a forwarder that pickles every record to
its logger process through the actor's transport. A node's asyncio thread must never touch that
transport, and websockets puts its (unpicklable) connection object on every record. So a node
process logs straight to stderr (the journal, under systemd) with its node name on each line, and
every record is stripped to picklable primitives first in case one ever travels.
"""

from __future__ import annotations

import logging
import sys

_PRIMITIVES = (str, int, float, bool, type(None))
# Created at import, before any fork: its manager is the original one, which Thespian's re-init of
# logging in actor processes leaves behind but which still holds every module's logger.
_ANCHOR = logging.getLogger(__name__)
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class StripUnpicklable(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key in [k for k in vars(record) if k not in _STANDARD]:
            if not isinstance(getattr(record, key), _PRIMITIVES):
                delattr(record, key)
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        return True


def log_format(process_label: str) -> str:
    return f"%(asctime)s {process_label} %(levelname)s %(name)s: %(message)s"


def install_process_logging(process_label: str, level: int = logging.INFO) -> None:
    """Give this process a plain root logger writing to stderr (undoing Thespian's forwarder)."""
    managers = [logging.Logger.manager, _ANCHOR.manager]
    old_roots = [logging.root, _ANCHOR.manager.root]
    root = logging.RootLogger(level)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(log_format(process_label)))
    handler.addFilter(StripUnpicklable())
    root.addHandler(handler)
    logging.root = root
    logging.Logger.root = root
    manager = logging.Manager(root)
    for old in managers:
        for name, logger in list(old.loggerDict.items()):
            manager.loggerDict.setdefault(name, logger)
    for logger in list(manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            logger.manager = manager
            if logger.parent is None or any(logger.parent is r for r in old_roots):
                logger.parent = root
    logging.Logger.manager = manager
    manager._clear_cache()  # type: ignore[attr-defined]
