"""Central rules: a versioned bundle from the cloud (DataTransfer) or a file, applied all or nothing.

Bundle schema (JSON object; TOML files use the same shape)::

    {
      "kind": "edge-rules",                 # required, exactly this
      "version": 12,                        # required integer >= 1, owned by the cloud
      "issued_utc": "2025-06-01T12:00:00Z", # optional RFC 3339 time
      "rollback": false,                    # optional; true lets a lower version replace this one
      "authorization": {                    # optional; any of the [authorization] config keys
        "unknown_id_offline": "accept_capped", "unknown_id_energy_cap_wh": 5000, ...
      },
      "site": {"margin_a": 2.0, "max_current_a": 63.0},          # optional, amperes per phase
      "charge_points": {                                         # optional, by charge point id
        "CP001": {"priority": 10, "max_current_a": 16.0,
                  "unknown_id_offline": "reject"}                # per-point fallback override
      }
    }

``priority`` is an integer 0..100, higher served first (the allocator's order). A charge point's
``unknown_id_offline`` of ``accept_capped`` takes its cap from the same table or else from the
bundle's ``authorization``. ``validate`` reports every problem with its path (``charge_points.CP001
.max_current_a``); ``apply`` refuses a bundle with any problem and changes nothing.

Versions: higher applies; equal with the same content is answered ``already_applied`` (idempotent
re-delivery), equal with other content is refused; lower is refused unless ``"rollback": true``.
The replaced rules are kept, and ``rollback`` restores them exactly. Every outcome carries a diff
(``Change`` paths with before/after) for the audit trail.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeGuard

import orjson

from actors.auth_settings import AUTH_KEYS, AuthSettings, plain_value_problem, with_overrides
from actors.utc import format_utc, parse_utc

KIND = "edge-rules"
_TOP = ("kind", "version", "issued_utc", "rollback", "authorization", "site", "charge_points")
_SITE = {"margin_a": 0.0, "max_current_a": None}  # name -> exclusive lower bound (None: >= 0)
_CP_KEYS = ("priority", "max_current_a", "unknown_id_offline", "unknown_id_energy_cap_wh")


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True, slots=True)
class Change:
    path: str
    before: Any  # None: absent
    after: Any

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "before": self.before, "after": self.after}


@dataclass(frozen=True, slots=True, kw_only=True)
class Rules:
    """A validated bundle. ``doc`` is its canonical JSON form (what was validated)."""

    version: int
    issued_utc: datetime | None
    doc: Mapping[str, Any]

    def auth_settings(self, base: AuthSettings, charge_point_id: str | None = None) -> AuthSettings:
        site = with_overrides(base, self.doc.get("authorization", {}))
        if charge_point_id is None:
            return site
        cp = self.doc.get("charge_points", {}).get(charge_point_id, {})
        return with_overrides(site, {k: v for k, v in cp.items() if k in AUTH_KEYS})

    def charge_point(self, charge_point_id: str) -> Mapping[str, Any]:
        """``priority`` / ``max_current_a`` set for one charge point (empty when none)."""
        cp = self.doc.get("charge_points", {}).get(charge_point_id, {})
        return {k: v for k, v in cp.items() if k in ("priority", "max_current_a")}

    def site(self) -> Mapping[str, float]:
        return dict(self.doc.get("site", {}))


def decode(data: object) -> tuple[object, tuple[Problem, ...]]:
    """A DataTransfer ``data`` string or file bytes as a document (dicts pass through)."""
    if isinstance(data, str | bytes):
        try:
            return orjson.loads(data), ()
        except orjson.JSONDecodeError as exc:
            return None, (Problem("<bundle>", f"not JSON: {exc}"),)
    return data, ()


def validate(doc: object) -> tuple[Problem, ...]:
    """Every problem in ``doc``, each with its path."""
    problems: list[Problem] = []
    add = problems.append
    if not isinstance(doc, Mapping):
        return (Problem("<bundle>", f"expected an object, got {type(doc).__name__}"),)
    for key in doc:
        if key not in _TOP:
            add(Problem(str(key), "no such key (expected one of " + ", ".join(_TOP) + ")"))
    if doc.get("kind") != KIND:
        add(Problem("kind", f"expected {KIND!r}, got {doc.get('kind')!r}"))
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        add(Problem("version", f"expected an integer >= 1, got {version!r}"))
    if "issued_utc" in doc:
        try:
            parse_utc(doc["issued_utc"], where="issued_utc")
        except ValueError as exc:
            add(Problem("issued_utc", str(exc).removeprefix("issued_utc: ")))
    if "rollback" in doc and not isinstance(doc["rollback"], bool):
        add(Problem("rollback", f"expected true or false, got {doc['rollback']!r}"))
    auth = _table(doc, "authorization", problems)
    for key, value in auth.items():
        _auth_value("authorization", key, value, problems)
    if auth.get("unknown_id_offline") == "accept_capped" and "unknown_id_energy_cap_wh" not in auth:
        add(Problem("authorization.unknown_id_energy_cap_wh", "required by 'accept_capped'"))
    site = _table(doc, "site", problems)
    for key, value in site.items():
        if key not in _SITE:
            add(Problem(f"site.{key}", "no such key (expected margin_a or max_current_a)"))
        elif (problem := _amperes(value, zero_ok=key == "margin_a")) is not None:
            add(Problem(f"site.{key}", problem))
    cps = _table(doc, "charge_points", problems)
    for cp_id, cp in cps.items():
        path = f"charge_points.{cp_id}"
        if not isinstance(cp, Mapping):
            add(Problem(path, f"expected a table, got {cp!r}"))
            continue
        for key, value in cp.items():
            if key not in _CP_KEYS:
                add(Problem(f"{path}.{key}", "no such key (expected " + ", ".join(_CP_KEYS) + ")"))
            elif key == "priority":
                if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
                    add(Problem(f"{path}.priority", f"expected an integer 0..100, got {value!r}"))
            elif key == "max_current_a":
                if (problem := _amperes(value, zero_ok=False)) is not None:
                    add(Problem(f"{path}.max_current_a", problem))
                elif _number(site.get("max_current_a")) and value > site["max_current_a"]:
                    add(Problem(f"{path}.max_current_a", f"{value} A is above site.max_current_a"))
            else:
                _auth_value(path, key, value, problems)
        capped = cp.get("unknown_id_offline") == "accept_capped"
        if (
            capped
            and "unknown_id_energy_cap_wh" not in cp
            and "unknown_id_energy_cap_wh" not in auth
        ):
            add(Problem(f"{path}.unknown_id_energy_cap_wh", "required by 'accept_capped'"))
    margin, top = site.get("margin_a"), site.get("max_current_a")
    if _number(margin) and _number(top) and margin >= top:
        add(Problem("site.margin_a", "must be below site.max_current_a"))
    return tuple(problems)


def _table(doc: Mapping[str, Any], name: str, problems: list[Problem]) -> Mapping[str, Any]:
    value = doc.get(name, {})
    if isinstance(value, Mapping):
        return value
    problems.append(Problem(name, f"expected a table, got {value!r}"))
    return {}


def _auth_value(path: str, key: object, value: object, problems: list[Problem]) -> None:
    if not isinstance(key, str) or key not in AUTH_KEYS:
        problems.append(Problem(f"{path}.{key}", "no such authorization setting"))
    elif problem := plain_value_problem(key, value):
        problems.append(Problem(f"{path}.{key}", f"expected {problem}, got {value!r}"))


def _number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _amperes(value: object, *, zero_ok: bool) -> str | None:
    if not _number(value):
        return f"expected a number of amperes, got {value!r}"
    if value < 0 or (value == 0 and not zero_ok) or value > 10_000:
        return f"expected {'0' if zero_ok else 'more than 0'} to 10000 A, got {value!r}"
    return None


def parse(doc: object) -> Rules | tuple[Problem, ...]:
    problems = validate(doc)
    if problems:
        return problems
    assert isinstance(doc, Mapping)
    canonical = orjson.loads(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))
    canonical.pop("rollback", None)  # a property of the delivery, not of the rules
    issued = canonical.get("issued_utc")
    return Rules(
        version=canonical["version"],
        issued_utc=None if issued is None else parse_utc(issued, where="issued_utc"),
        doc=canonical,
    )


# --- applying --------------------------------------------------------------------------------

Outcome = Literal["applied", "already_applied", "refused", "rolled_back"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RulesState:
    current: Rules | None = None
    previous: Rules | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RulesOutcome:
    outcome: Outcome
    state: RulesState  # unchanged unless applied / rolled back
    reason: str
    problems: tuple[Problem, ...] = ()
    diff: tuple[Change, ...] = field(default_factory=tuple)

    def audit_inputs(self) -> dict[str, Any]:
        current = self.state.current
        return {
            "outcome": self.outcome,
            "version": None if current is None else current.version,
            "problems": [str(p) for p in self.problems],
            "diff": [c.to_json() for c in self.diff],
        }


def apply(state: RulesState, bundle: object) -> RulesOutcome:
    doc, problems = decode(bundle)
    parsed = problems or parse(doc)
    if not isinstance(parsed, Rules):
        version = doc.get("version") if isinstance(doc, Mapping) else None
        return RulesOutcome(
            outcome="refused",
            state=state,
            reason=f"bundle version {version!r} refused: {len(parsed)} problem(s), nothing applied",
            problems=parsed,
        )
    current = state.current
    if current is not None:
        if parsed.version == current.version:
            if parsed.doc == current.doc:
                return RulesOutcome(
                    outcome="already_applied",
                    state=state,
                    reason=f"version {parsed.version} is already applied",
                )
            return RulesOutcome(
                outcome="refused",
                state=state,
                reason=f"version {parsed.version} is already applied with other content",
                problems=(Problem("version", "same version, different content"),),
                diff=diff(current, parsed),
            )
        explicit = isinstance(doc, Mapping) and doc.get("rollback") is True
        if parsed.version < current.version and not explicit:
            return RulesOutcome(
                outcome="refused",
                state=state,
                reason=f"version {parsed.version} is below the applied {current.version}",
                problems=(Problem("version", f"must be above {current.version} (or rollback)"),),
            )
    was = "none" if current is None else str(current.version)
    return RulesOutcome(
        outcome="applied",
        state=RulesState(current=parsed, previous=current),
        reason=f"version {parsed.version} applied (was {was})",
        diff=diff(current, parsed),
    )


def rollback(state: RulesState) -> RulesOutcome:
    """Back to the rules before the last apply; one level, so a second rollback is refused."""
    if state.current is None or state.previous is None:
        return RulesOutcome(
            outcome="refused", state=state, reason="no previous rules to roll back to"
        )
    return RulesOutcome(
        outcome="rolled_back",
        state=RulesState(current=state.previous, previous=None),
        reason=f"rolled back from version {state.current.version} to {state.previous.version}",
        diff=diff(state.current, state.previous),
    )


def diff(old: Rules | None, new: Rules | None) -> tuple[Change, ...]:
    before = _flatten(old.doc) if old is not None else {}
    after = _flatten(new.doc) if new is not None else {}
    return tuple(
        Change(path, before.get(path), after.get(path))
        for path in sorted(before.keys() | after.keys())
        if before.get(path) != after.get(path)
    )


def _flatten(doc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


# --- persistence -----------------------------------------------------------------------------

RECORD = "rules_state"
RECORD_VERSION = 1
# MIGRATIONS[n] turns a version-n record into a version-(n+1) record.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def state_to_dict(state: RulesState) -> dict[str, Any]:
    return {
        "record": RECORD,
        "rv": RECORD_VERSION,
        "current": None if state.current is None else dict(state.current.doc),
        "previous": None if state.previous is None else dict(state.previous.doc),
    }


def state_from_dict(data: object) -> RulesState:
    if not isinstance(data, Mapping) or data.get("record") != RECORD:
        raise ValueError(f"not a {RECORD} record: {data!r:.200}")
    doc = dict(data)
    rv = doc.get("rv")
    if not isinstance(rv, int) or not 1 <= rv <= RECORD_VERSION:
        raise ValueError(f"{RECORD}.rv: expected 1..{RECORD_VERSION}, got {rv!r}")
    while rv < RECORD_VERSION:
        migrate = MIGRATIONS.get(rv)
        if migrate is None:
            raise ValueError(f"{RECORD} record version {rv} has no migration to {rv + 1}")
        doc = migrate(doc)
        rv += 1

    def load(name: str) -> Rules | None:
        if doc.get(name) is None:
            return None
        parsed = parse(doc[name])
        if not isinstance(parsed, Rules):
            raise ValueError(f"{RECORD}.{name}: " + "; ".join(str(p) for p in parsed))
        return parsed

    return RulesState(current=load("current"), previous=load("previous"))


def describe(rules: Rules | None) -> str:
    if rules is None:
        return "no central rules"
    issued = "" if rules.issued_utc is None else f" issued {format_utc(rules.issued_utc)}"
    return f"rules version {rules.version}{issued}"
