"""AES-128-ECB with PKCS7 padding, as the WeChat CDN uses it, and the three ways a key is written.

Media on the CDN is always ciphertext. A message item names its key in one of three forms
seen from the real service: 32 hex characters (``image_item.aeskey``), base64 of the raw
16 bytes (images' ``media.aes_key``), or base64 of the 32 hex characters (files, voice,
video). :func:`parse_key` accepts all three; :func:`present_key` writes any of them.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Literal

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "KEY_FORMS",
    "KeyForm",
    "MediaKeyError",
    "decrypt",
    "encrypt",
    "padded_size",
    "parse_key",
    "present_key",
]

KeyForm = Literal["hex", "base64_raw", "base64_hex"]
KEY_FORMS: tuple[KeyForm, ...] = ("hex", "base64_raw", "base64_hex")
_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")


class MediaKeyError(ValueError):
    """A media key that is not a 16-byte AES key in a known form, or that does not decrypt."""


def padded_size(plain_size: int) -> int:
    """Ciphertext size of ``plain_size`` bytes: PKCS7 always adds 1 to 16 bytes."""
    return (plain_size // 16 + 1) * 16


def encrypt(plaintext: bytes, key: bytes) -> bytes:
    _check_key(key)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


def decrypt(ciphertext: bytes, key: bytes) -> bytes:
    _check_key(key)
    if not ciphertext or len(ciphertext) % 16:
        raise MediaKeyError(
            f"ciphertext of {len(ciphertext)} bytes is not a whole number of blocks"
        )
    decryptor = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise MediaKeyError("the key does not decrypt this media (bad PKCS7 padding)") from None


def parse_key(text: str) -> bytes:
    """The raw 16-byte key from any of the three forms; hex is tried first (it is also base64)."""
    if not isinstance(text, str) or not text:
        raise MediaKeyError("the media key is missing or not a string")
    if _HEX32.match(text):
        return bytes.fromhex(text)
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MediaKeyError(
            f"the media key ({len(text)} characters) is neither hex nor base64"
        ) from None
    if len(decoded) == 16:
        return decoded
    if len(decoded) == 32 and _HEX32.match(decoded.decode("ascii", "replace")):
        return bytes.fromhex(decoded.decode("ascii"))
    raise MediaKeyError(
        f"the media key decodes to {len(decoded)} bytes, not 16 raw bytes or 32 hex characters"
    )


def present_key(key: bytes, form: KeyForm) -> str:
    _check_key(key)
    if form == "hex":
        return key.hex()
    if form == "base64_raw":
        return base64.b64encode(key).decode("ascii")
    if form == "base64_hex":
        return base64.b64encode(key.hex().encode("ascii")).decode("ascii")
    raise ValueError(f"unknown key form {form!r}; use one of {', '.join(KEY_FORMS)}")


def _check_key(key: bytes) -> None:
    if len(key) != 16:
        raise MediaKeyError(f"an AES-128 key has 16 bytes, got {len(key)}")
