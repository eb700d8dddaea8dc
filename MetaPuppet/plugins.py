"""Plugins: installable Python packages that add handlers, settings, jobs and a dashboard
panel to a robot, found through the entry point group ``metapuppet.plugins``.

A plugin package declares one entry point that names a :class:`Plugin`::

    # pyproject.toml of the package
    [project.entry-points."metapuppet.plugins"]
    hello = "metapuppet_hello:plugin"

    # metapuppet_hello/__init__.py
    plugin = Plugin("hello", settings={"greeting": Setting(str, default="hello")})

    @plugin.router.command("hello")
    async def hello(msg):
        return f"{plugin.config['greeting']}, {msg.talker.name}"

``metapuppet serve`` loads every installed plugin that is not disabled
(``metapuppet plugins list/enable/disable``, kept in ``plugins.disabled`` of the config),
with its settings from ``plugins.settings.<name>``:

* settings are checked at start: an unknown, missing or mistyped key stops the start with
  an error naming the plugin and the key;
* a plugin that fails to import or set up is logged and shown (``plugins list``, the
  dashboard), and the others load;
* a handler of a plugin that raises is logged and counted against that plugin, and the
  event goes on to the other handlers, as if the plugin had not taken it.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from .dispatch import Router
from .dispatch.handlers import CONTINUE, FlowControl, Invocation
from .errors import ConfigError
from .jobs import JobSet

__all__ = [
    "ENTRY_POINT_GROUP",
    "REQUIRED",
    "Panel",
    "Plugin",
    "PluginManager",
    "PluginState",
    "Setting",
    "set_plugin_enabled",
]

log = logging.getLogger("MetaPuppet.plugins")

ENTRY_POINT_GROUP: Final = "metapuppet.plugins"
REQUIRED: Final[Any] = type("Required", (), {"__repr__": lambda self: "REQUIRED"})()
_TYPES: Final = {
    str: "a string",
    int: "a whole number",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "an object",
}


@dataclass(frozen=True)
class Setting:
    """One setting of a plugin: its type, default (:data:`REQUIRED`: must be given),
    allowed values and a help line."""

    type: type = str
    default: Any = REQUIRED
    help: str = ""
    choices: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class Panel:
    """A plugin's dashboard panel: a title and a function returning a list of dicts (a
    table) or a dict (key, value rows); sync or async."""

    title: str
    provider: Callable[[], Any]


class Plugin:
    """What a plugin package exposes: a router, and optionally settings, jobs and a panel."""

    def __init__(
        self,
        name: str,
        *,
        router: Router | None = None,
        settings: dict[str, Setting] | None = None,
        panel: Panel | None = None,
        description: str = "",
        on_start: Callable[[Any], Any] | None = None,
    ) -> None:
        if not name or not name.replace("-", "_").isidentifier():
            raise ValueError(f"a plugin name is a word like 'weather', got {name!r}")
        self.name = name
        self.router = router if router is not None else Router(f"plugin {name}")
        self.settings = dict(settings or {})
        self.panel = panel
        self.description = description
        #: called with the server once the plugin is loaded (sync or async)
        self.on_start = on_start
        #: the checked settings (defaults filled in), set when the plugin is loaded
        self.config: dict[str, Any] = {}
        self.jobs = JobSet()
        self.every = self.jobs.every
        self.cron = self.jobs.cron
        self.schedule_once = self.jobs.schedule_once

    def configure(self, values: Any) -> dict[str, Any]:
        """Check ``values`` against the declared settings; raises :class:`ConfigError`
        naming the plugin and the key."""
        where = f"plugins.settings.{self.name}"
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise ConfigError(f"plugin {self.name!r}: {where} must be an object")
        unknown = sorted(set(values) - set(self.settings))
        if unknown:
            known = ", ".join(sorted(self.settings)) or "none"
            raise ConfigError(
                f"plugin {self.name!r}: unknown setting {unknown[0]!r} ({where}.{unknown[0]}); "
                f"it has: {known}"
            )
        config: dict[str, Any] = {}
        for key, setting in self.settings.items():
            if key not in values:
                if setting.default is REQUIRED:
                    hint = f" ({setting.help})" if setting.help else ""
                    raise ConfigError(
                        f"plugin {self.name!r}: setting {key!r} is required: set {where}.{key} "
                        f"in the config{hint}"
                    )
                config[key] = setting.default
                continue
            config[key] = _checked(self.name, key, setting, values[key], where)
        self.config = config
        return config

    def __repr__(self) -> str:
        return f"<Plugin {self.name}>"


def _checked(plugin: str, key: str, setting: Setting, value: Any, where: str) -> Any:
    kind = setting.type
    ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ConfigError(
            f"plugin {plugin!r}: setting {key!r} must be {_TYPES.get(kind, kind.__name__)}, "
            f"got {value!r:.60} ({where}.{key})"
        )
    if setting.choices is not None and value not in setting.choices:
        raise ConfigError(
            f"plugin {plugin!r}: setting {key!r} must be one of "
            f"{', '.join(map(repr, setting.choices))}, got {value!r:.60} ({where}.{key})"
        )
    return value


@dataclass
class PluginState:
    """A plugin as the server knows it: loaded, disabled or broken, and its errors."""

    name: str
    package: str | None = None
    version: str | None = None
    status: str = "loaded"  # loaded | disabled | error
    error: str | None = None
    description: str = ""
    errors: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    plugin: Plugin | None = field(default=None, repr=False)

    def failed(self, error: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{type(error).__name__}: {error}"[:500]
        self.last_error_at = time.time()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "package": self.package,
            "version": self.version,
            "status": self.status,
            "error": self.error,
            "description": self.description,
            "errors": self.errors,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "panel": None
            if self.plugin is None or self.plugin.panel is None
            else self.plugin.panel.title,
        }


def _isolate(state: PluginState) -> Any:
    """Middleware around a plugin's handlers: its failure is its own."""

    async def isolated(call_next: Callable[[], Any], invocation: Invocation) -> Any:
        try:
            return await call_next()
        except FlowControl:
            raise
        except Exception as exc:
            state.failed(exc)
            log.exception(
                "plugin %r: handler %s failed on a %s event; the other handlers go on",
                state.name,
                invocation.handler,
                invocation.kind,
            )
            return CONTINUE

    return isolated


