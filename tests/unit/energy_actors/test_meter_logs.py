"""The pymodbus log filter drops exactly the per-request noise the meter actor reports itself."""

from __future__ import annotations

import logging

import pytest

from actors.meter import PYMODBUS_LOGGER, _PerRequestNoise


def record(text: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(PYMODBUS_LOGGER, level, __file__, 1, text, None, None)


@pytest.mark.parametrize(
    ("lines", "kept"),
    [
        pytest.param(
            ["No response received after 0 retries, continue with next request\n>>>>> frames"],
            [],
            id="timeout-error-dropped",
        ),
        pytest.param(["Failed to connect [Errno 111]"], [], id="refused-connect-dropped"),
        pytest.param(
            ["Cancel send, because not connected!", "Repeating...."], [], id="repeat-of-noise"
        ),
        pytest.param(
            ["requested device id does not exist: 7", "Repeating...."],
            ["requested device id does not exist: 7", "Repeating...."],
            id="other-errors-and-their-repeats-kept",
        ),
        pytest.param(
            ["Failed to connect x", "Unable to decode frame y", "Repeating...."],
            ["Unable to decode frame y", "Repeating...."],
            id="repeat-follows-the-last-message",
        ),
    ],
)
def test_filter(lines: list[str], kept: list[str]) -> None:
    f = _PerRequestNoise()
    passed = [line for line in lines if f.filter(record(line))]
    assert passed == kept
    assert f.dropped == len(lines) - len(kept)
