"""The README's configuration reference and config/example-site.toml name every key the site file
and a meter register map accept: a key a loader reads that the reference does not name is a
setting an operator cannot find."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from actors.auth_settings import AuthSettings
from config import fields
from config.schema import load_site
from drivers.modbus.registers import MAPS_DIR, load_map_file

REPO = Path(__file__).resolve().parents[3]
README = REPO / "README.md"
EXAMPLE = REPO / "config" / "example-site.toml"


@pytest.fixture
def keys_read(monkeypatch: pytest.MonkeyPatch) -> set[tuple[str, str, str]]:
    """Every (table path, key) a loader asks for while the test runs, present or not (the
    readers' one way in, ``Table._get``, recorded and then run as it is)."""
    asked: set[tuple[str, str, str]] = set()
    get = fields.Table._get

    def recording(self: fields.Table, name: str, default: Any) -> Any:
        asked.add((self.source, re.sub(r"\[\d+\]", "", self.path), name))
        return get(self, name, default)

    monkeypatch.setattr(fields.Table, "_get", recording)
    return asked


def reference() -> str:
    text = README.read_text()
    start = text.index("### Configuration reference")
    return text[start : text.index("\n### ", start + 1)]


def named(name: str, ref: str) -> bool:
    """``ref`` names the key as `name`, or the table as `[name]`, `[[name]]`, `[[parent.name]]`."""
    return re.search(rf"`{name}`|`\[\[?([\w.]+\.)?{name}\]\]?`", ref) is not None


def site_keys(asked: set[tuple[str, str, str]], tmp_path: Path) -> set[tuple[str, str]]:
    """The (table path, key) pairs read from the example site file (not from the meter maps
    its meters load)."""
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "CP-001.key").write_text("abcdefghijklmnop1234")
    site = tmp_path / "site.toml"
    site.write_text(EXAMPLE.read_text())
    load_site(site)
    return {(path, name) for source, path, name in asked if source == str(site)}


def test_the_example_reads_every_kind_of_section(
    keys_read: set[tuple[str, str, str]], tmp_path: Path
) -> None:
    # What makes the next test see every key: each grid-limit kind and each section is in the
    # example, so its loader asked for all its keys.
    asked = site_keys(keys_read, tmp_path)
    tables = {path.partition(".")[0] for path, _ in asked}
    assert {
        "site",
        "runtime",
        "listener",
        "cloud",
        "authorization",
        "meters",
        "feeders",
        "grid_limits",
        "allocation",
        "charge_points",
    } <= tables | {name for path, name in asked if not path}
    kinds = re.findall(r'^kind = "(\w+)"', EXAMPLE.read_text(), re.M)
    assert sorted(kinds) == ["cloud", "contact", "modbus", "schedule", "static"]


def test_every_site_file_key_is_in_the_reference_and_the_example(
    keys_read: set[tuple[str, str, str]], tmp_path: Path
) -> None:
    asked = site_keys(keys_read, tmp_path)
    sections = {name for path, name in asked if not path}  # [site], [[meters]], ...
    ref = reference()
    example = EXAMPLE.read_text()
    unnamed = sorted(
        f"{path}.{name}" if path else name for path, name in asked if not named(name, ref)
    )
    assert not unnamed, f"keys the README's configuration reference does not name: {unnamed}"
    missing = sorted(
        f"{path}.{name}"
        for path, name in asked
        if path and name not in sections
        if not re.search(rf"(?<![\w.]){name} = |\[\[?([\w.]+\.)?{name}\]\]?", example)
    )
    assert not missing, f"keys config/example-site.toml does not show: {missing}"


def test_every_register_map_key_is_in_the_reference(keys_read: set[tuple[str, str, str]]) -> None:
    maps = sorted(MAPS_DIR.glob("*.toml"))
    assert len(maps) >= 7
    for path in maps:
        load_map_file(path)
    ref = reference()
    asked = {name for _, _, name in keys_read}
    assert {"max_gap", "scale_factor", "current_sign", "optional", "sunspec_models"} <= asked
    unnamed = sorted(name for name in asked if not named(name, ref))
    assert not unnamed, f"register map keys the README's configuration reference lacks: {unnamed}"


