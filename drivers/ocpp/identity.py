"""What a charge point identity may be: the last path segment of its OCPP-J URL.

1 to 48 printable ASCII characters (2.0.1 Part 4 section 3.1.1 sets 48), without ``:`` (it would
split HTTP Basic's user:password), ``/`` or ``\\``, no space at either end, and not ``.`` or ``..``
(URL dot-segments: in the cloud's URL they would name another path, RFC 3986 5.2.4). That is looser
than 2.0.1's identifierString, because 1.6 identities in the field contain spaces and other
printable characters (the 2.0.1 spec's own example is "RDAM 123"), and strict enough to be safe
as a store key, a log field and an HTTP Basic user.
"""

from __future__ import annotations

from typing import Final

MAX_CHARGE_POINT_ID_CHARS: Final = 48
_FORBIDDEN: Final = frozenset(":/\\")


def identity_problem(identity: str) -> str | None:
    """Why ``identity`` cannot be a charge point identity, or None when it can."""
    if not identity:
        return "the identity is empty"
    if len(identity) > MAX_CHARGE_POINT_ID_CHARS:
        return f"the identity is longer than {MAX_CHARGE_POINT_ID_CHARS} characters"
    if identity in (".", ".."):
        return f"the identity is {identity!r}, a URL dot-segment (the cloud's URL would lose it)"
    if identity != identity.strip():
        return "the identity starts or ends with a space"
    for char in identity:
        if not (" " <= char <= "~") or char in _FORBIDDEN:
            return f"the identity contains {char!r}"
    return None
