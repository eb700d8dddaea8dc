"""The simulated CDN: ciphertext in, ciphertext out, and the media items that point at it.

Uploads are checked the way a careful CDN would (declared size, key and md5 must match what
``getuploadurl`` was told); media the bot sends is read back and decrypted so a test sees the
bytes the user would see, or the reason they could not be read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from . import _crypto
from ._clock import Clock
from ._model import SentItem, SimSettings, SimulatorError

__all__ = ["ITEM_FIELDS", "ITEM_KINDS", "Cdn", "is_int"]

log = logging.getLogger("MetaPuppet.testing.ilink")
JSON = dict[str, Any]

MAX_PENDING_UPLOADS = 1000
ITEM_KINDS = {1: "text", 2: "image", 3: "voice", 4: "file", 5: "video"}
ITEM_FIELDS = {1: "text_item", 2: "image_item", 3: "voice_item", 4: "file_item", 5: "video_item"}
MEDIA_TYPES = {1: "image", 2: "video", 3: "file", 4: "voice"}


@dataclass
class _Blob:
    ciphertext: bytes
    owner: str
    created_s: float


@dataclass
class _PendingUpload:
    bot_id: str
    filekey: str
    media_type: int
    to_user_id: str
    rawsize: int
    rawfilemd5: str
    filesize: int
    aeskey: bytes


class Cdn:
    """Files by their opaque ``encrypt_query_param``, bounded by ``max_cdn_bytes``."""

    def __init__(self, settings: SimSettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.base_url = ""
        self._blobs: OrderedDict[str, _Blob] = OrderedDict()
        self._blob_bytes = 0
        self._uploads: OrderedDict[str, _PendingUpload] = OrderedDict()

    def media_item(
        self,
        kind: str,
        data: bytes,
        key_form: str = "auto",
        file_name: str | None = None,
        transcript: str | None = None,
        playtime_ms: int | None = None,
    ) -> JSON:
        """A media item as WeChat sends it: ciphertext on the CDN, the key in one of its forms."""
        key = os.urandom(16)
        ciphertext = _crypto.encrypt(data, key)
        param = self.put_blob(ciphertext, owner="wechat")
        media: JSON = {"encrypt_query_param": param, "encrypt_type": 1}
        if self.settings.media_full_url:
            media["full_url"] = self.download_url(param)
        hex_key: str | None = None
        if key_form == "auto":
            if kind == "image":
                hex_key = key.hex()
                media["aes_key"] = _crypto.present_key(key, "base64_raw")
            else:
                media["aes_key"] = _crypto.present_key(key, "base64_hex")
        elif key_form == "hex" and kind == "image":
            hex_key = key.hex()
        elif key_form in _crypto.KEY_FORMS:
            media["aes_key"] = _crypto.present_key(key, key_form)
        elif key_form == "wrong":
            media["aes_key"] = _crypto.present_key(_wrong_key(ciphertext), "base64_hex")
        elif key_form == "garbage":
            media["aes_key"] = "not!a*key"
        else:
            raise SimulatorError(
                f"unknown key_form {key_form!r}; "
                "use auto, hex, base64_raw, base64_hex, wrong or garbage"
            )
        md5 = hashlib.md5(data).hexdigest()
        now = int(self.clock() * 1000)
        if kind == "image":
            image: JSON = {"media": media, "mid_size": len(ciphertext)}
            if hex_key is not None:
                image["aeskey"] = hex_key
            return {"type": 2, "create_time_ms": now, "image_item": image}
        if kind == "voice":
            voice: JSON = {
                "media": media,
                "encode_type": 6,
                "bits_per_sample": 16,
                "sample_rate": 16000,
                "playtime": playtime_ms if playtime_ms is not None else 1000,
            }
            if transcript is not None:
                voice["text"] = transcript
            return {"type": 3, "create_time_ms": now, "voice_item": voice}
        if kind == "file":
            name = file_name or "file.bin"
            file_item = {"media": media, "file_name": name, "md5": md5, "len": str(len(data))}
            return {"type": 4, "create_time_ms": now, "file_item": file_item}
        if kind == "video":
            video = {
                "media": media,
                "video_size": len(ciphertext),
                "play_length": max(1, (playtime_ms or 1000) // 1000),
                "video_md5": md5,
            }
            return {"type": 5, "create_time_ms": now, "video_item": video}
        raise SimulatorError(f"unknown media kind {kind!r}; use image, voice, file or video")

    def download_url(self, param: str) -> str:
        return f"{self.base_url}/download?encrypted_query_param={quote(param, safe='')}"

    def put_blob(self, ciphertext: bytes, owner: str) -> str:
        param = secrets.token_urlsafe(48)
        self._blobs[param] = _Blob(ciphertext, owner, self.clock())
        self._blob_bytes += len(ciphertext)
        while self._blob_bytes > self.settings.max_cdn_bytes and len(self._blobs) > 1:
            old, blob = self._blobs.popitem(last=False)
            self._blob_bytes -= len(blob.ciphertext)
            log.warning(
                "ilink simulator: CDN store over %d bytes, evicted the oldest file",
                self.settings.max_cdn_bytes,
            )
        return param

    def blob(self, param: str) -> bytes | None:
        found = self._blobs.get(param)
        return None if found is None else found.ciphertext

    def register_upload(self, bot_id: str, body: JSON) -> JSON:
        """``getuploadurl``: check the declared sizes and key, then hand out an upload target."""
        problems = []
        filekey = body.get("filekey")
        if not isinstance(filekey, str) or not filekey:
            problems.append("filekey must be a non-empty string")
        media_type = body.get("media_type")
        if media_type not in MEDIA_TYPES:
            problems.append(
                f"media_type must be 1 image, 2 video, 3 file or 4 voice, got {media_type!r}"
            )
        to_user = body.get("to_user_id")
        if not isinstance(to_user, str) or not to_user:
            problems.append("to_user_id must be a non-empty string")
        rawsize = body.get("rawsize")
        filesize = body.get("filesize")
        limit = self.settings.max_upload_bytes
        if not isinstance(rawsize, int) or isinstance(rawsize, bool) or rawsize < 0:
            problems.append(f"rawsize must be a byte count, got {rawsize!r}")
        elif rawsize > limit:
            problems.append(f"rawsize {rawsize} is over the {limit}-byte limit")
        elif filesize != _crypto.padded_size(rawsize):
            problems.append(
                "filesize must be the AES-128-ECB/PKCS7 size of rawsize "
                f"({_crypto.padded_size(rawsize)}), got {filesize!r}"
            )
        md5 = body.get("rawfilemd5")
        if not isinstance(md5, str) or len(md5) != 32 or not _is_hex(md5):
            problems.append("rawfilemd5 must be 32 hex characters")
        aeskey = body.get("aeskey")
        if not isinstance(aeskey, str) or len(aeskey) != 32 or not _is_hex(aeskey):
            problems.append("aeskey must be the 16-byte key as 32 hex characters")
        if problems:
            return {"ret": -1, "errmsg": "getuploadurl: " + "; ".join(problems)}
        assert isinstance(filekey, str) and isinstance(to_user, str) and isinstance(md5, str)
        assert isinstance(aeskey, str) and isinstance(rawsize, int) and isinstance(media_type, int)
        assert isinstance(filesize, int)
        param = secrets.token_urlsafe(48)
        self._uploads[param] = _PendingUpload(
            bot_id,
            filekey,
            media_type,
            to_user,
            rawsize,
            md5.lower(),
            int(filesize),
            bytes.fromhex(aeskey),
        )
        while len(self._uploads) > MAX_PENDING_UPLOADS:
            self._uploads.popitem(last=False)
        full = (
            f"{self.base_url}/upload?encrypted_query_param={quote(param, safe='')}"
            f"&filekey={quote(filekey, safe='')}"
        )
        style = self.settings.upload_url_style
        answer: JSON = {}
        if style in ("both", "param"):
            answer["upload_param"] = param
        if style in ("both", "full"):
            answer["upload_full_url"] = full
        return answer

    def accept_upload(self, param: str, filekey: str, ciphertext: bytes) -> tuple[str | None, str]:
        """The CDN's check of a POSTed file: (download param, "") or (None, why it was refused)."""
        pending = self._uploads.get(param)
        if pending is None:
            return None, "unknown or already used encrypted_query_param"
        if filekey != pending.filekey:
            return None, "filekey does not match the one given to getuploadurl"
        if len(ciphertext) != pending.filesize:
            return (
                None,
                f"body has {len(ciphertext)} bytes, getuploadurl said {pending.filesize}",
            )
        try:
            plain = _crypto.decrypt(ciphertext, pending.aeskey)
        except _crypto.MediaKeyError as exc:
            return None, f"the body does not decrypt with the aeskey given to getuploadurl: {exc}"
        if len(plain) != pending.rawsize or hashlib.md5(plain).hexdigest() != pending.rawfilemd5:
            return None, "the decrypted body does not match rawsize / rawfilemd5"
        del self._uploads[param]
        return self.put_blob(ciphertext, owner=pending.bot_id), ""

    def read_item(self, item: JSON) -> SentItem:
        kind_no = item["type"]
        kind = ITEM_KINDS[kind_no]
        sub = item[ITEM_FIELDS[kind_no]]
        if kind == "text":
            return SentItem(1, "text", text=sub.get("text"), raw=item)
        file_name = sub.get("file_name") if isinstance(sub.get("file_name"), str) else None
        media = sub["media"]
        try:
            key = _crypto.parse_key(
                sub["aeskey"] if kind == "image" and sub.get("aeskey") else media.get("aes_key")
            )
            param = media.get("encrypt_query_param")
            if not param and isinstance(media.get("full_url"), str):
                param = (
                    parse_qs(urlsplit(media["full_url"]).query).get("encrypted_query_param") or [""]
                )[0]
            ciphertext = self.blob(param) if isinstance(param, str) else None
            if ciphertext is None:
                raise _crypto.MediaKeyError("media.encrypt_query_param names no file on the CDN")
            data = _crypto.decrypt(ciphertext, key)
        except _crypto.MediaKeyError as exc:
            return SentItem(kind_no, kind, file_name=file_name, error=str(exc), raw=item)
        text = sub.get("text") if kind == "voice" and isinstance(sub.get("text"), str) else None
        return SentItem(kind_no, kind, text=text, data=data, file_name=file_name, raw=item)


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def _wrong_key(ciphertext: bytes) -> bytes:
    """A well-formed key that certainly fails to decrypt ``ciphertext`` (bad padding)."""
    while True:
        key = os.urandom(16)
        try:
            _crypto.decrypt(ciphertext, key)
        except _crypto.MediaKeyError:
            return key


def item_problems(items: list[Any]) -> list[str]:
    """What is wrong with a sent ``item_list``, one line per problem."""
    problems = []
    for index, item in enumerate(items):
        where = f"msg.item_list[{index}]"
        if not isinstance(item, dict) or item.get("type") not in ITEM_KINDS:
            problems.append(f"{where}.type must be 1 to 5")
            continue
        sub = item.get(ITEM_FIELDS[item["type"]])
        if not isinstance(sub, dict):
            problems.append(f"{where}.{ITEM_FIELDS[item['type']]} must be an object")
        elif item["type"] == 1:
            if not isinstance(sub.get("text"), str):
                problems.append(f"{where}.text_item.text must be a string")
        elif not isinstance(sub.get("media"), dict):
            problems.append(f"{where}.{ITEM_FIELDS[item['type']]}.media must be an object")
    return problems


def item_summary(item: dict[str, Any]) -> str:
    """The short text a quote shows of ``item``."""
    text = (item.get("text_item") or {}).get("text")
    return text[:40] if isinstance(text, str) else ITEM_KINDS.get(item.get("type", 0), "message")
