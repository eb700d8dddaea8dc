"""The README's robot and its test, copied into a new folder outside the repository, pass
with plain ``pytest`` (MetaPuppet's pytest plugin runs the ``async def`` test)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent


def readme_block(after_heading: str) -> str:
    """The first python code block after a README heading."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(after_heading) :]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, f"no python block after {after_heading!r}"
    return found.group(1)


@pytest.mark.parametrize("plugins", [["-p", "no:asyncio"], []], ids=["alone", "with-asyncio"])
async def test_the_readme_test_passes_in_a_new_folder(tmp_path, plugins):
    robot = readme_block("## Write a robot")
    test = readme_block("### Test your robot")
    (tmp_path / "test_mybot.py").write_text(robot + "\n\n" + test, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METAPUPPET_", "PYTEST_"))}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        *plugins,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    text = output.decode()
    assert process.returncode == 0, text
    assert "1 passed" in text, text
