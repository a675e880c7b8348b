"""``run.py status``'s node and supervision-tree tables."""

from __future__ import annotations

import io
from pathlib import Path

from cli import status
from cli.status import render
from config.schema import parse_site


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


def test_json_with_nothing_known_keeps_prose_off_stdout(tmp_path: Path) -> None:
    """``status --json`` is read by programs: with no runtime answering and nothing persisted
    (exit 2) the explanation goes to stderr, and stdout holds no text a JSON parser chokes on."""
    site = f'[site]\nname = "s"\nstorage_dir = "{tmp_path / "none"}"\n'
    config = parse_site(site, source=str(tmp_path / "site.toml"), base_dir=tmp_path)
    out, err = io.StringIO(), io.StringIO()
    code = status.main(config, as_json=True, watch=False, out=out, err=err)
    assert code == status.EXIT_UNKNOWN
    assert out.getvalue() == "", out.getvalue()
    assert "no runtime answered and nothing is persisted" in err.getvalue()
    human = io.StringIO()  # without --json the message stays where the view goes
    assert status.main(config, as_json=False, watch=False, out=human, err=err) == 2
    assert "no runtime answered" in human.getvalue()
