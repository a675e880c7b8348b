"""The simulated charge point against a third-party central system (PyPI ocpp-csms 0.1.0)."""

from __future__ import annotations

from typing import Any

from ocpp_csms import CentralSystem

from sim.car import CarSpec
from tests.helpers import wait_for
from tests.integration.sim.conftest import StartCp, fast_config


async def test_sim_charge_point_boots_and_charges_against_ocpp_csms(start_cp: StartCp) -> None:
    events: list[Any] = []
    central = CentralSystem(host="127.0.0.1", port=0, ping_interval=None)
    central.add_listener(events.append)
    await central.async_start()
    try:
        url = f"ws://127.0.0.1:{central.port}/ocpp"
        cp = await start_cp(fast_config(url, "ocpp1.6", "SIM-CSMS-1"))
        await cp.plug_in(1, CarSpec(max_current_a=16.0, ramp_up_a_per_s=100.0))
        await cp.start_transaction(1, "ANY-TAG")
        await wait_for(lambda: len(cp.transaction_ids) == 1, what="csms transaction id")
        await wait_for(lambda: cp.stats.answered["MeterValues"] >= 2, what="meter values")
        await cp.stop_transaction(1)
        await wait_for(lambda: len(cp.outbox) == 0, what="stop delivered")
        remote = central.charge_points["SIM-CSMS-1"]
        assert remote.boot is not None
        kinds = {type(e).__name__ for e in events}
        assert {"BootEvent", "TransactionStartedEvent", "TransactionStoppedEvent"} <= kinds
        assert cp.stats.call_errors == {}
        assert cp.outbox.dropped == []
        assert int(cp.transaction_ids[0]) > 0, "the csms chose the id"
    finally:
        await central.async_stop()
