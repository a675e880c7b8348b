"""OCPP-J drivers: the only code here that touches websockets, and the sans-I/O pieces under it.

- :mod:`~drivers.ocpp.codes`: versions, subprotocols, error codes per version;
- :mod:`~drivers.ocpp.framing`: text frame to typed frame (raw text kept) and back, the errors;
- :mod:`~drivers.ocpp.validation`: the official JSON schemas, compiled once (fastjsonschema);
- :mod:`~drivers.ocpp.identity`: what a charge point identity may be;
- :mod:`~drivers.ocpp.connection`: one open websocket, either side (:class:`OcppConnection`);
- :mod:`~drivers.ocpp.server`: the listener charge points connect to;
- :mod:`~drivers.ocpp.upstream`: the client side, one session to the cloud per charge point;
- :mod:`~drivers.ocpp.redact`: websockets loggers that never write a secret.
"""
