"""Payloads made from the official schemas, for tests: valid ones, and near misses.

``valid(schema)`` draws a payload that follows the schema (required fields always, optional ones
sometimes); ``mutated(payload)`` changes one spot of it (drops a key, swaps a value for another
JSON value, adds a key, stretches a string), which is where two validators are likeliest to
disagree.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from drivers.ocpp.codes import OcppVersion
from drivers.ocpp.validation import actions

SCHEMAS: list[tuple[OcppVersion, str, bool]] = [
    (version, action, response)
    for version in OcppVersion
    for action in sorted(actions(version))
    for response in (False, True)
]

_STAMPS = ["2024-05-01T12:00:00Z", "2024-05-01T12:00:00.123+02:00", "not a date"]


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/definitions/"), ref
        node = root["definitions"][ref.removeprefix("#/definitions/")]
    return node


def valid(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    return _node(schema, schema, depth=0)


def _node(node: dict[str, Any], root: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
    node = _resolve(node, root)
    kind = node.get("type")
    if "enum" in node:
        return st.sampled_from(node["enum"])
    if kind == "object":
        props: dict[str, Any] = node.get("properties", {})
        required = set(node.get("required", ()))
        fields = {k: _node(v, root, depth + 1) for k, v in props.items() if k in required}
        optional = {
            k: _node(v, root, depth + 1)
            for k, v in props.items()
            if k not in required and depth < 4
        }
        return st.fixed_dictionaries(fields, optional=optional)
    if kind == "array":
        low = node.get("minItems", 0)
        high = min(node.get("maxItems", low + 2), low + 2)
        return st.lists(_node(node.get("items", {}), root, depth + 1), min_size=low, max_size=high)
    if kind == "string":
        if node.get("format") == "date-time":
            return st.sampled_from(_STAMPS)
        return st.text(
            alphabet="abcXYZ019-_ é", min_size=0, max_size=min(node.get("maxLength", 12), 12)
        )
    if kind == "integer":
        return st.integers(node.get("minimum", -5), node.get("maximum", 100_000))
    if kind == "number":
        if "multipleOf" in node:
            return st.integers(0, 5000).map(lambda i: i / 10)
        return st.floats(
            node.get("minimum", -1e6), node.get("maximum", 1e6), allow_nan=False, width=64
        )
    if kind == "boolean":
        return st.booleans()
    return st.none()


_JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 1, -1, 1.0, 0.5, 21.4, 4.11, True, "", "Accepted", "x" * 50]),
    st.text(max_size=30),
)
JSON_VALUES = st.recursive(
    _JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _spots(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    spots = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            spots += _spots(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            spots += _spots(v, (*path, i))
    return spots


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        value = value[p]
    return value


def _with(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    """A copy of ``value`` with the spot at ``path`` replaced (or removed when new is _DROP)."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        copy = dict(value)
        if not rest and new is _DROP:
            del copy[head]
        else:
            copy[head] = _with(value[head], rest, new)
        return copy
    copy_list = list(value)
    if not rest and new is _DROP:
        del copy_list[head]
    else:
        copy_list[head] = _with(value[head], rest, new)
    return copy_list


_DROP = object()


@st.composite
def mutated(draw: st.DrawFn, payload: Any) -> Any:
    spots = _spots(payload)
    path = draw(st.sampled_from(spots))
    target = _get(payload, path)
    how = draw(st.sampled_from(["drop", "replace", "add", "stretch"]))
    if how == "drop" and path:
        return _with(payload, path, _DROP)
    if how == "add" and isinstance(target, dict):
        key = draw(st.text(max_size=10) | st.sampled_from(["customData", "extra", "vendorId"]))
        return _with(payload, path, {**target, key: draw(JSON_VALUES)})
    if how == "stretch" and isinstance(target, str):
        return _with(payload, path, target + "y" * draw(st.integers(1, 300)))
    return _with(payload, path, draw(JSON_VALUES))
