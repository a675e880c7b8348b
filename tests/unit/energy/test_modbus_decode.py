"""Register decoding, request planning and the register-map registry, without sockets."""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.fields import ConfigError
from drivers.modbus import UnknownMeterModel, known_models, load_map_file, load_model
from drivers.modbus.decode import (
    Block,
    ImplausibleField,
    ReadPlan,
    Registers,
    UndefinedField,
    decode_fields,
    decode_planned,
    decode_words,
    is_essential,
    is_undefined,
    plan_blocks,
    to_reading,
)
from drivers.modbus.registers import MAPS_DIR, FieldSpec, RegisterMap


@pytest.mark.parametrize(
    ("words", "type_", "order", "expected"),
    [
        pytest.param([0x4366, 0x0000], "float32", "big", 230.0, id="float32-230V-high-word-first"),
        pytest.param([0x0000, 0x4366], "float32", "little", 230.0, id="float32-low-word-first"),
        pytest.param([0x0901, 0x0000], "int32", "little", 2305, id="em24-230.5V-raw-low-first"),
        pytest.param([0xFFFF, 0xFC18], "int32", "big", -1000, id="int32-negative"),
        pytest.param([0xFC18, 0xFFFF], "int32", "little", -1000, id="int32-negative-little"),
        pytest.param([0x8000], "int16", "big", -32768, id="int16-min"),
        pytest.param([0xFFFF], "uint16", "big", 65535, id="uint16-max"),
        pytest.param([0, 0, 0x0001, 0x86A0], "uint64", "big", 100000, id="uint64-abb-energy"),
        pytest.param([0x86A0, 0x0001, 0, 0], "uint64", "little", 100000, id="uint64-little"),
    ],
)
def test_decode_known_words(words: list[int], type_: str, order: str, expected: float) -> None:
    assert decode_words(words, type_, order) == expected  # type: ignore[arg-type]


@given(st.integers(min_value=-(2**31), max_value=2**31 - 1))
def test_int32_word_orders_are_mirror_images(value: int) -> None:
    hi, lo = struct.unpack(">HH", struct.pack(">i", value))
    assert decode_words([hi, lo], "int32", "big") == value
    assert decode_words([lo, hi], "int32", "little") == value


@pytest.mark.parametrize(
    ("value", "type_", "policy", "undefined"),
    [
        pytest.param(0xFFFFFFFF, "uint32", "all_ones", True, id="abb-uint32-all-ff"),
        pytest.param(0x7FFFFFFF, "int32", "all_ones", True, id="abb-int32-7fff"),
        pytest.param(-1, "int32", "all_ones", False, id="abb-int32-minus-one-is-a-value"),
        pytest.param(2**64 - 1, "uint64", "all_ones", True, id="abb-uint64-all-ff"),
        pytest.param(-32768, "int16", "sunspec", True, id="sunspec-int16-8000"),
        pytest.param(0xFFFF, "uint16", "sunspec", True, id="sunspec-uint16-ffff"),
        pytest.param(-32768, "int16", "none", False, id="no-policy"),
        pytest.param(math.nan, "float32", "none", True, id="nan-always-undefined"),
        pytest.param(12.5, "float32", "sunspec", False, id="float-value"),
    ],
)
def test_undefined_patterns(value: float, type_: str, policy: str, undefined: bool) -> None:
    assert is_undefined(value, type_, policy) is undefined  # type: ignore[arg-type]


def _map(fields: list[FieldSpec], **kw: object) -> RegisterMap:
    return RegisterMap(name="t", description="", fields=tuple(fields), **kw)  # type: ignore[arg-type]


