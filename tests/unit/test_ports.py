"""Free ports for servers bound later (drivers/ports.py): never from the ephemeral range, where an
outgoing connection opened in the meantime takes the port; a port in use is passed over."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers import ports
from drivers.ports import LINUX_EPHEMERAL, PICKED_FROM, ephemeral_range, free_tcp_port
from sim.cloud import SimCloud
from sim.meter import SimMeter


class Scripted:
    """Randomness, the outermost seam: the spans and ports to try, in order."""

    def __init__(self, ports: list[int]) -> None:
        self.ports: Iterator[int] = iter(ports)

    def choice(self, spans: list[tuple[int, int]]) -> tuple[int, int]:
        return spans[0]

    def randint(self, a: int, b: int) -> int:
        port = next(self.ports)
        assert a <= port <= b, f"scripted port {port} outside the span {a}-{b}"
        return port


def bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_picked_ports_are_outside_the_ephemeral_range_and_free() -> None:
    low, high = ephemeral_range()
    ports = [free_tcp_port() for _ in range(200)]
    assert all(not low <= p <= high for p in ports), sorted(p for p in ports if low <= p <= high)
    assert all(p >= PICKED_FROM for p in ports)
    assert all(bindable(p) for p in ports)
    assert len(set(ports)) > 150, "random picks, not one port again and again"


def below_the_range(low: int, after: int) -> int:
    """A free port between ``PICKED_FROM`` and the ephemeral range, above ``after``, that
    free_tcp_port would hand out (not one an earlier test's pick in this process took: it
    passes those over, and the scripted picks ran out, a fresh-clone ``make test`` saw)."""
    return next(
        p
        for p in range(max(PICKED_FROM, after + 1), low)
        if p not in ports._handed_out and bindable(p)
    )


def test_a_port_in_use_is_passed_over() -> None:
    low, _ = ephemeral_range()
    if low - 1 - PICKED_FROM < 1000:
        pytest.skip(f"this kernel leaves no room below its ephemeral range ({low})")
    taken = socket.socket()
    taken.bind(("127.0.0.1", below_the_range(low, PICKED_FROM + random.randrange(1000))))
    taken.listen()
    try:
        busy = taken.getsockname()[1]
        spare = below_the_range(low, busy)
        assert free_tcp_port(rng=Scripted([busy, spare])) == spare  # type: ignore[arg-type]
        assert not bindable(busy), "the port the test holds is in use"
    finally:
        taken.close()


def test_the_admins_ports_and_the_others_never_meet() -> None:
    """The launcher picks the Thespian admin's port in its own process while the process that
    started it may hold a pick not bound yet: the two come from either side of the range."""
    low, high = ephemeral_range()
    if low - 1 - PICKED_FROM < 1000 or 65535 - (high + 1) < 1000:
        pytest.skip(f"this kernel's ephemeral range ({low}-{high}) leaves room on one side only")
    admin = [free_tcp_port(admin=True) for _ in range(50)]
    others = [free_tcp_port() for _ in range(50)]
    assert all(p > high for p in admin), sorted(p for p in admin if p <= high)
    assert all(PICKED_FROM <= p < low for p in others), sorted(p for p in others if p >= low)


def test_a_port_handed_out_is_not_handed_out_again_while_free() -> None:
    """Picked and not bound yet (its user binds it a moment later): free, but not given twice."""
    low, _ = ephemeral_range()
    if low - 1 - PICKED_FROM < 1000:
        pytest.skip(f"this kernel leaves no room below its ephemeral range ({low})")
    first = below_the_range(low, PICKED_FROM + random.randrange(1000))
    second = below_the_range(low, first)
    assert free_tcp_port(rng=Scripted([first])) == first  # type: ignore[arg-type]
    assert bindable(first), "nobody bound it yet"
    assert free_tcp_port(rng=Scripted([first, second])) == second  # type: ignore[arg-type]


def test_no_room_outside_the_ephemeral_range_falls_back_to_the_kernel() -> None:
    port = free_tcp_port(ephemeral=(1024, 65535), rng=Scripted([]))  # type: ignore[arg-type]
    low, high = ephemeral_range()
    assert low <= port <= high
    assert bindable(port)


def test_the_range_read_from_the_kernel_file(tmp_path: Path) -> None:
    f = tmp_path / "range"
    f.write_text("10000\t40000\n", encoding="ascii")
    assert ephemeral_range(f) == (10000, 40000)
    f.write_text("garbled", encoding="ascii")
    assert ephemeral_range(f) == LINUX_EPHEMERAL
    assert ephemeral_range(tmp_path / "missing") == LINUX_EPHEMERAL


async def test_the_simulated_cloud_and_meter_come_back_on_a_port_nobody_connects_from() -> None:
    low, high = ephemeral_range()
    cloud, meter = SimCloud(), SimMeter()
    await cloud.start()
    await meter.start()
    ports = cloud.port, meter.port
    assert all(not low <= p <= high for p in ports), ports
    await cloud.stop()
    await meter.stop()
    await cloud.start()
    await meter.start()
    try:
        assert (cloud.port, meter.port) == ports
        for port in ports:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                pass
    finally:
        await cloud.stop()
        await meter.stop()
