"""One config file, read by the Python server and the Node client alike.

Lookup order for the file: an explicit path, ``$METAPUPPET_CONFIG``, ``./config.json``.
Environment variables override what the file says (see :data:`ENV_OVERRIDES`).
"""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .ratelimit import DEFAULT_PER_BOT, DEFAULT_PER_CHAT, Rate, RateLimiter

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
        # outgoing rate limit: "default", "off", "per_chat=1/1s:5,per_bot=40/1m:20" or an
        # object {"per_chat": "1/1s:5", "per_bot": null}; see parse_rate_limit
        "rate_limit": "default",
        # the event loop of `metapuppet serve` and `run()`: auto (uvloop when installed),
        # asyncio or uvloop
        "event_loop": "auto",
    },
    "client": {"url": None, "bot": "metapuppet", "outbox_path": "data/outbox.jsonl"},
    # several server processes on one Redis (docs/scaling.md); null: one process, no Redis
    "cluster": {"redis_url": None},
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
    "METAPUPPET_RATE_LIMIT": ("server", "rate_limit", str),
    "METAPUPPET_EVENT_LOOP": ("server", "event_loop", str),
    "METAPUPPET_REDIS_URL": ("cluster", "redis_url", str),
    "METAPUPPET_URL": ("client", "url", str),
    "METAPUPPET_BOT": ("client", "bot", str),
    "METAPUPPET_PUPPET": ("puppet", "name", str),
    "METAPUPPET_PUPPET_SERVICE_TOKEN": ("puppet", "token", str),
}

MIN_EXPOSED_TOKEN_LENGTH = 16


def new_token() -> str:
    """A fresh random token, 43 URL-safe characters (256 bits)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class RateLimits:
    """The outgoing rate limit: one bucket per chat and one per bot (None: that one is off)."""

    per_chat: Rate | None = DEFAULT_PER_CHAT
    per_bot: Rate | None = DEFAULT_PER_BOT


RATE_LIMIT_HELP = (
    '"default", "off", or per_chat=COUNT/PERIOD[:BURST],per_bot=COUNT/PERIOD[:BURST] '
    "with PERIOD like 1s, 60s, 1m, 1h (e.g. per_chat=1/1s:5,per_bot=40/1m:20; a part may be "
    '"off", a missing part keeps its default)'
)
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)?\s*([smh]?)\s*(?::\s*(\d+))?\s*$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(text: str, *, where: str = "rate") -> Rate | None:
    """``"1/1s:5"`` → ``Rate(1, per=1.0, burst=5)``; ``"off"`` → None."""
    if text.strip().lower() in ("off", "none", "null"):
        return None
    match = _RATE.match(text)
    if match is None:
        raise ConfigError(
            f"{where}: {text!r} is not COUNT/PERIOD[:BURST] (e.g. 1/1s:5 or 40/1m:20)"
        )
    count, period, unit, burst = match.groups()
    try:
        return Rate(
            float(count),
            per=float(period or 1) * _UNITS[unit],
            burst=int(burst) if burst is not None else 1,
        )
    except ValueError as exc:
        raise ConfigError(f"{where}: {text!r}: {exc}") from None


def parse_rate_limit(value: Any, *, where: str = "server.rate_limit") -> RateLimits | None:
    """Validate a rate-limit setting (config value or ``--rate-limit`` text).

    ``"default"`` (or a missing key) keeps the WeChat-safe defaults, ``"off"``/``false`` turns
    the limit off, and per-bucket settings replace only the buckets they name.
    """
    if value is None or value is True or value == "default":
        return RateLimits()
    if value is False:
        return None
    parts: dict[str, Any]
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("default", ""):
            return RateLimits()
        if text.lower() in ("off", "false", "none", "0"):
            return None
        parts = {}
        for item in text.split(","):
            key, sep, rate = item.partition("=")
            if not sep:
                raise ConfigError(
                    f"{where}: {item.strip()!r} is not NAME=RATE; use {RATE_LIMIT_HELP}"
                )
            parts[key.strip()] = rate.strip()
    elif isinstance(value, Mapping):
        parts = dict(value)
    else:
        raise ConfigError(f"{where} must be a string or an object: {RATE_LIMIT_HELP}")
    unknown = sorted(set(parts) - {"per_chat", "per_bot"})
    if unknown:
        raise ConfigError(f"{where}: unknown part {unknown[0]!r}; use {RATE_LIMIT_HELP}")
    limits: dict[str, Rate | None] = {}
    for key, rate in parts.items():
        if rate is None or rate is False:
            limits[key] = None
        elif isinstance(rate, str):
            limits[key] = parse_rate(rate, where=f"{where}.{key}")
        else:
            raise ConfigError(f'{where}.{key} must be a string like 1/1s:5, "off" or null')
    return RateLimits(**limits)


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
    def rate_limits(self) -> RateLimits | None:
        """``server.rate_limit``, validated; None when the limit is off."""
        return parse_rate_limit(self.raw["server"].get("rate_limit", "default"))

    def rate_limiter(self) -> RateLimiter | None:
        """A fresh limiter for ``server.rate_limit`` (None: messages go at full speed)."""
        limits = self.rate_limits
        return None if limits is None else RateLimiter(limits.per_chat, limits.per_bot)

    @property
    def event_loop(self) -> str:
        """``server.event_loop``: auto (uvloop when installed), asyncio or uvloop."""
        return str(self.raw["server"].get("event_loop") or "auto")

    @property
    def max_message_bytes(self) -> int:
        """The largest Socket.IO frame the server takes, in bytes of the encoded frame (a
        frame of this size or more closes the connection); Engine.IO announces it to every
        client at connect, and the Node client checks each event against it."""
        return int(self.raw["server"]["max_message_bytes"])

    @property
    def redis_url(self) -> str | None:
        """``cluster.redis_url``: the Redis every server process of a cluster shares (None:
        a single process, nothing shared)."""
        section = self.raw.get("cluster") or {}
        url = section.get("redis_url") if isinstance(section, dict) else None
        return str(url) if url else None

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
    config = Config(raw=raw, path=chosen)
    config.rate_limits  # noqa: B018 - a bad server.rate_limit is an error at load, not later
    return config


def write_config(path: str | os.PathLike[str], *, force: bool = False, **client: Any) -> Config:
    """Write a new config file with a fresh random token (``metapuppet init``)."""
    target = Path(path)
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists; pass --force to overwrite it")
    raw = copy.deepcopy(DEFAULTS)
    raw["server"]["token"] = new_token()
    _merge(raw["client"], {k: v for k, v in client.items() if v is not None})
    # created private: the token is never readable by others, not even for a moment
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(json.dumps(raw, indent=2, ensure_ascii=False) + "\n")
    os.chmod(target, 0o600)
    return Config(raw=raw, path=target)


def add_token(path: str | os.PathLike[str], *, force: bool = False) -> Config:
    """Give an existing config file a fresh ``server.token``, keeping every other setting.

    ``metapuppet init --token-only``: the file is rewritten atomically and made private
    (0600). A file that already has a token keeps it unless ``force``.
    """
    target = Path(path)
    if not target.exists():
        return write_config(target)
    try:
        document = json.loads(target.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config file {target} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"config file {target} must hold a JSON object")
    server = document.setdefault("server", {})
    if not isinstance(server, dict):
        raise ConfigError(f"config file {target}: server must be an object")
    if server.get("token") and not force:
        raise ConfigError(
            f"{target} already has a server.token; pass --force with --token-only to replace it"
        )
    server["token"] = new_token()
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.chmod(target, 0o600)
    return load_config(target, env={})
