"""Meter and EMS-register actors against real pymodbus servers, reporting to a recording
allocator: what they tell, when they go stale, and what they log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import traceback
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.constants import ExcCodes

from actors.grid_limit import GridLimitReported, limit_actor_factory
from actors.grid_limits import LimitValue
from actors.meter import PYMODBUS_LOGGER, MeterActor, MeterFailed, MeterRead, quiet_pymodbus
from config.energy import meter_from_table
from config.energy_limits import ModbusLimitConfig
from config.energy_limits import from_table as limit_from_table
from config.fields import Table
from drivers.modbus import load_model
from supervisors.actor import Actor, ActorContext
from supervisors.spec import ChildSpec, SupervisorSpec
from supervisors.system import ActorSystem
from tests.helpers import wait_for
from tests.integration.energy_node.harness import sdm630_server
from tests.integration.modbus.meter_server import MeterServer, registers_for


class Recorder(Actor):
    def __init__(self, ctx: ActorContext, got: list[object]) -> None:
        super().__init__(ctx)
        self.got = got

    async def receive(self, msg: object) -> Any:
        self.got.append(msg)


@pytest.fixture
async def system() -> AsyncIterator[ActorSystem]:
    s = ActorSystem("energy")
    yield s
    await s.stop(5.0)


async def start(system: ActorSystem, got: list[object], child: ChildSpec) -> None:
    await system.start(
        SupervisorSpec(
            children=(ChildSpec(id="allocator", start=lambda ctx: Recorder(ctx, got)), child)
        )
    )


def last_limit(got: list[object]) -> GridLimitReported | None:
    """The last limit the source reported to the recording allocator."""
    reports = [m for m in got if isinstance(m, GridLimitReported)]
    return reports[-1] if reports else None


def ems_config(port: int, **extra: object) -> ModbusLimitConfig:
    table = {
        "name": "ems",
        "kind": "modbus",
        "host": "127.0.0.1",
        "port": port,
        "timeout_s": 0.2,
        "poll_interval_s": 0.05,
        "value_address": 100,
        "heartbeat_address": 101,
        "unit": "a",
        "stale_after_s": 0.4,
        "fail_safe": {"current_a": 10},
        **extra,
    }
    config = limit_from_table(Table(table, source="<test>"))
    assert isinstance(config, ModbusLimitConfig)
    return config


async def test_ems_register_live_while_its_heartbeat_moves(system: ActorSystem) -> None:
    got: list[object] = []
    async with MeterServer({"holding": {100: 20, 101: 1}}) as server:
        factory = limit_actor_factory(
            ems_config(server.port), allocator_path="energy/allocator", heartbeat_s=30.0
        )
        await start(system, got, ChildSpec(id="ems", start=factory))

        def limit_is(value: LimitValue, *, stale: bool) -> bool:
            r = last_limit(got)
            return (
                r is not None
                and r.limit is not None
                and (r.limit.value, r.limit.stale)
                == (
                    value,
                    stale,
                )
            )

        live20 = LimitValue(current_a=(20.0, 20.0, 20.0))
        fail_safe = LimitValue(current_a=(10.0, 10.0, 10.0))
        await wait_for(lambda: limit_is(live20, stale=False), what="live 20 A")
        # The value stays, but the heartbeat stops: stale, fail-safe.
        await wait_for(lambda: limit_is(fail_safe, stale=True), what="heartbeat stopped")
        await server.set("holding", 100, [25])
        await server.set("holding", 101, [2])
        await wait_for(
            lambda: limit_is(LimitValue(current_a=(25.0, 25.0, 25.0)), stale=False),
            what="heartbeat moved again",
        )
        report = last_limit(got)
        assert report is not None
        assert report.fallback == fail_safe, "what the allocator applies if the actor falls silent"
        server.stop_answering()
        await wait_for(lambda: limit_is(fail_safe, stale=True), what="EMS gone")


def meter_spec(model: str, port: int, *, timeout_s: float) -> ChildSpec:
    """The "grid" meter actor of ``model`` on ``port``, polled every 0.05 s."""
    meter = meter_from_table(
        Table(
            {
                "name": "grid",
                "model": model,
                "host": "127.0.0.1",
                "port": port,
                "poll_interval_s": 0.05,
                "timeout_s": timeout_s,
            },
            source="<test>",
        )
    )
    return ChildSpec(
        id="grid",
        start=lambda ctx: MeterActor(ctx, config=meter, allocator_path="energy/allocator"),
    )


async def test_meter_reports_reads_and_failures_and_keeps_pymodbus_quiet(
    system: ActorSystem, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[object] = []
    async with sdm630_server((12.0, 8.0, -3.0)) as server:
        spec = meter_spec("sdm630", server.port, timeout_s=0.1)
        dropped = quiet_pymodbus().dropped
        with caplog.at_level(logging.INFO):
            await start(system, got, spec)
            await wait_for(lambda: any(isinstance(m, MeterRead) for m in got), what="a read")
            read = next(m for m in got if isinstance(m, MeterRead))
            assert read.current_a == pytest.approx((12.0, 8.0, -3.0))
            assert read.node == "site"
            assert read.read_monotonic_s > 0
            server.stop_answering()
            await wait_for(
                lambda: sum(isinstance(m, MeterFailed) for m in got) >= 4, what="4 failures"
            )
            failures = [m for m in got if isinstance(m, MeterFailed)]
            assert [f.failures for f in failures[:4]] == [1, 2, 3, 4]
            assert failures[0].last_read_monotonic_s is not None
            server.answer_again()
            count = len(got)
            await wait_for(
                lambda: any(isinstance(m, MeterRead) for m in got[count:]), what="recovered"
            )
        ours = [r for r in caplog.records if r.name == "actors.meter"]
        assert sum("read failed" in r.getMessage() for r in ours) == 1, "logged once, not per read"
        assert any("answers again" in r.getMessage() for r in ours)
        noise = [r for r in caplog.records if r.name == PYMODBUS_LOGGER and r.levelno >= 40]
        assert noise == [], "per-request pymodbus errors are dropped"
        assert quiet_pymodbus().dropped > dropped, "and counted"


async def test_em24_refusing_its_export_energy_keeps_reading_and_says_why(
    system: ActorSystem, caplog: pytest.LogCaptureFixture
) -> None:
    """evcc-io/evcc#31143: an EM24 answering exception 2 for kWh(-) TOT (0x5C). The meter keeps
    reading (not stale, no fail-safe): the phase currents go on to the allocator, the export
    energy is dropped, logged once, and the actor's status names it."""
    (em24,) = load_model("em24")
    truth = {
        "voltage_l1_v": 230.0,
        "voltage_l2_v": 230.0,
        "voltage_l3_v": 230.0,
        "power_w": 3910.0,
        "current_l1_a": 12.0,
        "current_l2_a": 8.0,
        "current_l3_a": 3.0,
        "power_l1_w": 2760.0,
        "power_l2_w": 1840.0,
        "power_l3_w": -690.0,
        "energy_import_wh": 1234500.0,
        "energy_export_wh": 89000.0,
    }
    got: list[object] = []
    async with MeterServer(registers_for(em24, truth)) as server:
        server.refuse[("input", 0x5C)] = ExcCodes.ILLEGAL_ADDRESS
        spec = meter_spec("em24", server.port, timeout_s=0.2)
        with caplog.at_level(logging.INFO):
            await start(system, got, spec)
            await wait_for(lambda: sum(isinstance(m, MeterRead) for m in got) >= 5, what="5 reads")
        actor = system.actor("energy/grid")
        assert isinstance(actor, MeterActor)
        status = actor.report()
    reads = [m for m in got if isinstance(m, MeterRead)]
    assert all(r.current_a == pytest.approx((12.0, 8.0, -3.0)) for r in reads)
    assert not any(isinstance(m, MeterFailed) for m in got)
    # The allocator hears of it with each reading (the site view says it, cli/site_view.py).
    assert reads[-1].dropped == ("energy_export_wh",)
    assert actor.last is not None
    assert actor.last.energy_export_wh is None
    assert actor.last.energy_import_wh == pytest.approx(1234500.0)
    assert status["failures_total"] == 0
    assert status["dropped_fields"] == {
        "energy_export_wh": "input 0x005C..0x005D refused (exception 2)"
    }
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "'grid'" in warnings[0]
    assert "0x005C" in warnings[0]
    assert "energy_export_wh" in warnings[0]


