"""One config file, read by the Python server and the Node client alike.

Lookup order for the file: an explicit path, ``$METAPUPPET_CONFIG``, ``./config.json``.
Environment variables override what the file says (see :data:`ENV_OVERRIDES`).
"""

from __future__ import annotations

import copy
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = [
    "DEFAULTS",
    "ENV_OVERRIDES",
    "MIN_EXPOSED_TOKEN_LENGTH",
    "Config",
    "load_config",
    "new_token",
    "write_config",
]

DEFAULTS: dict[str, Any] = {
    "server": {
        "host": "127.0.0.1",
        "port": 8080,
        "token": None,
        "puppet_token": None,
        "web_token": None,
        "max_message_bytes": 64 * 1024 * 1024,
        "data_dir": "data",
        "stall_timeout_s": 90,
    },
    "client": {"url": None, "bot": "metapuppet", "outbox_path": "data/outbox.jsonl"},
    "puppet": {"name": "wechaty-puppet-mock", "token": None, "options": {}},
    "mock": {"user_name": "MetaPuppet Bot"},
    "admin_contacts": [],
    "debug_mode": False,
}

# environment variable -> (section, key, type)
ENV_OVERRIDES: dict[str, tuple[str, str, type]] = {
    "METAPUPPET_HOST": ("server", "host", str),
    "METAPUPPET_PORT": ("server", "port", int),
    "METAPUPPET_TOKEN": ("server", "token", str),
    "METAPUPPET_PUPPET_TOKEN": ("server", "puppet_token", str),
    "METAPUPPET_WEB_TOKEN": ("server", "web_token", str),
    "METAPUPPET_DATA_DIR": ("server", "data_dir", str),
    "METAPUPPET_URL": ("client", "url", str),
    "METAPUPPET_BOT": ("client", "bot", str),
    "METAPUPPET_PUPPET": ("puppet", "name", str),
    "METAPUPPET_PUPPET_SERVICE_TOKEN": ("puppet", "token", str),
}

MIN_EXPOSED_TOKEN_LENGTH = 16


def new_token() -> str:
    """A fresh random token, 43 URL-safe characters (256 bits)."""
    return secrets.token_urlsafe(32)


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


@dataclass
class Config:
    """The merged configuration; ``raw`` is the whole document as the Node client sees it."""

    raw: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULTS))
    path: Path | None = None

    @property
    def host(self) -> str:
        return str(self.raw["server"]["host"])

    @property
    def port(self) -> int:
        return int(self.raw["server"]["port"])

    @property
    def token(self) -> str | None:
        token = self.raw["server"].get("token")
        return str(token) if token else None

    @property
    def bot(self) -> str:
        return str(self.raw["client"]["bot"])

    @property
    def puppet_name(self) -> str:
        return str(self.raw["puppet"]["name"])

    @property
    def data_dir(self) -> Path:
        """``server.data_dir``, relative to the config file's folder (or the working one)."""
        folder = Path(str(self.raw["server"].get("data_dir") or "data"))
        if not folder.is_absolute() and self.path is not None:
            folder = self.path.resolve().parent / folder
        return folder

    @property
    def max_message_bytes(self) -> int:
        return int(self.raw["server"]["max_message_bytes"])

    @property
    def admin_contacts(self) -> list[str]:
        return [str(c) for c in self.raw.get("admin_contacts") or []]

    @property
    def debug_mode(self) -> bool:
        return bool(self.raw.get("debug_mode"))

    def with_overrides(self, **server: Any) -> Config:
        raw = copy.deepcopy(self.raw)
        for key, value in server.items():
            if value is not None:
                raw["server"][key] = value
        return Config(raw=raw, path=self.path)


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Read the config file (if any) and apply environment overrides."""
    env = os.environ if env is None else env
    raw = copy.deepcopy(DEFAULTS)
    chosen: Path | None = None
    if path is not None:
        chosen = Path(path)
        if not chosen.is_file():
            raise ConfigError(f"config file {chosen} does not exist (metapuppet init writes one)")
    elif env.get("METAPUPPET_CONFIG"):
        chosen = Path(env["METAPUPPET_CONFIG"])
        if not chosen.is_file():
            raise ConfigError(f"METAPUPPET_CONFIG points to {chosen}, which does not exist")
    elif Path("config.json").is_file():
        chosen = Path("config.json")
    if chosen is not None:
        try:
            document = json.loads(chosen.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config file {chosen} is not valid JSON: {exc}") from None
        if not isinstance(document, dict):
            raise ConfigError(f"config file {chosen} must hold a JSON object")
        _merge(raw, document)
    for name, (section, key, kind) in ENV_OVERRIDES.items():
        value = env.get(name)
        if value:
            try:
                raw[section][key] = kind(value)
            except ValueError:
                raise ConfigError(f"{name}={value!r} is not a valid {kind.__name__}") from None
    return Config(raw=raw, path=chosen)


def write_config(path: str | os.PathLike[str], *, force: bool = False, **client: Any) -> Config:
    """Write a new config file with a fresh random token (``metapuppet init``)."""
    target = Path(path)
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists; pass --force to overwrite it")
    raw = copy.deepcopy(DEFAULTS)
    raw["server"]["token"] = new_token()
    _merge(raw["client"], {k: v for k, v in client.items() if v is not None})
    target.write_text(json.dumps(raw, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.chmod(target, 0o600)
    return Config(raw=raw, path=target)
