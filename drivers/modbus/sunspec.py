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
LAST_REGISTER = 65535
ILLEGAL_ADDRESS = 2

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
            if address + 2 > LAST_REGISTER + 1:
                raise SunSpecNotFound(
                    f"SunSpec map at {base}: the model chain runs past register {LAST_REGISTER} "
                    f"after models {seen} (a model length that is no length), "
                    f"none of {sorted(wanted)}"
                )
            try:
                model_id, length = await read(address, 2)
            except MeterBadResponse as exc:
                if exc.exception_code != ILLEGAL_ADDRESS:
                    raise  # the device failing now: a failed read, the scan comes again
                raise SunSpecNotFound(
                    f"SunSpec map at {base}: no model at {address} (exception 2, and no end "
                    f"model before it) after models {seen}, none of {sorted(wanted)}"
                ) from None
            if model_id == END_MODEL:
                break
            if model_id in wanted:
                return FoundModel(model_id=model_id, address=address, length=length)
            seen.append(model_id)
            address += 2 + length
        raise SunSpecNotFound(f"SunSpec map at {base} has models {seen}, none of {sorted(wanted)}")

    raise SunSpecNotFound("no SunS marker (looked at " + "; ".join(looked) + ")")


def check_length(found: FoundModel, last_offset: int) -> None:
    """The model must hold the map's registers (offsets from its ID register, up to
    ``last_offset``): past its length lie the next model or the end marker, which would be read
    as values and scale factors."""
    if found.length + 1 < last_offset:
        raise SunSpecNotFound(
            f"SunSpec model {found.model_id} at {found.address} has {found.length} registers; "
            f"the map reads up to offset {last_offset} ({last_offset - 1} registers at least)"
        )
    if found.address + 1 + found.length > LAST_REGISTER:
        raise SunSpecNotFound(
            f"SunSpec model {found.model_id} at {found.address} with {found.length} registers "
            f"runs past register {LAST_REGISTER}"
        )
