"""Errors of the simulated charge point (see the tree in ``sim/charge_point.py``)."""

from __future__ import annotations


class SimChargePointError(Exception):
    pass


class NotConnectedError(SimChargePointError):
    pass


class CallFailedError(SimChargePointError):
    def __init__(self, action: str, reason: str) -> None:
        super().__init__(f"{action}: {reason}")
        self.action = action
        self.reason = reason


class AuthorizationRejectedError(SimChargePointError):
    def __init__(self, id_tag: str, status: str) -> None:
        super().__init__(f"id tag {id_tag!r} not authorized: {status}")
        self.id_tag = id_tag
        self.status = status
