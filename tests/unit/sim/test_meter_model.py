"""Register maps and the base load behind the simulated meter."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import pytest

from sim.base_load import BaseLoad
from sim.register_maps import (
    EASTRON_SDM630,
    METER_MODELS,
    Encoding,
    MeterModel,
    RegisterField,
    encode,
    meter_model,
)


@pytest.mark.parametrize(
    ("encoding", "value", "scale", "expected"),
    [
        pytest.param(
            Encoding.FLOAT32_BE,
            230.0,
            1.0,
            list(struct.unpack(">HH", struct.pack(">f", 230.0))),
            id="float-be",
        ),
        pytest.param(
            Encoding.FLOAT32_LE_WORDS,
            230.0,
            1.0,
            list(struct.unpack(">HH", struct.pack(">f", 230.0)))[::-1],
            id="float-le-words",
        ),
        pytest.param(
            Encoding.FLOAT32_BE,
            12_345.0,
            0.001,
            list(struct.unpack(">HH", struct.pack(">f", 12.345))),
            id="wh-to-kwh",
        ),
        pytest.param(Encoding.INT32_BE, -2.0, 1.0, [0xFFFF, 0xFFFE], id="int32-negative"),
        pytest.param(Encoding.INT32_LE_WORDS, 65_537.0, 1.0, [0x0001, 0x0001], id="int32-le-words"),
        pytest.param(Encoding.UINT16, 2301.0, 10.0, [23010], id="uint16-scaled"),
    ],
)
def test_encode(encoding: Encoding, value: float, scale: float, expected: list[int]) -> None:
    field = RegisterField(quantity="total_power_w", address=0, encoding=encoding, scale=scale)
    assert encode(field, value) == expected


def test_sdm630_map_matches_the_datasheet_addresses() -> None:
    addresses = {f.quantity: f.address for f in EASTRON_SDM630.fields}
    assert addresses["current_l1_a"] == 0x06
    assert addresses["current_l3_a"] == 0x0A
    assert addresses["total_power_w"] == 0x34
    assert addresses["import_energy_wh"] == 0x48
    assert EASTRON_SDM630.function_code == 4


def test_a_field_outside_the_span_is_refused() -> None:
    with pytest.raises(ValueError, match=r"total_power_w at 0x0010 lies outside 0x0000..0x0010"):
        MeterModel(
            name="tiny",
            table="input",
            unit_id=1,
            first_address=0,
            last_address=0x10,
            fields=(RegisterField(quantity="total_power_w", address=0x10),),
        )


def test_unknown_quantity_and_model_list_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown quantity 'amps'"):
        RegisterField(quantity="amps", address=0)
    with pytest.raises(ValueError, match=r"unknown meter model 'x'; known: \['eastron_sdm630'"):
        meter_model("x")
    assert set(METER_MODELS) >= {"eastron_sdm630", "janitza_umg604"}


def test_base_load_is_deterministic_per_second_and_seed() -> None:
    load = BaseLoad(seed=7)
    at = datetime(2025, 5, 1, 12, 0, 0, 200_000, tzinfo=UTC)
    same_second = at.replace(microsecond=900_000)
    assert load.currents_a(at) == load.currents_a(same_second)
    assert BaseLoad(seed=8).currents_a(at) != load.currents_a(at)


def test_base_load_peaks_in_the_evening() -> None:
    load = BaseLoad(noise_a=0.0, daily_swing=0.4, mean_a=(10.0, 10.0, 10.0))
    evening = load.currents_a(datetime(2025, 5, 1, 18, tzinfo=UTC))
    morning = load.currents_a(datetime(2025, 5, 1, 6, tzinfo=UTC))
    assert evening == pytest.approx((14.0, 14.0, 14.0))
    assert morning == pytest.approx((6.0, 6.0, 6.0))
