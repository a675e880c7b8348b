"""Framing: every bad frame gets the error code its version wants, and nothing else escapes."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.ocpp.codes import ErrorKind, OcppVersion, error_codes
from drivers.ocpp.framing import (
    Call,
    CallError,
    CallResult,
    Frame,
    FrameError,
    InvalidMessageId,
    MalformedFrame,
    UnknownMessageType,
    call_error_text,
    call_result_text,
    call_text,
    parse_frame,
)
from drivers.ocpp.validation import validate_call
from tests.unit.ocpp.payloads import JSON_VALUES

V16, V201 = OcppVersion.V16, OcppVersion.V201
ID36 = "x" * 36


@pytest.mark.parametrize(
    ("text", "exc", "code_16", "code_201", "reply_id"),
    [
        pytest.param(
            "not json",
            MalformedFrame,
            "FormationViolation",
            "RpcFrameworkError",
            "-1",
            id="not-json",
        ),
        pytest.param(
            '[2,"1","Heartbeat",{}',
            MalformedFrame,
            "FormationViolation",
            "RpcFrameworkError",
            "-1",
            id="truncated",
        ),
        pytest.param(
            '{"a":1}',
            MalformedFrame,
            "FormationViolation",
            "RpcFrameworkError",
            "-1",
            id="object-not-array",
        ),
        pytest.param(
            "[]", MalformedFrame, "FormationViolation", "RpcFrameworkError", "-1", id="empty-array"
        ),
        pytest.param(
            '"[2]"', MalformedFrame, "FormationViolation", "RpcFrameworkError", "-1", id="string"
        ),
        pytest.param(
            "[2]", InvalidMessageId, "FormationViolation", "RpcFrameworkError", "-1", id="no-id"
        ),
        pytest.param(
            '[2,17,"Heartbeat",{}]',
            InvalidMessageId,
            "FormationViolation",
            "RpcFrameworkError",
            "-1",
            id="id-not-string",
        ),
        pytest.param(
            '[2,"","Heartbeat",{}]',
            InvalidMessageId,
            "FormationViolation",
            "RpcFrameworkError",
            "-1",
            id="id-empty",
        ),
        pytest.param(
            f'[2,"{ID36}y","Heartbeat",{{}}]',
            InvalidMessageId,
            "FormationViolation",
            "RpcFrameworkError",
            "-1",
            id="id-37-chars",
        ),
        pytest.param(
            '["2","a","Heartbeat",{}]',
            MalformedFrame,
            "FormationViolation",
            "FormatViolation",
            "a",
            id="type-not-int",
        ),
        pytest.param(
            '[true,"a","Heartbeat",{}]',
            MalformedFrame,
            "FormationViolation",
            "FormatViolation",
            "a",
            id="type-bool",
        ),
        pytest.param(
            '[2,"a","Heartbeat"]',
            MalformedFrame,
            "FormationViolation",
            "FormatViolation",
            "a",
            id="call-3-elements",
        ),
        pytest.param(
            '[2,"a","Heartbeat",{},{}]',
            MalformedFrame,
            "FormationViolation",
            "FormatViolation",
            "a",
            id="call-5-elements",
        ),
        pytest.param(
            '[2,"a",7,{}]',
            MalformedFrame,
            "FormationViolation",
            "FormatViolation",
            "a",
            id="action-not-string",
        ),
        pytest.param(
            '[2,"a","",{}]',
            MalformedFrame,
            "FormationViolation",
            "FormatViolation",
            "a",
            id="action-empty",
        ),
        pytest.param(
            '[2,"a","Heartbeat",[]]',
            MalformedFrame,
            "FormationViolation",
            "FormatViolation",
            "a",
            id="payload-array",
        ),
        pytest.param(
            '[2,"a","Heartbeat","{}"]',
            MalformedFrame,
            "FormationViolation",
            "FormatViolation",
            "a",
            id="payload-string",
        ),
        pytest.param(
            '[7,"a",{}]',
            UnknownMessageType,
            None,
            "MessageTypeNotSupported",
            "a",
            id="unknown-type",
        ),
        pytest.param(
            "[5]",
            UnknownMessageType,
            None,
            "MessageTypeNotSupported",
            "-1",
            id="unknown-type-no-id",
        ),
        pytest.param(
            '[3.0,"a",{}]',
            MalformedFrame,
            "FormationViolation",
            "FormatViolation",
            "a",
            id="type-float",
        ),
    ],
)
def test_bad_call_frames(
    text: str, exc: type[FrameError], code_16: str | None, code_201: str, reply_id: str
) -> None:
    with pytest.raises(exc) as caught:
        parse_frame(text)
    err = caught.value
    assert type(err) is exc
    for version, code in ((V16, code_16), (V201, code_201)):
        reply = err.reply(version)
        if code is None:
            assert reply is None
            continue
        assert reply is not None
        parsed = orjson.loads(reply)
        assert parsed[:3] == [4, reply_id, code]
        assert isinstance(parsed[3], str)
        assert parsed[4] == {}
        assert code in error_codes(version)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('[3,"a"]', id="result-short"),
        pytest.param('[3,"a",[]]', id="result-payload-array"),
        pytest.param('[4,"a","X"]', id="error-short"),
        pytest.param('[4,"a",1,"d",{}]', id="error-code-not-string"),
        pytest.param('[4,"a","X","d",[]]', id="error-details-array"),
    ],
)
def test_bad_answers_are_never_answered(text: str) -> None:
    with pytest.raises(MalformedFrame) as caught:
        parse_frame(text)
    assert caught.value.reply(V16) is None
    assert caught.value.reply(V201) is None
    assert caught.value.kind is ErrorKind.FORMAT


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            '[2, "m1", "Heartbeat", {}]',
            Call(message_id="m1", action="Heartbeat", payload={}, raw='[2, "m1", "Heartbeat", {}]'),
            id="call",
        ),
        pytest.param(
            '[2,"m1","Heartbeat",null]',
            Call(message_id="m1", action="Heartbeat", payload={}, raw='[2,"m1","Heartbeat",null]'),
            id="call-null-payload",
        ),
        pytest.param(
            '[3,"m1",{"currentTime":"2024-01-01T00:00:00Z"}]',
            CallResult(
                message_id="m1",
                payload={"currentTime": "2024-01-01T00:00:00Z"},
                raw='[3,"m1",{"currentTime":"2024-01-01T00:00:00Z"}]',
            ),
            id="result",
        ),
        pytest.param(
            '[4,"m1","NotImplemented","",{}]',
            CallError(
                message_id="m1",
                code="NotImplemented",
                description="",
                details={},
                raw='[4,"m1","NotImplemented","",{}]',
            ),
            id="error",
        ),
        pytest.param(
            '[4,"m1","GenericError","oops"]',
            CallError(
                message_id="m1",
                code="GenericError",
                description="oops",
                details={},
                raw='[4,"m1","GenericError","oops"]',
            ),
            id="error-without-details",
        ),
        pytest.param(
            f'[2,"{ID36}","Heartbeat",{{}}]',
            Call(
                message_id=ID36,
                action="Heartbeat",
                payload={},
                raw=f'[2,"{ID36}","Heartbeat",{{}}]',
            ),
            id="id-36-chars",
        ),
    ],
)
def test_good_frames_keep_their_text(text: str, expected: Any) -> None:
    frame = parse_frame(text)
    assert frame == expected
    assert frame.raw is text


def test_writers_round_trip() -> None:
    assert parse_frame(call_text("a", "Heartbeat", {})) == Call(
        message_id="a", action="Heartbeat", payload={}, raw='[2,"a","Heartbeat",{}]'
    )
    assert call_result_text("a", {"status": "Accepted"}) == '[3,"a",{"status":"Accepted"}]'
    assert call_error_text("-1", "RpcFrameworkError") == '[4,"-1","RpcFrameworkError","",{}]'
    long = call_error_text("a", "GenericError", "d" * 300)
    assert len(orjson.loads(long)[3]) == 255
    with pytest.raises(ValueError, match="1 to 36"):
        call_text(ID36 + "y", "Heartbeat", {})


def _frame_texts() -> st.SearchStrategy[str]:
    ids = st.one_of(st.text(max_size=40), st.integers(), st.none(), st.just("ok"))
    types = st.one_of(st.sampled_from([2, 3, 4, 5, 0, -1, 2.0, "2", True]), st.integers())
    actions = st.one_of(
        st.sampled_from(
            [
                "Heartbeat",
                "Authorize",
                "BootNotification",
                "TransactionEvent",
                "StartTransaction",
                "",
            ]
        ),
        st.text(max_size=12),
        st.integers(),
    )
    frames = st.lists(st.one_of(types, ids, actions, JSON_VALUES), max_size=6).map(json.dumps)
    structured = st.tuples(types, ids, actions, JSON_VALUES).map(lambda t: json.dumps(list(t)))
    garbage = st.text(max_size=40)
    return st.one_of(frames, structured, garbage, JSON_VALUES.map(json.dumps))


def _outcome(text: str, version: OcppVersion) -> Frame | FrameError:
    try:
        frame = parse_frame(text)
        if isinstance(frame, Call):
            validate_call(frame, version)
    except FrameError as err:
        return err
    return frame


@settings(max_examples=600, deadline=None)
@given(text=_frame_texts(), version=st.sampled_from(list(OcppVersion)))
def test_any_text_parses_or_is_classified(text: str, version: OcppVersion) -> None:
    """The parser raises only our errors, and every CALL validates or earns a valid CALLERROR."""
    outcome = _outcome(text, version)  # anything but a FrameError escapes and fails the test
    if not isinstance(outcome, FrameError):
        assert outcome.raw is text
        return
    reply = outcome.reply(version)
    if reply is None:
        assert outcome.message_type in (3, 4) or (
            isinstance(outcome, UnknownMessageType) and version is V16
        )
        return
    parsed = orjson.loads(reply)
    assert parsed[0] == 4
    assert isinstance(parsed[1], str)
    assert 1 <= len(parsed[1]) <= 36
    assert parsed[2] in error_codes(version)
    assert isinstance(parsed[3], str)
    assert len(parsed[3]) <= 255
    assert isinstance(parsed[4], dict)
    assert parse_frame(reply).raw == reply  # our own CALLERROR is a valid frame
