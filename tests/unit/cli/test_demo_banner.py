"""What ``make run`` prints: commands a newcomer can paste into another terminal."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from cli.demo import REPO, banner
from config.schema import parse_site


def test_the_banner_runs_its_commands_with_the_demos_own_interpreter(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """README has ``.venv/bin/python run.py status``: a bare ``python`` is another interpreter
    (without the pinned requirements) or none at all on a fresh machine."""
    monkeypatch.chdir(REPO)  # where make run runs it
    monkeypatch.setenv("EDGE_DEMO_DIR", str(tmp_path))
    config = parse_site('[site]\nname = "demo"\n', source="<unit>", base_dir=tmp_path)
    text = banner(config, {"listener_port": 9000}, 0.0)
    python = os.path.relpath(sys.executable)
    python = sys.executable if python.startswith("..") else python
    commands = re.findall(r"(\S+) run\.py (\w+)", text)
    assert {c for _, c in commands} == {"status", "explain", "audit"}, text
    assert all(p == python for p, _ in commands), (python, text)