def _f(
    name: str, address: int, type_: str = "uint16", table: str = "holding", **kw: object
) -> FieldSpec:
    return FieldSpec(name=name, address=address, table=table, type=type_, word_order="big", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "max_gap", "max_block", "expected"),
    [
        pytest.param(
            [_f("a", 0, "float32"), _f("b", 2, "float32")],
            0,
            100,
            [("holding", 0, 4)],
            id="adjacent",
        ),
        pytest.param(
            [_f("a", 0), _f("b", 10)], 9, 100, [("holding", 0, 11)], id="gap-within-max-gap"
        ),
        pytest.param(
            [_f("a", 0), _f("b", 10)],
            8,
            100,
            [("holding", 0, 1), ("holding", 10, 1)],
            id="gap-too-wide",
        ),
        pytest.param(
            [_f("a", 0), _f("b", 10)],
            40,
            10,
            [("holding", 0, 1), ("holding", 10, 1)],
            id="block-too-long",
        ),
        pytest.param(
            [_f("a", 0, table="input"), _f("b", 1)],
            40,
            100,
            [("holding", 1, 1), ("input", 0, 1)],
            id="tables-never-mix",
        ),
        pytest.param(
            [_f("a", 5, "int16", scale_factor=9)],
            40,
            100,
            [("holding", 5, 5)],
            id="scale-factor-register-read-too",
        ),
    ],
)
def test_plan_blocks(
    fields: list[FieldSpec], max_gap: int, max_block: int, expected: list[tuple[str, int, int]]
) -> None:
    blocks = plan_blocks(_map(fields, max_gap=max_gap, max_block=max_block))
    assert [(b.table, b.start, b.count) for b in blocks] == expected


@pytest.mark.parametrize(
    ("model", "requests"),
    [
        pytest.param("sdm630", 1, id="sdm630-one-request"),
        pytest.param("em24", 1, id="em24"),
        pytest.param("em340", 1, id="em340"),
        pytest.param("umg604", 1, id="umg604"),
        pytest.param("abb_b23", 2, id="abb-energy-and-values"),
        pytest.param("sunspec_int", 1, id="sunspec-int"),
        pytest.param("sunspec_float", 1, id="sunspec-float"),
    ],
)
def test_builtin_maps_plan_few_requests(model: str, requests: int) -> None:
    (m,) = load_model(model)
    assert len(plan_blocks(m)) == requests


