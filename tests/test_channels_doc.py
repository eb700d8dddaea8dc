"""docs/channels.md's capability table is the code's: the Node client's own values (asked
through tsx) and the Python side's flags and defaults. Change a capability in the code and
this fails until `python scripts/channels_table.py --write` updates the page."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from MetaPuppet.protocol import CAPABILITY_FLAGS, parse_capabilities

ROOT = Path(__file__).resolve().parent.parent


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "channels_table", ROOT / "scripts" / "channels_table.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["channels_table"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def table() -> ModuleType:
    return load_script()


@pytest.fixture(scope="module")
def reported(table: ModuleType) -> dict[str, dict[str, object]]:
    return dict(table.all_capabilities())


def test_node_and_python_name_the_same_capabilities(reported):
    expected = {"channel", "send_budget", *CAPABILITY_FLAGS}
    for puppet, capabilities in reported.items():
        assert set(capabilities) == expected, puppet
        # what Node reports, Python reads back unchanged
        assert parse_capabilities(capabilities).to_wire() == capabilities, puppet


def test_the_channels_page_has_the_codes_table(table, reported):
    page = (ROOT / "docs" / "channels.md").read_text(encoding="utf-8")
    expected = table.block(table.render(reported, table.flags()))
    assert table.documented(page) == expected, (
        "docs/channels.md is out of date: run `python scripts/channels_table.py --write`"
    )


def test_the_table_says_what_ilink_cannot_do(table, reported):
    rendered = table.render(reported, table.flags())
    rooms = next(line for line in rendered.splitlines() if "(`rooms`)" in line)
    cells = [c.strip() for c in rooms.strip("|").split("|")]
    assert cells[1:] == ["✓", "✗", "✓", "✓", "✓"]  # mock, ilink, service, other, unreported
    assert "10 per user message, within 24 h" in rendered
