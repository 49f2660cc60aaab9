from __future__ import annotations

import stat

from appliance.core import security


def test_key_format() -> None:
    live, test = security.generate_key(), security.generate_key(test=True)
    assert len(live) == len(test) == 48
    assert live.startswith("alv_live_") and test.startswith("alv_test_")
    assert security.is_well_formed(live) and security.is_well_formed(test)
    assert security.is_test_key(test) and not security.is_test_key(live)
    assert len({security.generate_key() for _ in range(100)}) == 100


def test_checksum_catches_typos() -> None:
    key = security.generate_key()
    for i in range(9, 48):
        c = key[i]
        swapped = key[:i] + ("A" if c != "A" else "B") + key[i + 1 :]
        assert not security.is_well_formed(swapped)
    assert not security.is_well_formed(key[:-1])
    assert not security.is_well_formed("sk-" + key[3:])
    assert not security.is_well_formed(key[:20] + "!" + key[21:])


def test_hash_is_keyed_and_stable(tmp_path) -> None:
    secret = security.load_or_create_secret(tmp_path / "s")
    assert stat.S_IMODE((tmp_path / "s").stat().st_mode) == 0o600
    assert security.load_or_create_secret(tmp_path / "s") == secret
    key = security.generate_key()
    assert security.hash_key(secret, key) == security.hash_key(secret, key)
    assert security.hash_key(secret, key) != security.hash_key(b"x" * 32, key)
    assert key not in security.hash_key(secret, key)


def test_display_prefix_is_not_the_key() -> None:
    key = security.generate_key()
    assert security.display_prefix(key) == key[:17]
