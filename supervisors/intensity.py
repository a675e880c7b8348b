"""Restart intensity and backoff: small pure functions over monotonic time.

Intensity as in OTP's supervisor.erl: a supervisor may restart at most ``max_restarts`` children in
any ``period_s``; one more and it gives up, stopping its children and exiting so its own supervisor
decides (escalation). Backoff is for children that talk to the network: the delay before restart
``n`` grows as ``min_s * factor**n`` up to ``max_s``, scattered by +-``jitter`` so a fleet of links
does not reconnect in lockstep, and ``n`` goes back to 0 once a child has run ``reset_after_s``.
"""

from __future__ import annotations

from dataclasses import dataclass


def restart_allowed(
    history: tuple[float, ...], now: float, *, max_restarts: int, period_s: float
) -> tuple[bool, tuple[float, ...]]:
    """Add a restart at ``now``; return whether it is within intensity, and the pruned history."""
    recent = (*(t for t in history if now - t < period_s), now)
    return len(recent) <= max_restarts, recent


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    min_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2
    reset_after_s: float = 30.0


def backoff_delay_s(backoff: Backoff, attempt: int, unit_random: float) -> float:
    """Delay before restart number ``attempt`` (0-based); ``unit_random`` is uniform in [0, 1)."""
    base = min(backoff.max_s, backoff.min_s * backoff.factor ** max(0, attempt))
    spread = backoff.jitter * (2.0 * unit_random - 1.0)
    return max(0.0, base * (1.0 + spread))


def next_attempt(attempt: int, ran_for_s: float, backoff: Backoff) -> int:
    """The attempt number after a child that ran ``ran_for_s`` failed again."""
    return 0 if ran_for_s >= backoff.reset_after_s else attempt + 1