@pytest.mark.parametrize(
    ("model", "field", "address", "table", "type_", "order", "scale"),
    [
        pytest.param(
            "sdm630", "current_l1_a", 0x06, "input", "float32", "big", 1.0, id="sdm630-I1"
        ),
        pytest.param("sdm630", "power_w", 0x34, "input", "float32", "big", 1.0, id="sdm630-P"),
        pytest.param(
            "sdm630", "energy_import_wh", 0x48, "input", "float32", "big", 1000, id="sdm630-kWh"
        ),
        pytest.param(
            "umg604", "current_l1_a", 1325, "holding", "float32", "big", 1.0, id="umg604-I1"
        ),
        pytest.param("umg604", "power_w", 1369, "holding", "float32", "big", 1.0, id="umg604-P"),
        pytest.param(
            "abb_b23", "current_l1_a", 0x5B0C, "holding", "uint32", "big", 0.01, id="abb-I1"
        ),
        pytest.param("abb_b23", "power_w", 0x5B14, "holding", "int32", "big", 0.01, id="abb-P"),
        pytest.param(
            "abb_b23", "energy_import_wh", 0x5000, "holding", "uint64", "big", 10, id="abb-E"
        ),
        pytest.param("em24", "current_l1_a", 0x0C, "input", "int32", "little", 0.001, id="em24-I1"),
        pytest.param("em24", "voltage_l1_v", 0x00, "input", "int32", "little", 0.1, id="em24-V1"),
        pytest.param("em24", "power_w", 0x28, "input", "int32", "little", 0.1, id="em24-P"),
        pytest.param(
            "em340", "current_l3_a", 0x10, "input", "int32", "little", 0.001, id="em340-I3"
        ),
        pytest.param(
            "sunspec_int", "current_l1_a", 3, "holding", "int16", "big", 1.0, id="ss-AphA"
        ),
        pytest.param("sunspec_int", "power_w", 18, "holding", "int16", "big", 1.0, id="ss-W"),
        pytest.param("sunspec_float", "power_w", 28, "holding", "float32", "big", 1.0, id="ssf-W"),
        # The fields each map reads besides the current: ENERGY-NOTES.md's table (SDM630, UMG 604
        # voltages), volkszaehler/mbmd (EM24 phase powers, kWh/10), the EM24-DIN protocol
        # (kWh(+) TOT 003Eh, kWh(-) TOT 005Ch), OpenEMS's UMG 604 (its phase powers 1333-1337),
        # the SunSpec 203 and 213 layouts (offsets from the model header: 203 PhVphA 8, V_SF 15;
        # 213 AphA 4, PhVphA 12). Every field of every map, with its sources and a hand-written
        # register image per model: test_meter_map_sources.py.
        pytest.param(
            "sdm630", "voltage_l2_v", 0x02, "input", "float32", "big", 1.0, id="sdm630-V2"
        ),
        pytest.param("sdm630", "power_l3_w", 0x10, "input", "float32", "big", 1.0, id="sdm630-P3"),
        pytest.param(
            "sdm630", "energy_export_wh", 0x4A, "input", "float32", "big", 1000, id="sdm630-kWh-out"
        ),
        pytest.param(
            "umg604", "voltage_l3_v", 1321, "holding", "float32", "big", 1.0, id="umg604-V3"
        ),
        pytest.param(
            "umg604", "power_l1_w", 1333, "holding", "float32", "big", 1.0, id="umg604-P1"
        ),
        pytest.param("em24", "power_l2_w", 0x14, "input", "int32", "little", 0.1, id="em24-P2"),
        pytest.param(
            "em24", "energy_import_wh", 0x3E, "input", "int32", "little", 100, id="em24-kWh"
        ),
        pytest.param(
            "em24", "energy_export_wh", 0x5C, "input", "int32", "little", 100, id="em24-kWh-out"
        ),
        pytest.param(
            "sunspec_int", "voltage_l1_v", 8, "holding", "int16", "big", 1.0, id="ss-PhVphA"
        ),
        pytest.param(
            "sunspec_float", "current_l1_a", 4, "holding", "float32", "big", 1.0, id="ssf-AphA"
        ),
        pytest.param(
            "sunspec_float", "voltage_l1_v", 12, "holding", "float32", "big", 1.0, id="ssf-PhVphA"
        ),
    ],
)
def test_datasheet_addresses(
    model: str, field: str, address: int, table: str, type_: str, order: str, scale: float
) -> None:
    (m,) = load_model(model)
    spec = m.field(field)
    assert spec is not None
    assert (spec.address, spec.table, spec.type, spec.word_order) == (address, table, type_, order)
    assert spec.scale == pytest.approx(scale)


def test_sunspec_scale_factor_registers() -> None:
    (m,) = load_model("sunspec_int")
    assert m.field("current_l1_a").scale_factor == 6  # type: ignore[union-attr]
    assert m.field("power_w").scale_factor == 22  # type: ignore[union-attr]
    assert m.field("voltage_l1_v").scale_factor == 15  # type: ignore[union-attr]
    assert m.field("energy_import_wh").scale_factor == 54  # type: ignore[union-attr]


def test_decode_fields_scale_factor_and_optional() -> None:
    m = _map(
        [
            _f("current_l1_a", 0, "int16", scale_factor=3),
            _f("x", 1, "int16", scale_factor=4, optional=True),
            _f("y", 2, "uint16", scale=0.5),
        ],
        undefined="sunspec",
    )
    regs = Registers(plan_blocks(m), [[1234, 77, 10, 0xFFFE, 0x8000]])
    assert decode_fields(m, regs) == {"current_l1_a": pytest.approx(12.34), "x": None, "y": 5.0}


