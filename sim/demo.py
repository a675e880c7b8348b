"""The demo site's simulated peers, as their own process (started by ``run.py`` with no config).

    python -m sim.demo --listener-port P --meter-port M --cloud-port C [--cloud-outage S]

A CSMS on C, an SDM630 meter on M and eight charge points connecting to the edge on P. Cars
arrive one after another, charge, and now and then one leaves and another comes, so the site is
alive in ``run.py status --watch``. ``--cloud-outage S`` takes the CSMS away for S seconds, 30 s
after the start, so the edge's offline answers, queueing and replay can be watched.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import signal
import sys

from sim.base_load import BaseLoad
from sim.car import CarSpec
from sim.cloud import SimCloud
from sim.meter import SimMeter
from sim.site import DEFAULT_CARS, SimSite, SiteSpec

log = logging.getLogger("sim.demo")

CHARGE_POINTS = 8
ID_TAGS = ("DEMO-TAG", "FLEET-1", "FLEET-2", "GUEST-7")
CARS: tuple[CarSpec, ...] = (
    *DEFAULT_CARS,
    CarSpec(name="estate-3ph-32a", max_current_a=32.0, energy_need_wh=45_000.0),
    CarSpec(name="city-1ph-l1", max_current_a=16.0, phases=1, single_phase=1),
    CarSpec(name="hatch-3ph-16a", max_current_a=16.0, energy_need_wh=25_000.0),
)
OUTAGE_AFTER_S = 30.0


def spec() -> SiteSpec:
    return SiteSpec(
        charge_points=CHARGE_POINTS,
        protocols=("ocpp1.6", "ocpp1.6", "ocpp1.6", "ocpp2.0.1"),
        cars=CARS,
        id_prefix="DEMO-CP-",
        base_load=BaseLoad(mean_a=(12.0, 9.0, 14.0)),
        charge_point_options=(("meter_interval_s", 10.0),),
    )


async def life(site: SimSite, rng: random.Random) -> None:
    """Cars arrive a few seconds apart; later one leaves now and then and another comes."""
    for i, cp in enumerate(site.charge_points):
        await asyncio.sleep(2.0 + rng.random() * 2.0)
        with contextlib.suppress(Exception):  # a charge point not yet connected catches up
            await cp.plug_in(1, site.car_for(i))
            await cp.start_transaction(1, ID_TAGS[i % len(ID_TAGS)])
    while True:
        await asyncio.sleep(60.0 + rng.random() * 60.0)
        i = rng.randrange(len(site.charge_points))
        cp = site.charge_points[i]
        with contextlib.suppress(Exception):
            if cp.connectors[1].car is not None:
                await cp.stop_transaction(1, reason="EVDisconnected")
                await cp.unplug(1)
                await asyncio.sleep(10.0)
            await cp.plug_in(1, site.car_for(rng.randrange(len(CARS))))
            await cp.start_transaction(1, ID_TAGS[rng.randrange(len(ID_TAGS))])


async def outage(cloud: SimCloud, seconds: float) -> None:
    await asyncio.sleep(OUTAGE_AFTER_S)
    log.warning(
        "demo: the cloud goes away for %g s (the edge answers, queues, then replays)", seconds
    )
    await cloud.stop()
    await asyncio.sleep(seconds)
    await cloud.start()
    log.warning("demo: the cloud is back")


async def main(args: argparse.Namespace) -> int:
    cloud = SimCloud(port=args.cloud_port, id_tags=ID_TAGS)
    await cloud.start()
    site = SimSite(spec(), url=f"ws://127.0.0.1:{args.listener_port}/ocpp")
    # The edge was configured with this meter port: the same model and base load, on it.
    site.meter = SimMeter(
        model=site.meter.model,
        base_load=site.meter.base_load,
        sources=site.charge_points,
        port=args.meter_port,
    )
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [loop.create_task(life(site, random.Random(7)))]
    if args.cloud_outage:
        tasks.append(loop.create_task(outage(cloud, args.cloud_outage)))
    await stop.wait()
    for task in tasks:
        task.cancel()
    await site.stop()
    await cloud.stop()
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sim.demo", description=__doc__.splitlines()[0])
    p.add_argument("--listener-port", type=int, required=True)
    p.add_argument("--meter-port", type=int, required=True)
    p.add_argument("--cloud-port", type=int, required=True)
    p.add_argument("--cloud-outage", type=float, default=0.0, help="seconds without the cloud")
    return p.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s peers %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(asyncio.run(main(parse())))
