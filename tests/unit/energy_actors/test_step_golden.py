"""The allocator's step decides as it did before it was made faster (see step_golden.py)."""

from __future__ import annotations

import json

import pytest

from tests.unit.energy_actors.step_golden import GOLDEN, SCENARIOS, digest, run


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_step_decides_as_the_golden_file_says(name: str) -> None:
    expected = json.loads(GOLDEN.read_text())[name]
    steps = run(name)
    assert len(steps) == len(expected), f"{name}: {len(steps)} steps, {len(expected)} in the file"
    for i, (text, want) in enumerate(zip(steps, expected, strict=True)):
        assert digest(text) == want, f"{name}, step {i} decided otherwise:\n{text}"
