"""API-key format, checksum and keyed hashing.

A key is `alv_live_` or `alv_test_` followed by 33 random base62 characters and a
6-character base62 CRC32 checksum: 48 characters in all. The checksum lets a mistyped
key be refused before any database look-up. Keys are stored only as HMAC-SHA256 under a
secret kept in the data dir; the raw key is shown once and never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import zlib
from pathlib import Path

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
LIVE_PREFIX = "alv_live_"
TEST_PREFIX = "alv_test_"
KEY_LENGTH = 48
_BODY = 33
_CHECK = 6
# The display prefix: the kind prefix plus the first 8 random characters. Not secret.
DISPLAY_LENGTH = len(LIVE_PREFIX) + 8


def _base62(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(ALPHABET[r])
    return "".join(reversed(out))


def _checksum(text: str) -> str:
    return _base62(zlib.crc32(text.encode()), _CHECK)


def generate_key(test: bool = False) -> str:
    prefix = TEST_PREFIX if test else LIVE_PREFIX
    body = "".join(secrets.choice(ALPHABET) for _ in range(_BODY))
    return prefix + body + _checksum(prefix + body)


def is_well_formed(key: str) -> bool:
    """Shape and checksum only; says nothing about whether the key exists."""
    if len(key) != KEY_LENGTH or not key.startswith((LIVE_PREFIX, TEST_PREFIX)):
        return False
    rest = key[len(LIVE_PREFIX) :]
    if any(c not in ALPHABET for c in rest):
        return False
    return hmac.compare_digest(_checksum(key[:-_CHECK]), key[-_CHECK:])


def is_test_key(key: str) -> bool:
    return key.startswith(TEST_PREFIX)


def display_prefix(key: str) -> str:
    return key[:DISPLAY_LENGTH]


def hash_key(secret: bytes, key: str) -> str:
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()


def load_or_create_secret(path: Path) -> bytes:
    """The HMAC secret for key hashes: 32 random bytes in a file only the owner can read."""
    if path.exists():
        data = path.read_bytes()
        if len(data) < 32:
            raise ValueError(f"{path} is damaged: the key-hashing secret is too short")
        return data
    path.parent.mkdir(parents=True, exist_ok=True)
    data = secrets.token_bytes(32)
    # O_EXCL: two processes starting at once must not write two different secrets.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_or_create_secret(path)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return data


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
