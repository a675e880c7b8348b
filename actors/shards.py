"""Broker shards: which broker node serves a charge point.

With ``shards`` broker nodes, charge point ``id`` is served by node ``broker_node(shard_of(id,
shards))``: ``broker`` for shard 0 (the front, which listens on the OCPP port and passes the
other shards' connections on, drivers/ocpp/handover.py), ``broker-1``, ``broker-2``, ... for the
others. The hash is CRC-32 of the id's UTF-8 bytes, case folded (ids are matched without case,
config/schema.py): stable across processes and restarts (Python's ``hash`` of a str is not), so
the energy node and every broker node agree without asking.
"""

from __future__ import annotations

import zlib

BROKER = "broker"


def shard_of(charge_point_id: str, shards: int) -> int:
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    if shards == 1:
        return 0
    return zlib.crc32(charge_point_id.casefold().encode()) % shards


def broker_node(shard: int) -> str:
    return BROKER if shard == 0 else f"{BROKER}-{shard}"


def shard_of_node(node: str) -> int:
    """The shard of broker node ``node`` (its name: ``broker``, ``broker-1``, ...)."""
    if node == BROKER:
        return 0
    prefix = BROKER + "-"
    if node.startswith(prefix) and node[len(prefix) :].isdigit():
        return int(node[len(prefix) :])
    raise ValueError(f"not a broker node name: {node!r}")


def edge_endpoint_path(identity: str) -> str:
    """Where the edge's own session (``[cloud] edge_identity``) has its endpoint actor: on the
    front, among the charge points (actors/broker_tree.py). The energy node asks it for the
    cloud limits the edge accepted (CloudLimitWanted)."""
    return f"{broker_node(0)}/charge_points/{identity}"
