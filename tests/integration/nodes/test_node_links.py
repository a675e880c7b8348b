"""Direct node links (supervisors/node_links.py) on real Unix sockets: a message goes direct once
the peer listens, through the fallback (the Thespian root in nodes mode) before and while the
peer is gone, and every message is accounted for on one path or the other."""

from __future__ import annotations

import asyncio
import pickle
import stat
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.control import MAX_UNIX_PATH
from supervisors.node_links import NodeLinks, link_socket
from tests.helpers import wait_for


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # pytest's tmp_path can be longer than an AF_UNIX path allows; this one is short
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="links") as d:
        yield Path(d)


class Node:
    """One side: what reached it directly, and what it sent through the fallback."""

    def __init__(self, name: str, storage: Path) -> None:
        self.got: list[tuple[str, object]] = []
        self.via_root: list[tuple[str, object]] = []
        self.links = NodeLinks(
            name,
            storage,
            deliver=lambda path, msg: self.got.append((path, msg)),
            fallback=lambda path, msg: self.via_root.append((path, msg)),
            retry_s=0.05,
        )


async def test_messages_go_direct_once_the_peer_listens_and_in_order(short_dir: Path) -> None:
    energy, broker = Node("energy", short_dir), Node("broker", short_dir)
    await energy.links.start()
    energy.links.send("broker/profiles", 0)  # nobody listens yet: the root carries it
    assert energy.via_root == [("broker/profiles", 0)]
    await broker.links.start()
    mode = stat.S_IMODE(link_socket(short_dir, "broker").stat().st_mode)
    assert mode == 0o600, oct(mode)
    sent = 1

    def direct() -> bool:
        nonlocal sent
        energy.links.send("broker/profiles", sent)
        sent += 1
        return "broker" in energy.links.peers

    await wait_for(direct, timeout=5, what="the link to the broker up")
    for i in range(sent, sent + 200):
        energy.links.send("broker/profiles", {"seq": i, "limits": list(range(50))})
    sent += 200
    await wait_for(
        lambda: len(broker.got) + len(energy.via_root) == sent,
        timeout=5,
        what="every message delivered on one path or the other",
    )
    direct_seqs = [m["seq"] if isinstance(m, dict) else m for _, m in broker.got]
    assert direct_seqs == sorted(direct_seqs), "the direct link keeps the order"
    assert direct_seqs[-200:] == list(range(sent - 200, sent))
    report = energy.links.report()
    assert report["sent_direct"] == len(broker.got) >= 200
    assert report["sent_via_root"] == len(energy.via_root)
    assert broker.links.report()["received"] == len(broker.got)
    await energy.links.close()
    await broker.links.close()
    assert not link_socket(short_dir, "broker").exists()


async def test_a_peer_that_goes_away_falls_back_then_reconnects(short_dir: Path) -> None:
    energy, broker = Node("energy", short_dir), Node("broker", short_dir)
    await broker.links.start()
    energy.links.send("broker/demand", "first")  # starts the connection
    await wait_for(lambda: "broker" in energy.links.peers, timeout=5, what="link up")
    await broker.links.close()  # the broker node stops (or is killed: its socket closes)
    await wait_for(lambda: "broker" not in energy.links.peers, timeout=5, what="link down")
    energy.links.send("broker/demand", "while away")
    assert energy.via_root[-1] == ("broker/demand", "while away")
    restarted = Node("broker", short_dir)  # the node back, on the same path
    await restarted.links.start()

    def again() -> bool:
        energy.links.send("broker/demand", "after")
        return "broker" in energy.links.peers

    await wait_for(again, timeout=5, what="the link back up to the restarted node")
    energy.links.send("broker/demand", "last")
    await wait_for(
        lambda: ("broker/demand", "last") in restarted.got, timeout=5, what="direct again"
    )
    total = len(broker.got) + len(restarted.got) + len(energy.via_root)
    assert total == energy.links.sent_direct + energy.links.sent_fallback, "nothing unaccounted"
    await energy.links.close()
    await restarted.links.close()


async def test_a_malformed_frame_is_dropped_and_the_link_keeps_serving(short_dir: Path) -> None:
    broker = Node("broker", short_dir)
    await broker.links.start()
    reader, writer = await asyncio.open_unix_connection(str(link_socket(short_dir, "broker")))
    junk = b"\x80\x05not a pickle"
    good = pickle.dumps(("broker/profiles", "ok"))
    no_path = pickle.dumps((42, "a message without a path"))
    for payload in (junk, no_path, good):
        writer.write(struct.pack(">I", len(payload)) + payload)
    await writer.drain()
    await wait_for(
        lambda: broker.got == [("broker/profiles", "ok")], timeout=5, what="the good one"
    )
    assert broker.links.report()["bad_frames"] == 2
    # a frame announcing more than the limit ends that connection, not the listener
    writer.write(struct.pack(">I", 0xFFFFFFFF))
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    energy = Node("energy", short_dir)
    energy.links.send("broker/profiles", "first")
    await wait_for(lambda: "broker" in energy.links.peers, timeout=5, what="link up")
    energy.links.send("broker/profiles", "after")
    await wait_for(lambda: broker.got[-1] == ("broker/profiles", "after"), timeout=5, what="after")
    await energy.links.close()
    await broker.links.close()


async def test_a_socket_path_too_long_for_af_unix_means_the_root_carries_everything(
    short_dir: Path,
) -> None:
    deep = short_dir / ("d" * (MAX_UNIX_PATH - len(str(short_dir))))
    deep.mkdir()
    broker, energy = Node("broker", deep), Node("energy", deep)
    await broker.links.start()
    assert broker.links.report()["socket"] is None
    for i in range(3):
        energy.links.send("broker/profiles", i)
    assert [m for _, m in energy.via_root] == [0, 1, 2]
    assert not energy.links.connecting, "no connection attempted to a path that cannot exist"
    await broker.links.close()
    await energy.links.close()


async def test_a_peer_of_another_user_is_refused(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import supervisors.node_links as node_links

    broker = Node("broker", short_dir)
    await broker.links.start()
    real_uid = node_links.os.getuid()
    monkeypatch.setattr(node_links.os, "getuid", lambda: real_uid + 1)
    reader, writer = await asyncio.open_unix_connection(str(link_socket(short_dir, "broker")))
    payload = pickle.dumps(("broker/profiles", "from someone else"))
    writer.write(struct.pack(">I", len(payload)) + payload)
    await writer.drain()
    try:
        rest = await asyncio.wait_for(reader.read(), 5)
    except ConnectionResetError:  # closed with our frame unread
        rest = b""
    assert rest == b"", "the connection is closed"
    assert broker.got == []
    assert broker.links.report()["refused"] == 1
    writer.close()
    await broker.links.close()
