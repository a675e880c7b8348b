"""Simulated peers of the edge: charge points with cars, a grid meter, the cloud, load.

Shared by the demo, the tests and the benchmarks; none of it is imported by the runtime.

- ``sim.car``: ``CarSpec`` / ``Car``, pure physics (ramps, quirks, energy), ``now_s`` passed in.
- ``sim.smart_charging``: charging profiles, the composite limit and schedule (pure).
- ``sim.charge_point``: ``SimChargePoint`` (OCPP 1.6J or 2.0.1 on the ``ocpp`` package), configured
  by ``sim.cp_config.ChargePointConfig`` with field quirks in ``Behaviour``; its connection loop is
  ``sim.cp_session``, its offline queue ``sim.outbox``, version specifics ``sim.ocpp16*`` and
  ``sim.ocpp201*``.
- ``sim.meter``: ``SimMeter``, a pymodbus TCP server following the site (``sim.register_maps``,
  ``sim.base_load``).
- ``sim.cloud``: ``SimCloud``, a small CSMS that records every frame, injects faults and sends
  calls (``sim.cloud_calls``); ``sim.profile_payloads`` builds profiles for it.
- ``sim.loadgen``: ``run_load`` / ``run_load_async`` and ``python -m sim.loadgen``.
- ``sim.site``: ``SimSite``, charge points + cars + meter in one object for demos and e2e tests.
- ``sim.clock``: ``SystemClock``, ``ScaledClock``, ``ManualClock``.
"""
