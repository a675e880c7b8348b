"""Process hygiene for the Thespian node layer (each rule from a measured failure; ARCHITECTURE.md).

- Every Thespian socket binds 127.0.0.1: Thespian binds ``('', port)`` for "external" addresses and
  speaks unauthenticated pickle. ``THESPIAN_BASE_IPADDR`` only changes the advertised address, so
  the bind is forced in ``IPActorAddress`` itself, before the system starts (children fork from it).
- No process outlives the runtime: the launcher is a child subreaper (Thespian's admin double-forks
  away from it, so orphans come back to the launcher to be stopped) and every process forked from
  it watches the launcher's pidfd and kills itself when the launcher is gone, so kill -9 of the
  launcher takes the admin, the root and the nodes along.
- Thespian's own log file goes under the site's storage directory, not /tmp.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import threading
from pathlib import Path
from typing import Any

_PR_SET_CHILD_SUBREAPER = 36
_patched = False


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}, {value}) failed: {os.strerror(err)}")


def force_loopback_bind(*, bind_address: str = "127.0.0.1") -> None:
    """Make every Thespian listening socket bind ``bind_address`` (idempotent)."""
    global _patched
    os.environ["THESPIAN_BASE_IPADDR"] = bind_address
    if _patched:
        return
    from thespian.system.transport import IPBase

    original = IPBase.IPActorAddress.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        host, port = self.bindname[0], self.bindname[1]
        if host in ("", "0.0.0.0", None):
            self.bindname = (bind_address, port)

    IPBase.IPActorAddress.__init__ = init
    _patched = True


def thespian_bind_is_forced() -> bool:
    return _patched


def become_subreaper() -> None:
    """Orphaned descendants are re-parented to this process, so it can find and stop them all."""
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def _watch_launcher(launcher_pid: int) -> None:
    """Kill this process as soon as the launcher process is gone (event-driven, via a pidfd)."""
    try:
        fd = os.pidfd_open(launcher_pid)
    except ProcessLookupError:
        os.kill(os.getpid(), signal.SIGKILL)
        return
    try:
        select.select([fd], [], [])  # readable when the launcher exits
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


def _start_launcher_watch(launcher_pid: int) -> None:
    if os.getpid() == launcher_pid:
        return
    threading.Thread(
        target=_watch_launcher, args=(launcher_pid,), name="launcher-watch", daemon=True
    ).start()


def die_with_launcher() -> None:
    """Every process forked from here on (at any depth, raw ``os.fork`` included, as Thespian's
    admin daemonizes with setsid + fork) kills itself when this process dies.

    ``PR_SET_PDEATHSIG`` cannot do it: it follows the parent at the time of the call, and the
    admin's parent is a short-lived intermediate process.
    """
    launcher_pid = os.getpid()
    os.register_at_fork(after_in_child=lambda: _start_launcher_watch(launcher_pid))


def reap_children() -> list[int]:
    """Collect exit statuses of finished children (a subreaper inherits zombies)."""
    reaped: list[int] = []
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped.append(pid)


def stop_descendants(timeout_s: float = 3.0, grace_s: float = 1.0) -> list[str]:
    """Stop what is left below this process: each descendant gets ``grace_s`` to exit on its
    own (the Thespian processes are still on their way out when ``shutdown`` returns), then
    SIGTERM, then SIGKILL after ``timeout_s``. Returns those signalled, as "pid (command)"."""
    import psutil

    me = psutil.Process()
    procs = me.children(recursive=True)
    _, running = psutil.wait_procs(procs, timeout=grace_s)
    named: list[str] = []
    for p in running:
        command = ""
        with contextlib.suppress(psutil.Error):
            command = " ".join(p.cmdline())[:200] or p.name()
        with contextlib.suppress(psutil.Error):
            p.terminate()  # whether or not its command could be read
            named.append(f"{p.pid} ({command or 'gone'})")
    _, alive = psutil.wait_procs(running, timeout=timeout_s)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=timeout_s)
    reap_children()
    return named


def configure_thespian_logfile(storage_dir: Path) -> None:
    storage_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("THESPLOG_FILE", str(storage_dir / "thespian.log"))
    os.environ.setdefault("THESPLOG_FILE_MAXSIZE", str(1 << 20))
    os.environ.setdefault("THESPLOG_THRESHOLD", "WARNING")


def ignore_terminal_signals() -> None:
    """In node and root processes: SIGTERM/SIGINT to the whole process group (Ctrl-C, or systemd
    without KillMode=mixed) must not stop them behind the launcher's back; the launcher drives
    the orderly stop."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