def test_decode_fields_undefined_required_raises_with_address() -> None:
    m = _map([_f("current_l1_a", 7, "uint32")], undefined="all_ones")
    with pytest.raises(UndefinedField) as info:
        decode_fields(m, Registers(plan_blocks(m), [[0xFFFF, 0xFFFF]]))
    assert info.value.address == 7
    assert "FFFF FFFF" in str(info.value)


@pytest.mark.parametrize(
    ("sign", "current", "power", "expected"),
    [
        pytest.param("from_power", 10.0, -2300.0, -10.0, id="export-makes-current-negative"),
        pytest.param("from_power", -10.0, 2300.0, 10.0, id="import-positive"),
        pytest.param("from_power", 10.0, None, 10.0, id="no-phase-power-as-read"),
        pytest.param("as_read", 10.0, -2300.0, 10.0, id="as-read"),
    ],
)
def test_current_sign(sign: str, current: float, power: float | None, expected: float) -> None:
    m = _map([_f(f"current_l{p}_a", p) for p in (1, 2, 3)], current_sign=sign)
    values = {
        "current_l1_a": current,
        "current_l2_a": 1.0,
        "current_l3_a": 1.0,
        "power_l1_w": power,
    }
    reading = to_reading(
        values, m, meter="m", read_s=1.0, read_utc=datetime.now(UTC), duration_s=0.0, requests=1
    )
    assert reading.current_a[0] == expected


def test_single_phase_map_reads_zero_on_l2_l3_and_sums_power() -> None:
    m = _map([_f("current_l1_a", 1)], phases=1)
    reading = to_reading(
        {"current_l1_a": 8.0, "power_l1_w": 1800.0},
        m,
        meter="m",
        read_s=0.0,
        read_utc=datetime.now(UTC),
        duration_s=0.0,
        requests=1,
    )
    assert reading.current_a == (8.0, 0.0, 0.0)
    assert reading.total_power_w == 1800.0


def test_registry_lists_known_models_on_a_miss() -> None:
    with pytest.raises(UnknownMeterModel) as info:
        load_model("sdm999")
    for name in ("sdm630", "em24", "em340", "umg604", "abb_b23", "sunspec"):
        assert name in info.value.known
        assert name in str(info.value)
    assert set(known_models()) >= {"sdm630", "sunspec", "sunspec_int", "sunspec_float"}


def test_sunspec_name_yields_both_encodings() -> None:
    maps = load_model("sunspec")
    assert sorted(mid for m in maps for mid in m.sunspec_models) == [
        201,
        202,
        203,
        204,
        211,
        212,
        213,
        214,
    ]


def test_path_like_model_names_are_not_looked_up() -> None:
    with pytest.raises(UnknownMeterModel):
        load_model("../meters/sdm630")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        pytest.param(
            '[fields]\ncurrent_l1_a = { address = 1, type = "float" }',
            "fields.current_l1_a.type",
            id="bad-type",
        ),
        pytest.param(
            '[fields]\ncurrent_l1_a = { adress = 1, type = "float32" }',
            "fields.current_l1_a.address",
            id="misspelt-key",
        ),
        pytest.param(
            'tabel = "input"\n[fields]\nx = { address = 1, type = "uint16" }',
            "tabel",
            id="misspelt-top-key",
        ),
        pytest.param(
            '[fields]\ncurrent_l1_a = { address = 1, type = "float32" }',
            "fields",
            id="missing-l2-l3",
        ),
        pytest.param(
            '[fields]\nx = { address = 70000, type = "uint16" }',
            "fields.x.address",
            id="address-range",
        ),
        pytest.param("[fields", "<file>", id="not-toml"),
    ],
)
def test_user_map_errors_name_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_map_file(path)
    assert info.value.key == key
    assert str(path) in str(info.value)


