"""SunSpec discovery: find the "SunS" marker, then walk the model chain to a meter model.

A SunSpec device starts its map with the registers 0x5375 0x6E53 ("SunS") at 40000 (sometimes 0
or 50000), followed by models, each an ID register, a length register and ``length`` registers
of data, ended by ID 0xFFFF.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

from drivers.modbus.errors import MeterBadResponse

SUNS_MARKER = (0x5375, 0x6E53)
BASE_ADDRESSES = (40000, 0, 50000)
END_MODEL = 0xFFFF
MAX_MODELS = 64

ReadHolding = Callable[[int, int], Awaitable[list[int]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class FoundModel:
    model_id: int
    address: int  # of the model's ID register; map offsets count from here
    length: int


class SunSpecNotFound(Exception):
    pass


async def scan(read: ReadHolding, wanted: Collection[int]) -> FoundModel:
    """The first model in ``wanted`` on the device. ``read(address, count)`` reads holding
    registers; a base that answers with an exception response is skipped."""
    looked: list[str] = []
    for base in BASE_ADDRESSES:
        try:
            marker = await read(base, 2)
        except MeterBadResponse:
            looked.append(f"{base}: no such register")
            continue
        if tuple(marker) != SUNS_MARKER:
            looked.append(f"{base}: {marker[0]:04X} {marker[1]:04X}")
            continue
        address = base + 2
        seen: list[int] = []
        for _ in range(MAX_MODELS):
            model_id, length = await read(address, 2)
            if model_id == END_MODEL:
                break
            if model_id in wanted:
                return FoundModel(model_id=model_id, address=address, length=length)
            seen.append(model_id)
            address += 2 + length
        raise SunSpecNotFound(f"SunSpec map at {base} has models {seen}, none of {sorted(wanted)}")
    raise SunSpecNotFound("no SunS marker (looked at " + "; ".join(looked) + ")")
