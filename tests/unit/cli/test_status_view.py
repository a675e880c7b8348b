"""``run.py status``'s node and supervision-tree tables."""

from __future__ import annotations

import io

from cli.status import render


def test_a_failure_text_with_control_characters_is_shown_escaped() -> None:
    """An actor's last failure is an exception's text, which may carry what a peer sent (a frame,
    an id): shown escaped, as the site table's cells are, not written to the terminal."""
    failure = "ValueError: bad frame '\x1b[2J\nFORGED  running'"
    child = {
        "id": "CP1",
        "kind": "worker",
        "state": "running",
        "restarts": 1,
        "mailbox_depth": 0,
        "last_failure": failure,
    }
    node = {
        "name": "broker",
        "kind": "broker",
        "state": "running",
        "pid": 1,
        "restarts": 0,
        "dead_letters": 0,
        "last_failure": failure,
        "tree": [child],
    }
    doc = {"stale": False, "site": "s", "mode": "nodes", "launcher": {"pid": 1}, "nodes": [node]}
    out = io.StringIO()
    render(doc, out)
    text = out.getvalue()
    assert "\x1b" not in text
    assert not any(line.startswith("FORGED") for line in text.splitlines())
    assert text.count("\\x1b[2J\\nFORGED") == 2, text