def test_user_map_parses(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        'table = "input"\nword_order = "little"\n[fields]\n'
        'current_l1_a = { address = 0, type = "int32", scale = 0.001 }\n'
        'current_l2_a = { address = 2, type = "int32", scale = 0.001 }\n'
        'current_l3_a = { address = 4, type = "int32", scale = 0.001, table = "holding" }\n'
    )
    m = load_map_file(path)
    assert m.name == "mine"
    assert m.field("current_l1_a").word_order == "little"  # type: ignore[union-attr]
    assert m.field("current_l3_a").table == "holding"  # type: ignore[union-attr]


def _float32_words(value: float) -> list[int]:
    raw = struct.pack(">f", value)
    return [int.from_bytes(raw[:2], "big"), int.from_bytes(raw[2:], "big")]


@pytest.mark.parametrize(
    ("words", "why"),
    [
        pytest.param(_float32_words(math.inf), "not a number", id="infinite"),
        pytest.param(_float32_words(-1e9), "beyond", id="minus-a-billion-amperes"),
        # 230.5 A with its two words swapped: about 2e-41, a float no meter sends.
        pytest.param(_float32_words(230.5)[::-1], "wrong word order", id="words-swapped"),
    ],
)
def test_an_implausible_current_is_a_failed_read_naming_the_field(
    words: list[int], why: str
) -> None:
    """Read as export, -1e9 A (or a mis-ordered float's 0) would let every car rise: the read
    fails instead (the meter goes stale: no increases, then the fail-safe)."""
    m = _map([_f("current_l1_a", 7, "float32")])
    with pytest.raises(ImplausibleField) as info:
        decode_fields(m, Registers(plan_blocks(m), [words]))
    assert isinstance(info.value, UndefinedField)  # a MeterUndefinedValue for the actor
    assert info.value.address == 7
    assert "'current_l1_a' is implausible" in str(info.value)
    assert why in str(info.value)
    # An optional field reads as absent instead.
    m = _map(
        [_f("current_l1_a", 7, "float32"), _f("energy_import_wh", 9, "float32", optional=True)]
    )
    regs = Registers(plan_blocks(m), [_float32_words(12.5) + _float32_words(math.inf)])
    assert decode_fields(m, regs) == {"current_l1_a": 12.5, "energy_import_wh": None}


def test_a_sunspec_scale_factor_outside_its_range_is_a_failed_read() -> None:
    m = _map([_f("current_l1_a", 0, "int16", scale_factor=1)], undefined="sunspec")
    with pytest.raises(ImplausibleField, match=r"scale factor 32767 at 1 is outside -10\.\.10"):
        decode_fields(m, Registers(plan_blocks(m), [[100, 0x7FFF]]))
    assert decode_fields(m, Registers(plan_blocks(m), [[100, 0xFFFE]])) == {
        "current_l1_a": pytest.approx(1.0)
    }


# --- re-planning around registers the meter refuses (evcc-io/evcc#31143) -----------------------


def _settle(plan: ReadPlan, refused: set[tuple[str, int]]) -> tuple[bool, int]:
    """Read the plan from a meter refusing ``refused`` (exception 2) until it answers every
    block: (read ok, refusals). Not ok: a block of essential fields was refused."""
    refusals = 0
    while True:
        bad = [
            i
            for i, b in enumerate(plan.blocks)
            if any((b.table, a) in refused for a in range(b.start, b.start + b.count))
        ]
        if not bad:
            return True, refusals
        refusals += 1
        assert refusals < 100, "re-planning must end"
        if plan.refused(bad[0], 2) is None:
            return False, refusals


@pytest.mark.parametrize("model", sorted(p.stem for p in MAPS_DIR.glob("*.toml")))
def test_a_read_plan_starts_as_the_fewest_requests(model: str) -> None:
    (m,) = load_model(model)
    plan = ReadPlan(m)
    assert plan.blocks == plan_blocks(m)
    assert plan.read_map is m
    assert plan.dropped == ()