@pytest.fixture
def defaults_read(monkeypatch: pytest.MonkeyPatch) -> dict[tuple[str, str, str], Any]:
    """Every (source, table path, key) a loader asks for, with the default it passes."""
    asked: dict[tuple[str, str, str], Any] = {}
    get = fields.Table._get

    def recording(self: fields.Table, name: str, default: Any) -> Any:
        asked[(self.source, re.sub(r"\[\d+\]", "", self.path), name)] = default
        return get(self, name, default)

    monkeypatch.setattr(fields.Table, "_get", recording)
    return asked


KIND_ROWS = ("static", "modbus", "schedule", "contact", "cloud")


def scope(path: str, ref: str) -> str:
    """The part of the reference that documents the keys of the table at ``path``: its row of
    the sections' table, for grid limits also the kinds' rows."""
    rows = ref.splitlines()

    def row(head: str) -> str:
        return next(line for line in rows if line.startswith(f"| `{head}` |"))

    section = path.partition(".")[0]
    if path == "grid_limits.steps":
        return row("schedule")
    if section == "grid_limits":
        return " ".join([row("[[grid_limits]]"), *(row(k) for k in KIND_ROWS)])
    if section in ("meters", "feeders", "charge_points"):
        return row(f"[[{section}]]")
    return row(f"[{section}]")


def documented_default(name: str, text: str) -> str | None:
    """What ``text`` gives in parentheses right after `name` (or after `name`/`other`), when it
    is a value (a number, true/false, or a `literal`) rather than prose; None otherwise. Of
    `first`/`last` (A..B), `last` gets B."""
    m = re.search(rf"(?<!/)`{name}`(/`\w+`)? \(([^)]*)", text)
    second = False
    if m is None:
        m = re.search(rf"`\w+`/`{name}` \(([^)]*)", text)
        second = True
        if m is None:
            return None
    inside = m.group(m.lastindex or 0)
    if second and ".." in inside:
        inside = inside.split("..", 1)[1]
    value = re.match(r"`([^`]*)`|(-?\d+(?:\.\d+)?(?: MiB)?)(?=[;:,.)\s]|$)|(true|false)\b", inside)
    if value is None:
        return None
    return next(g for g in value.groups() if g is not None).strip('"').rstrip(".")


def same(documented: str, default: Any) -> bool:
    if isinstance(default, bool):
        return documented == str(default).lower()
    if isinstance(default, int | float):
        number, _, unit = documented.partition(" ")
        return float(number) * (1 << 20 if unit == "MiB" else 1) == default
    return documented == str(default)


def test_every_default_the_reference_gives_is_the_loaders(
    defaults_read: dict[tuple[str, str, str], Any], tmp_path: Path
) -> None:
    """A default the README states, `key` (value), in its section's row (a register map's in its
    paragraph), is the one the loader passes: a changed default shows in the reference."""
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "CP-001.key").write_text("abcdefghijklmnop1234")
    site = tmp_path / "site.toml"
    site.write_text(EXAMPLE.read_text())
    config = load_site(site)
    ref = reference()
    asked = {(path, name): d for (src, path, name), d in defaults_read.items() if src == str(site)}
    # [authorization] reads its keys without a default: AuthSettings holds them
    asked |= {("authorization", key): v for key, v in AuthSettings().to_plain().items()}
    checked, wrong = 0, []
    for (path, name), default in sorted(asked.items()):
        if not path or default is None or default is fields._MISSING or isinstance(default, list):
            continue
        if path == "site" and name == "storage_dir":
            default = default.replace(config.name, "<name>")
        documented = documented_default(name, scope(path, ref))
        if documented is None:
            continue
        checked += 1
        if not same(documented, default):
            wrong.append(f"{path}.{name}: README {documented!r}, the loader {default!r}")
    assert not wrong, wrong
    assert checked >= 70, checked  # the reference's defaults were found, not skipped

    text = README.read_text()
    start = text.index("A meter register map is data")
    paragraph = text[start : text.index("\n\n", start)]
    for path in sorted(MAPS_DIR.glob("*.toml")):
        load_map_file(path)
    map_defaults = {
        name: d
        for (src, path, name), d in defaults_read.items()
        if src.endswith(".toml") and src != str(site) and not path
    }
    checked = 0
    for name, default in sorted(map_defaults.items()):
        documented = documented_default(name, paragraph)
        if documented is None or default is fields._MISSING or isinstance(default, list):
            continue
        checked += 1
        assert same(documented, default), (name, documented, default)
    assert checked >= 6, checked
