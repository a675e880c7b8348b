"""The control socket: a Unix socket in the storage directory, one JSON request and answer a line.

Only the local user can reach it (mode 0600); it is how ``run.py status`` asks a running runtime.
Requests: ``{"cmd": "status"}``. Answers: the status document (see ``cli/status.py``) or
``{"error": "..."}``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from pathlib import Path
from typing import Any

import orjson

MAX_REQUEST_BYTES = 64 * 1024


class ControlUnavailable(RuntimeError):
    """The runtime did not answer on its control socket (not running, or too slow)."""


MAX_UNIX_PATH = 107  # bytes of an AF_UNIX path on Linux, without the terminating NUL


def unix_path_fits(path: Path) -> bool:
    return len(os.fsencode(str(path))) <= MAX_UNIX_PATH


def peer_uid(sock: socket.socket) -> int:
    """The user id of the process at the other end of a Unix socket (``SO_PEERCRED``)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def bind_control_socket(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a socket left by a killed runtime
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_umask)
    sock.listen(16)
    return sock


def read_request(conn: socket.socket, timeout_s: float = 2.0) -> dict[str, Any]:
    conn.settimeout(timeout_s)
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST_BYTES:
            raise ValueError("control request too large")
    request = orjson.loads(data or b"{}")
    if not isinstance(request, dict):
        raise ValueError("control request must be a JSON object")
    return request


def encode_answer(answer: dict[str, Any]) -> bytes:
    return orjson.dumps(answer, default=str) + b"\n"


def ask(path: Path, request: dict[str, Any], *, timeout_s: float) -> dict[str, Any]:
    """Send one request to a running runtime; raise :class:`ControlUnavailable` on no answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(str(path))
            sock.sendall(orjson.dumps(request) + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except (OSError, TimeoutError) as exc:
        raise ControlUnavailable(f"no answer on {path}: {exc}") from exc
    if not data:
        raise ControlUnavailable(f"no answer on {path}: connection closed")
    answer = orjson.loads(data)
    if not isinstance(answer, dict):
        raise ControlUnavailable(f"bad answer on {path}")
    return answer