def test_em24_refusing_export_energy_drops_it_and_reads_the_rest_in_one_request() -> None:
    (em24,) = load_model("em24")
    plan = ReadPlan(em24)
    ok, refusals = _settle(plan, {("input", 0x5C)})
    assert ok
    assert refusals == 2  # the whole map; the export energy, set apart read on its own
    assert [(d.name, d.table, d.address, d.count) for d in plan.dropped] == [
        ("energy_export_wh", "input", 0x5C, 2)
    ]
    assert plan.blocks == (Block(table="input", start=0x00, count=0x40),)
    assert plan.read_map.field("energy_export_wh") is None
    assert plan.map is em24


def test_each_refused_non_essential_field_is_dropped_on_its_own() -> None:
    (em24,) = load_model("em24")
    plan = ReadPlan(em24)
    ok, _ = _settle(plan, {("input", 0x5C), ("input", 0x3F)})
    assert ok
    assert sorted(d.name for d in plan.dropped) == ["energy_export_wh", "energy_import_wh"]
    assert plan.blocks == (Block(table="input", start=0x00, count=0x2A),)


def test_a_refused_essential_register_fails_after_setting_the_rest_apart() -> None:
    (em24,) = load_model("em24")
    plan = ReadPlan(em24)
    assert plan.refused(0, 2) == ()  # 0x00..0x5D: mixed; the energies etc. go apart
    essential = plan.blocks[0]
    assert (essential.start, essential.count) == (0x0C, 12)  # currents, phase powers
    assert {f.name for f in plan.fields_of(0)} == {
        *(f"current_l{p}_a" for p in (1, 2, 3)),
        *(f"power_l{p}_w" for p in (1, 2, 3)),
    }
    assert plan.refused(0, 2) is None  # essential fields only: the read fails
    assert plan.dropped == ()


def test_a_refused_gap_drops_nothing() -> None:
    """A meter that refuses an unmapped register a request spans (max_gap too wide for it):
    the fields end up read apart, none dropped."""
    (em24,) = load_model("em24")
    plan = ReadPlan(em24)
    ok, _ = _settle(plan, {("input", 0x30)})
    assert ok
    assert plan.dropped == ()
    assert {f.name for i in range(len(plan.blocks)) for f in plan.fields_of(i)} == {
        f.name for f in em24.fields
    }


def test_sunspec_energies_share_a_refused_scale_factor_and_both_go() -> None:
    (m,) = load_model("sunspec_int")
    plan = ReadPlan(m)
    ok, _ = _settle(plan, {("holding", 54)})  # the energies' scale factor
    assert ok
    assert sorted(d.name for d in plan.dropped) == ["energy_export_wh", "energy_import_wh"]
    ok, _ = _settle(plan, {("holding", 54), ("holding", 22)})  # the powers' scale factor
    assert not ok, "the phase powers give the current its sign: essential"


@pytest.mark.parametrize(
    ("name", "sign", "essential"),
    [
        pytest.param("current_l2_a", "from_power", True, id="current"),
        pytest.param("power_l1_w", "from_power", True, id="phase-power-signs-the-current"),
        pytest.param("power_l1_w", "as_read", False, id="phase-power-not-needed-as-read"),
        pytest.param("power_w", "from_power", False, id="total-power-status-only"),
        pytest.param("voltage_l3_v", "from_power", False, id="voltage"),
        pytest.param("energy_import_wh", "from_power", False, id="energy-import"),
        pytest.param("energy_export_wh", "as_read", False, id="energy-export"),
        pytest.param("limit", "from_power", True, id="an-ems-limit"),
        pytest.param("heartbeat", "as_read", True, id="an-ems-heartbeat"),
    ],
)
def test_essential_fields(name: str, sign: str, essential: bool) -> None:
    m = _map([_f(name, 0)], current_sign=sign)
    assert is_essential(m.fields[0], m) is essential


