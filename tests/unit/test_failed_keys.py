"""Guessing API keys is useless: the checksum is checked before the database, hashes are compared
in constant time, and refused keys per client address are limited (429 in the envelope), logged
without the key, while valid keys from the same address are served."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import pytest
from litestar.testing import TestClient

from appliance.api import create_app
from appliance.core import security
from appliance.core.errors import RateLimited
from appliance.core.limits import FAILED_KEY_BURST, FailedKeyLimiter, address_bucket
from appliance.core.settings import Settings
from appliance.core.specialists import load_specialists
from appliance.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from fake_engine import FakeEngine


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_burst_of_failures_then_one_per_interval() -> None:
    clock = Clock()
    limiter = FailedKeyLimiter(burst=5, window_s=60, clock=clock)
    for i in range(1, 6):
        assert limiter.retry_after("10.0.0.1") == 0
        assert limiter.failed("10.0.0.1") == i
    # The 5th failure used the allowance: the next attempt waits one interval (60 s / 5).
    assert limiter.retry_after("10.0.0.1") == pytest.approx(12)
    assert limiter.retry_after("10.0.0.2") == 0
    clock.t += 12
    assert limiter.retry_after("10.0.0.1") == 0
    limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == pytest.approx(12)
    # A full window later the address is forgotten altogether.
    clock.t += 61
    assert limiter.retry_after("10.0.0.1") == 0 and len(limiter) == 0


def test_memory_is_bounded() -> None:
    limiter = FailedKeyLimiter(burst=2, max_addresses=100, clock=Clock())
    for i in range(1000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter) == 100
    # The most recent ones are kept.
    assert limiter.failed("10.0.3.231") == 2


def test_ipv6_is_limited_per_64_and_mapped_ipv4_as_ipv4() -> None:
    assert address_bucket("2001:db8::1") == address_bucket("2001:db8::ffff:1") == "2001:db8::/64"
    assert address_bucket("2001:db8:0:1::1") != address_bucket("2001:db8::1")
    assert address_bucket("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_bucket("testclient") == "testclient"


def test_the_blocked_error_says_when_to_come_back() -> None:
    exc = FailedKeyLimiter().blocked_error(2.5)
    assert isinstance(exc, RateLimited) and exc.status == 429 and exc.code == "rate_limit_exceeded"
    assert exc.headers == {"Retry-After": "3", "retry-after-ms": "2500"}


def test_the_checksum_is_checked_in_constant_time(monkeypatch) -> None:
    calls = []
    real = security.hmac.compare_digest
    monkeypatch.setattr(security.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    key = security.generate_key()
    assert security.is_well_formed(key) and calls[-1] == (key[-6:], key[-6:])
    assert security.constant_time_equal("ab", "ab") and calls[-1] == (b"ab", b"ab")


def test_the_stored_hash_is_compared_in_constant_time(tmp_path, monkeypatch) -> None:
    store = Store(tmp_path)
    try:
        store.create_account("acme")
        key = store.create_key("acme").key
        compared = []
        real = security.constant_time_equal
        monkeypatch.setattr(security, "constant_time_equal", lambda a, b: compared.append(a) or real(a, b))
        assert store.authenticate(key) is not None
        assert compared == [security.hash_key((tmp_path / "key-secret").read_bytes(), key)]
    finally:
        store.close()


@pytest.fixture
def api(tmp_path):
    store = Store(tmp_path)
    store.create_account("acme", "solo")
    key = store.create_key("acme").key
    app = create_app(Settings(data_dir=str(tmp_path)), engine=FakeEngine(), store=store, specialists=load_specialists())
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, store, key
    store.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_malformed_key_never_reaches_the_database(api, monkeypatch) -> None:
    client, store, key = api
    looked_up = []
    # Every look-up (the key cache's, on a miss or a hit) starts from the key's digest.
    real = store.key_digest
    monkeypatch.setattr(store, "key_digest", lambda k: looked_up.append(k) or real(k))
    typo = key[:-1] + ("x" if key[-1] != "x" else "y")
    assert client.get("/v1/models", headers=bearer(typo)).status_code == 401
    assert client.get("/v1/models", headers=bearer("sk-" + key[3:])).status_code == 401
    assert looked_up == []
    unknown = security.generate_key()
    assert client.get("/v1/models", headers=bearer(unknown)).status_code == 401
    assert client.get("/v1/models", headers=bearer(key)).status_code == 200
    assert looked_up == [unknown, key]


def test_past_the_burst_wrong_keys_from_the_address_are_429_and_valid_keys_are_served(api, caplog) -> None:
    client, store, key = api
    admin = store.ensure_admin()
    assert admin is not None
    guesses = [security.generate_key() for _ in range(FAILED_KEY_BURST)]
    with caplog.at_level(logging.WARNING, logger="alveare.auth"):
        for guess in guesses:
            r = client.get("/v1/models", headers=bearer(guess))
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        # Every kind of wrong key gets the same 429: it says nothing about the key.
        revoked = store.create_key("acme").key
        store.revoke_key(security.display_prefix(revoked))
        blocked = [
            client.get("/v1/models", headers=bearer(wrong))
            for wrong in (security.generate_key(), key[:-1] + ("x" if key[-1] != "x" else "y"), revoked)
        ]
        # The valid keys at the same address are served: the app's and the admin's.
        assert client.get("/v1/models", headers=bearer(key)).status_code == 200
        assert client.get("/v1/admin/accounts", headers=bearer(admin.key)).status_code == 200
    for r in blocked:
        assert r.status_code == 429
        error = r.json()["error"]
        assert set(error) == {"message", "type", "param", "code", "request_id"}
        assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
        assert "invalid API key" in error["message"]
        assert 1 <= int(r.headers["retry-after"]) <= 60 / FAILED_KEY_BURST + 1
        assert int(r.headers["retry-after-ms"]) > 0
    assert len({re.sub(r"[0-9.]+m?s", "T", r.json()["error"]["message"]) for r in blocked}) == 1
    # Every counted refusal is logged with the address; the 429s are not (a busy client fills no log);
    # no key, nor any part of one past the public kind prefix, appears.
    refused = [rec.getMessage() for rec in caplog.records if rec.name == "alveare.auth"]
    assert len(refused) == FAILED_KEY_BURST and "further wrong keys get 429" in refused[-1]
    assert all("testclient" in line for line in refused)
    for secret in [*guesses, key, admin.key]:
        assert not any(secret[9:17] in line or secret[-6:] in line for line in refused)
    # /health needs no key and is never blocked.
    assert client.get("/health").status_code == 200


def test_missing_keys_are_not_counted_as_guesses(api) -> None:
    client, _, key = api
    for _ in range(FAILED_KEY_BURST + 5):
        assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/models", headers=bearer(key)).status_code == 200