def installed() -> list[metadata.EntryPoint]:
    """The entry points of the group ``metapuppet.plugins``, one per name."""
    seen: dict[str, metadata.EntryPoint] = {}
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        seen.setdefault(entry.name, entry)
    return [seen[name] for name in sorted(seen)]


class PluginManager:
    """The plugins of one server (``server.plugins``)."""

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        settings = dict(settings or {})
        self.disabled = set(settings.get("disabled") or ())
        self.values: dict[str, Any] = dict(settings.get("settings") or {})
        self.states: dict[str, PluginState] = {}

    def load_installed(self, robot: Any, scheduler: Any = None) -> list[PluginState]:
        """Load every installed, enabled plugin onto ``robot``; a broken one is recorded
        and skipped, a bad setting raises :class:`ConfigError`."""
        for entry in installed():
            package = entry.dist.name if entry.dist is not None else None
            version = entry.dist.version if entry.dist is not None else None
            if entry.name in self.disabled:
                self.states[entry.name] = PluginState(entry.name, package, version, "disabled")
                continue
            try:
                plugin = _resolve(entry.load(), entry.name)
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop the rest
                log.exception(
                    "plugin %r (%s) could not be loaded; the others go on", entry.name, package
                )
                state = PluginState(entry.name, package, version, "error")
                state.error = f"{type(exc).__name__}: {exc}"[:500]
                self.states[entry.name] = state
                continue
            self.use(plugin, robot, scheduler, package=package, version=version)
        return list(self.states.values())

    def use(
        self,
        plugin: Plugin,
        robot: Any,
        scheduler: Any = None,
        *,
        package: str | None = None,
        version: str | None = None,
    ) -> PluginState:
        """Add ``plugin`` to ``robot`` (from code, or found installed)."""
        if robot is None or not hasattr(robot, "include_router"):
            raise ConfigError(f"plugin {plugin.name!r} needs a robot to add its handlers to")
        if plugin.name in self.states and self.states[plugin.name].status == "loaded":
            raise ConfigError(f"plugin {plugin.name!r} is loaded already")
        plugin.configure(self.values.get(plugin.name))
        state = PluginState(
            plugin.name, package, version, description=plugin.description, plugin=plugin
        )
        wrapper = Router(f"plugin:{plugin.name}")
        wrapper.middleware(_isolate(state))
        wrapper.include_router(plugin.router)
        robot.include_router(wrapper)
        if scheduler is not None and plugin.jobs.specs:
            scheduler.attach(plugin.jobs)
        self.states[plugin.name] = state
        log.info("plugin %r loaded (%s %s)", plugin.name, package or "code", version or "")
        return state

    async def started(self, server: Any) -> None:
        """Run the plugins' ``on_start`` hooks; one that raises is recorded."""
        for state in self.states.values():
            plugin = state.plugin
            if plugin is None or plugin.on_start is None or state.status != "loaded":
                continue
            try:
                result = plugin.on_start(server)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:  # noqa: BLE001 - isolated, like its handlers
                log.exception("plugin %r: on_start failed", state.name)
                state.failed(exc)

    def summary(self) -> list[dict[str, Any]]:
        """Every plugin the server knows, loaded or not (``plugins list``, the dashboard)."""
        return [state.to_dict() for state in self.states.values()]

    async def panels(self) -> list[dict[str, Any]]:
        """Each loaded plugin's panel: ``{plugin, title, rows | error}``."""
        out = []
        for state in self.states.values():
            plugin = state.plugin
            if plugin is None or plugin.panel is None:
                continue
            entry: dict[str, Any] = {"plugin": state.name, "title": plugin.panel.title}
            try:
                rows = plugin.panel.provider()
                if inspect.isawaitable(rows):
                    rows = await rows
                entry["rows"] = _rows(rows)
            except Exception as exc:  # noqa: BLE001 - a panel's failure is shown, not raised
                state.failed(exc)
                entry["error"] = f"{type(exc).__name__}: {exc}"[:300]
            out.append(entry)
        return out