def test_a_map_of_essential_fields_only_never_drops_one() -> None:
    m = _map([_f("limit", 100), _f("heartbeat", 101)])
    plan = ReadPlan(m)
    assert plan.refused(0, 2) is None
    assert plan.blocks == plan_blocks(m)


def test_a_dropped_field_decodes_as_none() -> None:
    m = _map([_f("current_l1_a", 0), _f("energy_import_wh", 50)], phases=1, max_gap=0)
    plan = ReadPlan(m)
    assert len(plan.blocks) == 2
    assert plan.refused(1, 2) is not None
    assert [d.name for d in plan.dropped] == ["energy_import_wh"]
    values = decode_planned(plan, Registers(plan.blocks, [[7]]))
    assert values == {"current_l1_a": 7.0, "energy_import_wh": None}


@given(st.sets(st.integers(min_value=0, max_value=0x5D), max_size=6))
def test_em24_against_any_refused_registers(refused: set[int]) -> None:
    """Whatever registers an EM24 refuses: the read fails exactly when one of the currents or
    phase powers (0x0C..0x17) is refused, and otherwise drops exactly the fields with a refused
    register of their own, and reads every other field."""
    (em24,) = load_model("em24")
    plan = ReadPlan(em24)
    ok, _ = _settle(plan, {("input", a) for a in refused})
    assert ok is not any(0x0C <= a <= 0x17 for a in refused)
    if ok:
        hit = {
            f.name
            for f in em24.fields
            if any(f.address <= a < f.address + f.count for a in refused)
        }
        assert {d.name for d in plan.dropped} == hit
        read = {f.name for i in range(len(plan.blocks)) for f in plan.fields_of(i)}
        assert read == {f.name for f in em24.fields} - hit


def test_a_refused_register_costs_only_its_own_field() -> None:
    """The plan after a refusal spans no refused or dropped register (second review of
    1b77ba4): a SunSpec 203 meter refusing its import energy (whose scale factor it shares with
    the export energy, further on) keeps the export energy; an EM24 refusing its total power
    settles at two requests per read, not three."""
    (sunspec,) = load_model("sunspec_int")
    m = sunspec.shifted(40070)
    import_at = m.field("energy_import_wh")
    assert import_at is not None
    plan = ReadPlan(m)
    ok, _ = _settle(plan, {("holding", import_at.address)})
    assert ok
    assert [d.name for d in plan.dropped] == ["energy_import_wh"]
    read = {f.name for i in range(len(plan.blocks)) for f in plan.fields_of(i)}
    assert "energy_export_wh" in read
    (em24,) = load_model("em24")
    plan = ReadPlan(em24)
    ok, _ = _settle(plan, {("input", 0x28)})
    assert ok
    assert [d.name for d in plan.dropped] == ["power_w"]
    assert len(plan.blocks) == 2


@pytest.mark.parametrize(
    ("model", "refused_field"),
    [
        pytest.param("sunspec_int", "voltage_l1_v", id="sunspec-int-voltage"),
        pytest.param("sunspec_float", "power_w", id="sunspec-float-total-power"),
        pytest.param("abb_b23", "power_w", id="abb-total-power"),
        pytest.param("em24", "voltage_l1_v", id="em24-voltage"),
    ],
)
def test_a_refused_optional_field_inside_the_essential_span_is_dropped(
    model: str, refused_field: str
) -> None:
    """The essential fields' block, planned again after a refusal, spans no field set apart
    (third review: a SunSpec or ABB meter refusing a voltage or its total power, registers
    between the currents and the phase powers, failed every read, the site in fail-safe)."""
    (m,) = load_model(model)
    if m.sunspec_models:
        m = m.shifted(40070)
    f = m.field(refused_field)
    assert f is not None
    plan = ReadPlan(m)
    ok, refusals = _settle(plan, {(f.table, f.address)})
    assert ok
    assert refusals <= 3
    assert [d.name for d in plan.dropped] == [refused_field]
