"""How much a relay pays to parse and schema-check one OCPP frame, ours against the ocpp package.

Both sides do the same work on the same texts: parse the frame and validate its payload against
the official schema (a CALL against the request schema, a CALLRESULT against the response one).

- baseline: the ocpp package's own path, ``ocpp.messages.unpack`` (json) and
  ``_validate_payload`` (jsonschema Draft-4 validators, cached per action);
- ours: ``drivers.ocpp.framing.parse_frame`` (orjson) and ``drivers.ocpp.validation``
  (fastjsonschema, compiled once);
- jsonschema-rs, when it happens to be importable (it is not a dependency): its validators over
  the same schema files, payloads parsed with orjson.

Usage: ``python bench/validation.py [--quick]``. The last lines are the figures: microseconds per
frame (best of several rounds, one core) and the ratio against the baseline of the same run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from drivers.ocpp.codes import OcppVersion
from drivers.ocpp.framing import Call, CallError, parse_frame
from drivers.ocpp.validation import load_schema, preload, validate_payload

V16, V201 = OcppVersion.V16, OcppVersion.V201
_DECIMAL_ACTIONS = {
    ("SetChargingProfile", False),
    ("RemoteStartTransaction", False),
    ("GetCompositeSchedule", True),
}

_SAMPLES_16 = [
    {"measurand": m, "value": v, "unit": u, "context": "Sample.Periodic", "phase": p}
    for m, v, u, p in [
        ("Energy.Active.Import.Register", "12345.6", "Wh", "L1"),
        ("Power.Active.Import", "7200", "W", "L1"),
        ("Current.Import", "16.1", "A", "L1"),
        ("Current.Import", "15.9", "A", "L2"),
        ("Current.Import", "16.0", "A", "L3"),
        ("Voltage", "230.1", "V", "L1"),
        ("Voltage", "229.8", "V", "L2"),
        ("Voltage", "231.0", "V", "L3"),
    ]
]

# (version, frame text, action for a CALLRESULT); a relay's typical mix, both directions.
FRAMES: list[tuple[OcppVersion, str, str | None]] = [
    (V16, '[2,"1","Heartbeat",{}]', None),
    (V16, '[3,"1",{"currentTime":"2024-05-01T12:00:00.000Z"}]', "Heartbeat"),
    (
        V16,
        '[2,"2","StatusNotification",{"connectorId":1,"errorCode":"NoError",'
        '"status":"Charging","timestamp":"2024-05-01T12:00:00Z"}]',
        None,
    ),
    (
        V16,
        orjson.dumps(
            [
                2,
                "3",
                "MeterValues",
                {
                    "connectorId": 1,
                    "transactionId": 4711,
                    "meterValue": [
                        {"timestamp": "2024-05-01T12:00:00Z", "sampledValue": _SAMPLES_16}
                    ],
                },
            ]
        ).decode(),
        None,
    ),
    (
        V16,
        '[2,"4","StartTransaction",{"connectorId":1,"idTag":"04A2B3C4D5","meterStart":12000,'
        '"timestamp":"2024-05-01T12:00:00Z"}]',
        None,
    ),
    (
        V16,
        '[3,"4",{"transactionId":4711,"idTagInfo":{"status":"Accepted"}}]',
        "StartTransaction",
    ),
    (
        V16,
        '[2,"5","SetChargingProfile",{"connectorId":1,"csChargingProfiles":{'
        '"chargingProfileId":10,"transactionId":4711,"stackLevel":1,'
        '"chargingProfilePurpose":"TxProfile","chargingProfileKind":"Relative",'
        '"chargingSchedule":{"chargingRateUnit":"A","chargingSchedulePeriod":'
        '[{"startPeriod":0,"limit":16.0,"numberPhases":3}]}}}]',
        None,
    ),
    (
        V201,
        orjson.dumps(
            [
                2,
                "6",
                "TransactionEvent",
                {
                    "eventType": "Updated",
                    "timestamp": "2024-05-01T12:00:00Z",
                    "triggerReason": "MeterValuePeriodic",
                    "seqNo": 7,
                    "transactionInfo": {"transactionId": "tx-1", "chargingState": "Charging"},
                    "evse": {"id": 1, "connectorId": 1},
                    "meterValue": [
                        {
                            "timestamp": "2024-05-01T12:00:00Z",
                            "sampledValue": [
                                {"value": 12345.6, "measurand": "Energy.Active.Import.Register"},
                                {"value": 7200, "measurand": "Power.Active.Import"},
                                {"value": 16.1, "measurand": "Current.Import", "phase": "L1"},
                            ],
                        }
                    ],
                },
            ]
        ).decode(),
        None,
    ),
]


def ours(version: OcppVersion, text: str, action: str | None) -> None:
    frame = parse_frame(text)
    if isinstance(frame, Call):
        validate_payload(version, frame.action, frame.payload, response=False)
    else:
        assert action is not None
        assert not isinstance(frame, CallError)
        validate_payload(version, action, frame.payload, response=True)


def baseline() -> Callable[[OcppVersion, str, str | None], None]:
    messages: Any = importlib.import_module("ocpp.messages")

    def run(version: OcppVersion, text: str, action: str | None) -> None:
        message = messages.unpack(text)
        if action is not None:
            message.action = action
        messages._validate_payload(message, version.value)

    return run


def jsonschema_rs() -> Callable[[OcppVersion, str, str | None], None] | None:
    try:
        module: Any = importlib.import_module("jsonschema_rs")
    except ImportError:
        return None
    validators: dict[tuple[OcppVersion, str, bool], Any] = {}

    def run(version: OcppVersion, text: str, action: str | None) -> None:
        msg = orjson.loads(text)
        response = action is not None
        name: str = action if action is not None else msg[2]
        key = (version, name, response)
        validator = validators.get(key)
        if validator is None:
            schema = load_schema(version, name, response=response)
            schema["$schema"] = "http://json-schema.org/draft-04/schema#"
            validator = validators[key] = module.Draft4Validator(schema)
        validator.validate(msg[-1])

    return run


def per_frame_us(
    run: Callable[[OcppVersion, str, str | None], None], loops: int, rounds: int
) -> float:
    for version, text, action in FRAMES:  # warm caches (compiled validators) outside the timing
        run(version, text, action)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(loops):
            for version, text, action in FRAMES:
                run(version, text, action)
        best = min(best, time.perf_counter() - start)
    return best / (loops * len(FRAMES)) * 1e6


def validation_only_us(loops: int, rounds: int) -> tuple[float, float]:
    """Validation alone (payloads already parsed), jsonschema against fastjsonschema."""
    messages: Any = importlib.import_module("ocpp.messages")
    parsed: list[tuple[OcppVersion, str, bool, Any]] = []
    for version, text, action in FRAMES:
        frame = parse_frame(text)
        assert not isinstance(frame, CallError)
        name = frame.action if isinstance(frame, Call) else action
        assert name is not None
        parsed.append((version, name, action is not None, frame.payload))
    js: dict[tuple[OcppVersion, str, bool], tuple[Any, Any]] = {}
    for v, n, r, p in parsed:
        # ocpp validates these three 1.6 payloads as Decimal (multipleOf 0.1); so must we here.
        decimal = v is V16 and (n, r) in _DECIMAL_ACTIONS
        payload = json.loads(json.dumps(p), parse_float=Decimal) if decimal else p
        validator = messages.get_validator(
            3 if r else 2, n, v.value, parse_float=Decimal if decimal else float
        )
        js[(v, n, r)] = (validator, payload)

    def with_jsonschema() -> None:
        for validator, payload in js.values():
            validator.validate(payload)

    def with_fast() -> None:
        for v, n, r, p in parsed:
            validate_payload(v, n, p, response=r)

    results = []
    for fn in (with_jsonschema, with_fast):
        fn()
        best = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(loops):
                fn()
            best = min(best, time.perf_counter() - start)
        results.append(best / (loops * len(parsed)) * 1e6)
    return results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer loops, about a second")
    args = parser.parse_args()
    loops, rounds = (100, 3) if args.quick else (2000, 5)

    start = time.perf_counter()
    compiled = preload()
    compile_s = time.perf_counter() - start

    for version, text, action in FRAMES:  # both sides must accept the whole mix
        ours(version, text, action)
        baseline()(version, text, action)

    base_us = per_frame_us(baseline(), loops, rounds)
    ours_us = per_frame_us(ours, loops, rounds)
    rs = jsonschema_rs()
    rs_us = per_frame_us(rs, loops, rounds) if rs is not None else None
    js_only, fast_only = validation_only_us(loops, rounds)

    print(f"frames in the mix: {len(FRAMES)}; loops {loops} x {rounds} rounds, best round")
    print(f"compile all {compiled} schemas once (fastjsonschema): {compile_s * 1000:.0f} ms")
    print(f"parse+validate  ocpp package (json + jsonschema):  {base_us:8.1f} us/frame")
    print(f"parse+validate  ours (orjson + fastjsonschema):    {ours_us:8.1f} us/frame")
    if rs_us is not None:
        print(f"parse+validate  orjson + jsonschema-rs:            {rs_us:8.1f} us/frame")
    print(f"validate only   jsonschema:                        {js_only:8.1f} us/frame")
    print(f"validate only   fastjsonschema:                    {fast_only:8.1f} us/frame")
    print(f"ratio parse+validate baseline/ours: {base_us / ours_us:.1f}x")
    if rs_us is not None:
        print(f"ratio parse+validate baseline/jsonschema-rs: {base_us / rs_us:.1f}x")
    print(f"ratio validate-only jsonschema/fastjsonschema: {js_only / fast_only:.1f}x")


if __name__ == "__main__":
    main()
