"""MetaPuppet's pytest plugin: ``async def`` tests run without any other plugin or setting.

pytest itself cannot run a coroutine test ("async def functions are not natively
supported"), so a robot's test written as in the README would fail in a fresh project.
This plugin (registered through the ``pytest11`` entry point, so installing MetaPuppet is
enough) runs such a test on a fresh asyncio loop, unless another plugin takes it:
pytest-asyncio in auto mode or for a test marked ``@pytest.mark.asyncio``, or anyio/trio
marks. Fixtures are plain pytest fixtures; async fixtures need pytest-asyncio.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

__all__ = ["pytest_pyfunc_call"]


def _taken_by_another_plugin(item: pytest.Function) -> bool:
    if any(item.get_closest_marker(name) for name in ("anyio", "trio")):
        return True
    config = item.config
    if not config.pluginmanager.hasplugin("asyncio"):
        return False
    mode = config.getoption("asyncio_mode", None) or config.getini("asyncio_mode")
    return str(mode) == "auto" or item.get_closest_marker("asyncio") is not None


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    function: Any = pyfuncitem.obj
    if not inspect.iscoroutinefunction(function) or _taken_by_another_plugin(pyfuncitem):
        return None
    wanted = inspect.signature(function).parameters
    arguments = {name: pyfuncitem.funcargs[name] for name in wanted if name in pyfuncitem.funcargs}
    asyncio.run(function(**arguments))
    return True
