"""Wall-clock times as OCPP and the audit trail write them: aware datetimes in UTC.

OCPP dateTime values are RFC 3339; many charge points and backends drop the offset, and the
protocol means UTC everywhere, so a naive value is read as UTC rather than refused.
"""

from __future__ import annotations

from datetime import UTC, datetime


def parse_utc(text: object, *, where: str) -> datetime:
    """An RFC 3339 / ISO 8601 time as an aware UTC datetime; ``where`` names it in the error."""
    if not isinstance(text, str):
        raise ValueError(f"{where}: expected an RFC 3339 time string, got {text!r}")
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{where}: expected an RFC 3339 time, got {text!r}") from None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:00:00-05:00: past the year 9999 in UTC
        raise ValueError(f"{where}: {text!r} is out of range in UTC") from None


def format_utc(value: datetime) -> str:
    """``2025-01-31T12:00:00Z``, with microseconds only when there are some (exact round trip)."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: wall-clock times here are aware UTC")
    text = value.astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def require_aware(value: datetime, *, where: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{where}: naive datetime {value!r}; pass an aware UTC time")
    return value
