"""Loopback latency of one complete meter read through the driver.

A real pymodbus server (SimDevice datastore) plays an Eastron SDM630 on 127.0.0.1; the driver
reads the whole map (0x00..0x4B, 76 input registers, one request) and decodes it into a
MeterReading. Server and client share one process and one event loop, so the figure includes
both sides' Python work, as on the edge PC where the meter is the only remote party.

Usage: ``python bench/modbus_read.py [--quick] [--reads N] [--framer tcp|rtu]``. The last line
is the figure: p50/p99/max in milliseconds over N reads (after 20 warm-up reads).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pymodbus import FramerType

from drivers.modbus import ModbusMeter, load_model
from tests.integration.modbus.meter_server import MeterServer, registers_for

TRUTH = {
    "voltage_l1_v": 230.1,
    "voltage_l2_v": 231.2,
    "voltage_l3_v": 229.8,
    "current_l1_a": 12.5,
    "current_l2_a": 8.25,
    "current_l3_a": 3.0,
    "power_l1_w": 2875.0,
    "power_l2_w": 1900.0,
    "power_l3_w": -690.0,
    "power_w": 4085.0,
    "energy_import_wh": 1234500.0,
    "energy_export_wh": 89000.0,
}


async def measure(reads: int, framer: str) -> list[float]:
    (sdm,) = load_model("sdm630")
    server_framer = FramerType.RTU if framer == "rtu" else FramerType.SOCKET
    async with MeterServer(registers_for(sdm, TRUTH), framer=server_framer) as server:
        meter = ModbusMeter(
            name="bench",
            host="127.0.0.1",
            port=server.port,
            register_maps=(sdm,),
            framer=framer,  # type: ignore[arg-type]
            timeout_s=1.0,
        )
        try:
            for _ in range(20):
                await meter.read()
            samples = []
            for _ in range(reads):
                started = time.perf_counter()
                reading = await meter.read()
                samples.append(time.perf_counter() - started)
                assert reading.requests == 1
        finally:
            await meter.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="50 reads")
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument("--framer", choices=("tcp", "rtu"), default="tcp")
    args = parser.parse_args()
    reads = 50 if args.quick else args.reads
    samples = sorted(asyncio.run(measure(reads, args.framer)))
    ms = [s * 1000 for s in samples]
    p50 = statistics.median(ms)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    print(
        f"sdm630 full block (76 registers, 1 request, {args.framer}) over loopback, "
        f"{reads} reads: p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {ms[-1]:.2f} ms"
    )


if __name__ == "__main__":
    main()
