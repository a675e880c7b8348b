"""A change of ``[runtime] broker_shards``: rotated keys follow their charge points to the node
that serves them (supervisors/reshard.py), on real LMDB stores in a temp dir."""

from __future__ import annotations

from pathlib import Path

from actors.credentials import TABLE, StoredKey
from actors.messages import EnqueueCall
from actors.shards import broker_node, shard_of
from drivers.store import codec
from drivers.store.codec import encode
from drivers.store.env import Store, mailbox_key
from supervisors.reshard import move_keys, pending_moves, refusal

# Ids that two nodes split: one served by "broker", the other by "broker-1".
FRONTS = [c for c in (f"CP{n}" for n in range(1, 40)) if shard_of(c, 2) == 0]
SECONDS = [c for c in (f"CP{n}" for n in range(1, 40)) if shard_of(c, 2) == 1]


def key(password: str, rotated_utc: str) -> StoredKey:
    return StoredKey(
        password=password,
        previous=None,
        site_password_sha256="s" * 64,
        site_cloud_password_sha256="c" * 64,
        rotated_utc=rotated_utc,
        action="ChangeConfiguration",
    )


def put(storage: Path, node: str, cp_id: str, value: StoredKey) -> None:
    store = Store(storage / node)
    try:
        store.write_now([("put", TABLE, cp_id.encode(), codec.encode(value))])
    finally:
        store.close()


def keys(storage: Path, node: str) -> dict[str, str]:
    """cp -> password of the keys in ``node``'s store."""
    if not (storage / node / "data.mdb").exists():
        return {}
    store = Store(storage / node, readonly=True)
    try:
        return {k.decode(): codec.decode(v).password for k, v in store.scan(TABLE, b"")}
    finally:
        store.close()


def test_a_key_moves_with_its_charge_point_and_back(tmp_path: Path) -> None:
    moving, staying = SECONDS[0], FRONTS[0]
    put(tmp_path, "broker", moving, key("moving-key-0123456789", "2026-11-29T10:00:00Z"))
    put(tmp_path, "broker", staying, key("staying-key-012345678", "2026-11-29T10:00:00Z"))
    Store(tmp_path / "energy").close()  # not a broker node: left alone

    said = move_keys(tmp_path, 2)
    assert said == [f"{moving}: its rotated key moved from broker to broker-1"]
    assert "moving-key" not in " ".join(said)  # never the key itself
    assert keys(tmp_path, "broker") == {staying: "staying-key-012345678"}
    assert keys(tmp_path, "broker-1") == {moving: "moving-key-0123456789"}

    assert move_keys(tmp_path, 2) == []  # in place: nothing to do
    said = move_keys(tmp_path, 1)  # back to one node
    assert said == [f"{moving}: its rotated key moved from broker-1 to broker"]
    assert keys(tmp_path, "broker") == {
        staying: "staying-key-012345678",
        moving: "moving-key-0123456789",
    }
    assert keys(tmp_path, "broker-1") == {}


def test_the_latest_of_several_copies_wins_and_the_others_go(tmp_path: Path) -> None:
    """A key rotated again in its new node, then the count changed back while an older copy
    was still in the old node (written by a version before the copies were removed)."""
    cp = SECONDS[0]
    put(tmp_path, "broker", cp, key("older-key-0123456789", "2026-11-29T10:00:00Z"))
    put(tmp_path, "broker-1", cp, key("newer-key-0123456789", "2026-11-29T11:00:00Z"))
    assert move_keys(tmp_path, 1) == [f"{cp}: its rotated key moved from broker-1 to broker"]
    assert keys(tmp_path, "broker") == {cp: "newer-key-0123456789"}
    assert keys(tmp_path, "broker-1") == {}
    # The other way round: the home's copy is the latest; the stale one elsewhere is removed.
    put(tmp_path, "broker", cp, key("newest-key-012345678", "2026-11-29T12:00:00Z"))
    put(tmp_path, "broker-1", cp, key("stale-key-0123456789", "2026-11-29T09:00:00Z"))
    assert move_keys(tmp_path, 1) == []
    assert keys(tmp_path, "broker") == {cp: "newest-key-012345678"}
    assert keys(tmp_path, "broker-1") == {}


def test_three_nodes(tmp_path: Path) -> None:
    cps = [f"CP{n}" for n in range(1, 13)]
    for cp in cps:
        put(tmp_path, "broker", cp, key(f"key-of-{cp}-0123456789", "2026-11-29T10:00:00Z"))
    said = move_keys(tmp_path, 3)
    assert len(said) == sum(1 for cp in cps if shard_of(cp, 3) != 0)
    for cp in cps:
        assert keys(tmp_path, broker_node(shard_of(cp, 3)))[cp] == f"key-of-{cp}-0123456789"
    assert sum(len(keys(tmp_path, broker_node(k))) for k in range(3)) == len(cps)


def test_mail_still_in_a_moving_charge_points_mailboxes_refuses_the_new_count(
    tmp_path: Path,
) -> None:
    """A transaction message the ChargePoint handed durably to its CloudLink (EnqueueCall,
    committed before the charge point got its answer) that the CloudLink had not taken into
    its outbox yet when the site stopped (a kill -9) is in the CloudLink's durable mailbox, not
    in the outbox. The refusal looked at the outbox and the state only: the new count started,
    the charge point's actors started on its new node without it, and its old node moved it
    to the dead letters at its start (node_runtime), so the cloud never got it. Like a message
    in the outbox, it refuses the count, naming the charge point; mail of a charge point that
    stays does not."""
    moving, staying = SECONDS[0], FRONTS[0]
    enqueued = EnqueueCall(
        message_id="m1",
        action="StopTransaction",
        text='[2,"m1","StopTransaction",{}]',
        received_utc="2026-11-30T10:00:00.000Z",
    )
    store = Store(tmp_path / "broker")
    try:
        store.write_now(
            [
                ("put", "mailbox", mailbox_key(path, store.next_id()), b"\x00" + encode(enqueued))
                for path in (f"broker/cloud/{moving}", f"broker/cloud/{staying}")
            ]
        )
    finally:
        store.close()

    assert pending_moves(tmp_path, 1) == {}
    assert pending_moves(tmp_path, 2) == {
        moving: ["1 message in its actors' durable mailboxes in broker"]
    }
    said = refusal(tmp_path, 2)
    assert said is not None
    assert f"{moving}:" in said
    assert f"{staying}:" not in said
