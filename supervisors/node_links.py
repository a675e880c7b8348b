"""Direct links between the node processes' loops, for the messages between nodes.

A message for another node (a profile batch, a demand batch) used to cross four threads and three
processes: this node's loop -> its Thespian thread -> the Thespian root -> the other node's Thespian
thread -> its loop. Measured on 2 cores with 500 charge points (bench/energy.py): 10-30 ms per
profile batch, most of it in the two Thespian threads waiting for their process's GIL while the
loops work, and more when the broker is loaded. So each node also listens on a Unix socket in the
storage directory (mode 0600, and the peer's uid checked) and its peers write to it from their
loops: one hop, no root, about a millisecond.

Thespian stays the supervisor and the fallback: a message goes direct when the link to its node
is up, through the root otherwise (the peer not started yet, restarting, or its socket path too
long for AF_UNIX), and the link is retried in the background. Messages between nodes are not
durable either way; each is a snapshot or is resent (``DemandBatch`` every second, a full
``ProfileBatch`` every ``resend_s``), or its sender keeps it and the receiver asks for it again
when it starts (a cloud grid limit the broker accepted: ``CloudLimitWanted``; the central rules:
``SiteRulesWanted``). While the path switches, a message sent one way can overtake
one sent the other way: the profile router drops a batch older than the last it handled.

Frames: 4-byte big-endian length, then the pickled ``(path, message)``; a frame that does not
decode is logged and dropped, the link stays up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drivers.control import MAX_UNIX_PATH, bind_control_socket, peer_uid, unix_path_fits

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 64 * 1024 * 1024
MAX_BUFFERED_BYTES = 8 * 1024 * 1024  # a peer that stops reading: fall back, do not grow
RETRY_S = 1.0
_HEADER = struct.Struct(">I")


def link_socket(storage_dir: Path, node: str) -> Path:
    return storage_dir / f"{node}.link.sock"


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    return None if sock is None else peer_uid(sock)


class NodeLinks:
    """This node's end: a listener for its peers and a connection to each peer it sends to."""

    def __init__(
        self,
        name: str,
        storage_dir: Path,
        *,
        deliver: Callable[[str, object], None],
        fallback: Callable[[str, object], None],
        retry_s: float = RETRY_S,
    ) -> None:
        self.name = name
        self.storage_dir = storage_dir
        self.deliver = deliver
        self.fallback = fallback
        self.retry_s = retry_s
        self.path = link_socket(storage_dir, name)
        self.server: asyncio.AbstractServer | None = None
        self.peers: dict[str, asyncio.StreamWriter] = {}
        self.connecting: dict[str, asyncio.Task[None]] = {}
        self.next_try_s: dict[str, float] = {}
        self.tasks: set[asyncio.Task[None]] = set()  # our connections to the peers
        self.served: set[asyncio.StreamWriter] = set()  # the peers' connections to us
        self.sent_direct = 0
        self.sent_fallback = 0
        self.received = 0
        self.bad_frames = 0
        self.refused = 0

    # -- listening ------------------------------------------------------------------------------
    async def start(self) -> None:
        if not unix_path_fits(self.path):
            log.warning(
                "node %s: no direct node link, the socket path %s is longer than %d bytes; "
                "messages between nodes go through the Thespian root",
                self.name,
                self.path,
                MAX_UNIX_PATH,
            )
            return
        sock = bind_control_socket(self.path)
        self.server = await asyncio.start_unix_server(self._serve, sock=sock)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.served.add(writer)
        try:
            if _peer_uid(writer) != os.getuid():
                self.refused += 1
                log.warning("node %s: node link from another user refused", self.name)
                return
            while True:
                header = await reader.readexactly(_HEADER.size)
                (size,) = _HEADER.unpack(header)
                if size > MAX_FRAME_BYTES:
                    log.warning("node %s: node link frame of %d bytes refused", self.name, size)
                    return
                payload = await reader.readexactly(size)
                try:
                    path, message = pickle.loads(payload)
                    if not isinstance(path, str):
                        raise TypeError(f"path {path!r} is not a str")
                except Exception as exc:
                    self.bad_frames += 1
                    log.warning("node %s: node link frame dropped: %r", self.name, exc)
                    continue
                self.received += 1
                try:
                    self.deliver(path, message)
                except Exception:  # one bad delivery must not end the link
                    log.exception(
                        "node %s: delivering %s to %s failed",
                        self.name,
                        type(message).__name__,
                        path,
                    )
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the peer went away; it reconnects when it has something to say
        finally:
            writer.close()
            self.served.discard(writer)

    # -- sending --------------------------------------------------------------------------------
    def send(self, path: str, message: object) -> None:
        """From this node's loop: ``message`` for the actor at ``path`` on another node."""
        node = path.split("/", 1)[0]
        writer = self.peers.get(node)
        if writer is not None and not writer.is_closing():
            if writer.transport.get_write_buffer_size() <= MAX_BUFFERED_BYTES:
                payload = pickle.dumps((path, message), protocol=pickle.HIGHEST_PROTOCOL)
                writer.write(_HEADER.pack(len(payload)) + payload)
                self.sent_direct += 1
                return
            log.warning("node %s: node link to %s not draining; reconnecting", self.name, node)
            writer.close()
        if writer is not None:
            self.peers.pop(node, None)
        self.sent_fallback += 1
        self.fallback(path, message)
        self._connect_soon(node)

    def _connect_soon(self, node: str) -> None:
        if node == self.name or node in self.connecting:
            return
        if time.monotonic() < self.next_try_s.get(node, 0.0):
            return
        path = link_socket(self.storage_dir, node)
        if not unix_path_fits(path):
            return
        task = asyncio.get_running_loop().create_task(self._connect(node, path))
        self.connecting[node] = task
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _connect(self, node: str, path: Path) -> None:
        try:
            reader, writer = await asyncio.open_unix_connection(str(path))
        except OSError:
            self.next_try_s[node] = time.monotonic() + self.retry_s
            return
        finally:
            self.connecting.pop(node, None)
        self.peers[node] = writer
        log.info("node %s: direct link to node %s up", self.name, node)
        # Nothing comes back on this connection: EOF means the peer is gone.
        with contextlib.suppress(ConnectionError):
            await reader.read()
        if self.peers.get(node) is writer:
            del self.peers[node]
            log.info("node %s: direct link to node %s down", self.name, node)
        writer.close()

    # -- status and stop ------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        return {
            "socket": None if self.server is None else str(self.path),
            "peers": sorted(self.peers),
            "sent_direct": self.sent_direct,
            "sent_via_root": self.sent_fallback,
            "received": self.received,
            "bad_frames": self.bad_frames,
            "refused": self.refused,
        }

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        for writer in [*self.peers.values(), *self.served]:
            writer.close()  # a served connection's task then ends on its own
        self.peers.clear()
        for task in self.tasks:
            task.cancel()