def _resolve(target: Any, name: str) -> Plugin:
    if isinstance(target, Plugin):
        return target
    found = getattr(target, "plugin", None)  # a module that holds `plugin`
    if isinstance(found, Plugin):
        return found
    if callable(target):
        made = target()
        if isinstance(made, Plugin):
            return made
    raise TypeError(f"the entry point {name!r} names {target!r}, not a MetaPuppet Plugin")


def _rows(rows: Any) -> list[dict[str, Any]]:
    if isinstance(rows, dict):
        return [{"key": str(k), "value": v} for k, v in rows.items()][:200]
    if isinstance(rows, Iterable) and not isinstance(rows, str | bytes):
        return [r if isinstance(r, dict) else {"value": r} for r in rows][:200]
    return [{"value": rows}]


def set_plugin_enabled(path: Path, name: str, enabled: bool) -> list[str]:
    """Enable or disable plugin ``name`` in the config file at ``path`` (kept 0600, the
    other settings untouched); returns the disabled list."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no config file {path}: run `metapuppet init` first") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    section = raw.setdefault("plugins", {})
    disabled = [n for n in section.get("disabled") or [] if n != name]
    if not enabled:
        disabled.append(name)
    section["disabled"] = names = sorted(disabled)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(json.dumps(raw, indent=2, ensure_ascii=False) + "\n")
    os.replace(temporary, path)
    return names