async def test_a_contact_files_every_new_error_is_logged_with_its_reason(
    system: ActorSystem, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Bad content, then a missing file, then binary content: each logged once with its reason
    (a bad content was not logged at all, and hid the later errors), then the recovery."""
    path = tmp_path / "dim"
    path.write_text("yes")
    table = {
        "name": "14a",
        "kind": "contact",
        "path": str(path),
        "dimmed": {"power_w": 4200},
        "poll_interval_s": 0.05,
    }
    config = limit_from_table(Table(table, source="<test>"))
    got: list[object] = []
    caplog.set_level(logging.INFO, logger="actors.grid_limit")
    factory = limit_actor_factory(config, allocator_path="energy/allocator", heartbeat_s=30.0)
    await start(system, got, ChildSpec(id="contact", start=factory))

    def logged(text: str) -> bool:
        return any(text in r.getMessage() for r in caplog.records)

    await wait_for(lambda: logged("must read '0' or '1', got 'yes'"), what="the bad content")
    path.unlink()
    await wait_for(lambda: logged(f"{str(path)!r}: does not exist"), what="the missing file")
    path.write_bytes(b"\x00\xff")
    await wait_for(lambda: logged("is not ASCII text"), what="the binary content")
    path.write_text("0")
    await wait_for(lambda: logged("reads again"), what="the recovery")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3, warnings


def threads_reading_a_contact() -> int:
    """Threads inside the contact driver's blocking read right now."""
    return sum(
        any(f.f_code.co_name == "read_contact_now" for f, _ in traceback.walk_stack(frame))
        for frame in sys._current_frames().values()
    )


@pytest.fixture
async def fifo(tmp_path: Path) -> AsyncIterator[Path]:
    """A FIFO no writer opens: reading it blocks in open(). Requested before ``system``, it
    is torn down after the actors stopped: a writer then opens it, so every blocked open()
    returns (a thread left in it would hold the interpreter's exit)."""
    path = tmp_path / "dim"
    os.mkfifo(path)
    yield path
    for _ in range(500):
        if not threads_reading_a_contact():
            break
        with contextlib.suppress(OSError):
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        await asyncio.sleep(0.01)


async def test_a_contact_file_that_never_answers_holds_one_thread(
    fifo: Path, system: ActorSystem
) -> None:
    """A contact path whose open() never returns (a FIFO no writer opened, a file on a hung
    mount): the fail-safe applies, and the reads wait on one thread. Each poll started another
    read in the event loop's default executor and left it stuck there, one a second, until the
    executor (6 threads on 2 cores) was full: then the node's other users of it queued behind
    them (a meter's host name lookup at every reconnect, the store writer's stop), and a
    process exit waited for them for ever."""
    table = {
        "name": "14a",
        "kind": "contact",
        "path": str(fifo),
        "dimmed": {"power_w": 4200},
        "fail_safe": {"power_w": 3000},
        "poll_interval_s": 0.05,
        "stale_after_s": 0.5,
    }
    config = limit_from_table(Table(table, source="<test>"))
    got: list[object] = []
    factory = limit_actor_factory(config, allocator_path="energy/allocator", heartbeat_s=30.0)
    await start(system, got, ChildSpec(id="contact", start=factory))

    def fail_safe() -> bool:
        r = last_limit(got)
        return r is not None and r.limit is not None and r.limit.stale

    await wait_for(fail_safe, what="the fail-safe of a contact that never answers")
    # Something that must not happen needs a window: three more reads time out in it.
    loop = asyncio.get_running_loop()
    until = loop.time() + 3.5
    await wait_for(
        lambda: loop.time() >= until or threads_reading_a_contact() > 1,
        timeout=10,
        what="three read timeouts",
    )
    assert threads_reading_a_contact() == 1
    assert fail_safe()


async def test_an_ems_no_value_pattern_is_no_limit(system: ActorSystem) -> None:
    """value_undefined = "all_ones": 0xFFFF in a limit register in W is "no value" (it read as
    a limit of 65.5 kW), so the source goes stale and its fail-safe applies; with a heartbeat
    passing through 0xFFFF the source stays live."""
    got: list[object] = []
    async with MeterServer({"holding": {100: 20000, 101: 0xFFFE}}) as server:
        config = ems_config(
            server.port, value_undefined="all_ones", unit="w", fail_safe={"power_w": 11000}
        )
        factory = limit_actor_factory(config, allocator_path="energy/allocator", heartbeat_s=30.0)
        await start(system, got, ChildSpec(id="ems", start=factory))

        def limit_is(watts: float, *, stale: bool) -> bool:
            r = last_limit(got)
            return (
                r is not None
                and r.limit is not None
                and r.limit.value == LimitValue(power_w=watts)
                and r.limit.stale == stale
            )

        await wait_for(lambda: limit_is(20000.0, stale=False), what="live 20 kW")
        await server.set("holding", 101, [0xFFFF])  # the heartbeat wraps through all ones
        await server.set("holding", 101, [0])
        await wait_for(lambda: limit_is(20000.0, stale=False), what="still live")
        await server.set("holding", 100, [0xFFFF])
        for beat in range(1, 40):  # the EMS stays alive, its limit is "no value"
            await server.set("holding", 101, [beat])
            if limit_is(11000.0, stale=True):
                break
            await asyncio.sleep(0.05)  # the heartbeat's pace, as the EMS would move it
        await wait_for(lambda: limit_is(11000.0, stale=True), what="the fail-safe")
        assert not any(
            isinstance(m, GridLimitReported)
            and m.limit is not None
            and m.limit.value.power_w == 65535.0
            for m in got
        )


async def test_an_ems_going_stale_and_live_again_is_logged_once_each(
    system: ActorSystem, caplog: pytest.LogCaptureFixture
) -> None:
    """The EMS answers but its heartbeat stops: its fail-safe applies (pausing cars, often) and
    the log says so once, naming the source and why, as a contact's or a meter's fault is; its
    return is logged too."""
    caplog.set_level(logging.INFO, logger="actors.grid_limit")
    got: list[object] = []
    async with MeterServer({"holding": {100: 20, 101: 1}}) as server:
        factory = limit_actor_factory(
            ems_config(server.port), allocator_path="energy/allocator", heartbeat_s=30.0
        )
        await start(system, got, ChildSpec(id="ems", start=factory))

        def logged(text: str) -> list[str]:
            return [r.getMessage() for r in caplog.records if text in r.getMessage()]

        await wait_for(lambda: bool(logged("fail-safe 10/10/10 A applies")), what="the stale EMS")
        (stale,) = logged("fail-safe 10/10/10 A applies")
        assert "'ems'" in stale, stale
        assert "heartbeat last changed" in stale, stale
        await server.set("holding", 101, [2])
        await wait_for(lambda: bool(logged("live again")), what="the EMS back")
        messages = [r.getMessage() for r in caplog.records]
        back = next(i for i, m in enumerate(messages) if "live again" in m)
        assert "20/20/20 A" in messages[back], messages[back]
        assert sum("applies" in m for m in messages[:back]) == 1, messages[:back]
