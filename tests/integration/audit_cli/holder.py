"""Another process that holds a node store open read-write and appends on command, as a running
node does: ``python -m tests.integration.audit_cli.holder STORE_DIR``.

The store is opened with a 1 MiB map. Commands on stdin, one per line, each answered "ok" on
stdout: ``write SECONDS LIMIT_A`` appends a limit record for CP001 at T0 + SECONDS; ``grow``
doubles the map (as the writer does when it is full); ``fill N`` appends N records of about 700 bytes
each, at T0 + 1 h onwards; ``exit``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from drivers.store import audit_log
from drivers.store.env import open_store
from tests.integration.audit_cli.trail import limit


def main() -> None:
    store = open_store(Path(sys.argv[1]), map_size_bytes=1 << 20)
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if words[0] == "write":
            audit_log.write_records(store, [limit(float(words[1]), float(words[2]), "holder")])
        elif words[0] == "grow":
            store.grow()
        elif words[0] == "fill":
            records = [limit(3600 + i, 6, "x" * 300) for i in range(int(words[1]))]
            audit_log.write_records(store, records)
        elif words[0] == "exit":
            break
        print("ok", flush=True)
    store.close()


if __name__ == "__main__":
    main()
