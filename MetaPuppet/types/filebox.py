"""FileBox: a file to send, or one that was received."""

from __future__ import annotations

import base64
import mimetypes
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FileBox"]

_UNSAFE_NAME = re.compile(r"[\x00-\x1f\\/:*?\"<>|]")


@dataclass(frozen=True)
class FileBox:
    """A file to send or one that was received: a name, the bytes and a MIME type."""

    name: str
    data: bytes = field(repr=False, default=b"")
    mime_type: str | None = None
    url: str | None = None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], name: str | None = None) -> FileBox:
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"cannot send {source}: no such file")
        return cls.from_bytes(source.read_bytes(), name or source.name)

    @classmethod
    def from_bytes(cls, data: bytes, name: str, mime_type: str | None = None) -> FileBox:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"FileBox data must be bytes, not {type(data).__name__}")
        guessed = mime_type or mimetypes.guess_type(name)[0]
        return cls(name=name, data=bytes(data), mime_type=guessed)

    @classmethod
    def from_base64(cls, b64: str, name: str, mime_type: str | None = None) -> FileBox:
        return cls.from_bytes(base64.b64decode(b64, validate=True), name, mime_type)

    @classmethod
    def from_url(cls, url: str, name: str | None = None) -> FileBox:
        """A file the Node client downloads itself when it sends it."""
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"FileBox.from_url needs an http(s) URL, got {url!r}")
        guessed = name or url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "file"
        return cls(name=guessed, mime_type=mimetypes.guess_type(guessed)[0], url=url)

    @classmethod
    def from_wire(cls, wire: Any) -> FileBox:
        if not isinstance(wire, dict) or "base64" not in wire:
            raise ValueError(f"not a serialised FileBox: {wire!r:.120}")
        return cls.from_base64(
            wire["base64"] or "", str(wire.get("name") or "file"), wire.get("mimeType")
        )

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def safe_name(self) -> str:
        """The name reduced to a plain file name: no directories, no control characters."""
        name = self.name.replace("\\", "/").rsplit("/", 1)[-1]
        name = _UNSAFE_NAME.sub("_", name).strip(" .")
        return name or "file"

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the file into ``directory`` (never outside it, whatever the name says)."""
        if self.url is not None and not self.data:
            raise ValueError(f"{self.name} is a URL FileBox; its bytes are not here to save")
        folder = Path(directory).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        target = (folder / self.safe_name).resolve()
        if target.parent != folder:  # defence in depth; safe_name already has no separators
            raise ValueError(f"refusing to write {self.name!r} outside {folder}")
        target.write_bytes(self.data)
        return target

    def to_wire(self) -> dict[str, Any]:
        if self.url is not None:
            return {"type": "file_url", "url": self.url, "name": self.name}
        return {
            "type": "file",
            "name": self.name,
            "base64": base64.b64encode(self.data).decode("ascii"),
        }
