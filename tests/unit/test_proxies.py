"""X-Forwarded-For is believed only from trusted proxies, and then only up to the first hop that is
not one: the client's address is the right-most untrusted one. (tests/api/test_abuse.py has the same
against a live server, with the refused-key limit.)"""

from __future__ import annotations

import asyncio

import pytest

from appliance.api.forwarded import real_client
from appliance.core.errors import ConfigError
from appliance.core.proxies import TrustedProxies, parse_address, parse_networks
from appliance.core.settings import load_settings

PROXIES = TrustedProxies(parse_networks("127.0.0.1, 10.0.0.0/8, fd00::/8"))


def test_the_header_is_ignored_from_an_untrusted_peer() -> None:
    assert PROXIES.client("192.0.2.7", ["203.0.113.9"]) == "192.0.2.7"
    assert TrustedProxies().client("127.0.0.1", ["203.0.113.9"]) == "127.0.0.1"
    assert not TrustedProxies() and PROXIES


def test_from_a_trusted_peer_the_right_most_untrusted_address_is_the_client() -> None:
    assert PROXIES.client("127.0.0.1", ["203.0.113.9"]) == "203.0.113.9"
    # A client that sends its own header cannot choose its address: the proxy appended the real one.
    assert PROXIES.client("127.0.0.1", ["6.6.6.6, 203.0.113.9"]) == "203.0.113.9"
    # Hops through further trusted proxies are skipped, across several header lines too.
    assert PROXIES.client("127.0.0.1", ["6.6.6.6, 203.0.113.9", "10.1.2.3"]) == "203.0.113.9"
    assert PROXIES.client("10.9.9.9", ["2001:db8::5", "fd00::1"]) == "2001:db8::5"
    # Every hop trusted: the left-most one is as far as the chain goes.
    assert PROXIES.client("127.0.0.1", ["10.0.0.2, 10.0.0.3"]) == "10.0.0.2"
    # An entry that is no address ends the walk at the last hop that could be trusted.
    assert PROXIES.client("127.0.0.1", ["203.0.113.9, unknown"]) == "127.0.0.1"
    assert PROXIES.client("127.0.0.1", ["203.0.113.9, 10.0.0.4, <script>"]) == "127.0.0.1"
    assert PROXIES.client("127.0.0.1", ["203.0.113.9, garbage, 10.0.0.4"]) == "10.0.0.4"
    assert PROXIES.client("127.0.0.1", [" , "]) == "127.0.0.1"


def test_addresses_with_ports_brackets_and_mapped_ipv4() -> None:
    assert str(parse_address("203.0.113.9:4711")) == "203.0.113.9"
    assert str(parse_address("[2001:db8::5]:443")) == "2001:db8::5"
    assert str(parse_address("[2001:db8::5]")) == "2001:db8::5"
    assert str(parse_address("::ffff:127.0.0.1")) == "127.0.0.1"
    assert parse_address("unknown") is None and parse_address("") is None
    # A dual-stack listener sees an IPv4 proxy as a mapped address: still trusted.
    assert PROXIES.client("::ffff:127.0.0.1", ["203.0.113.9"]) == "203.0.113.9"


def test_the_setting_takes_addresses_and_networks_and_names_a_bad_entry() -> None:
    settings = load_settings({"trusted_proxies": "10.0.0.0/8, 192.168.1.5,fd00::/8"}, environ={})
    assert [str(n) for n in settings.trusted_proxy_networks] == ["10.0.0.0/8", "192.168.1.5/32", "fd00::/8"]
    assert load_settings(environ={}).trusted_proxy_networks == ()
    env = load_settings(environ={"ALVEARE_TRUSTED_PROXIES": "127.0.0.1"})
    assert [str(n) for n in env.trusted_proxy_networks] == ["127.0.0.1/32"]
    with pytest.raises(ConfigError, match=r"trusted proxies must be IP addresses or CIDR networks.*'proxy\.lan'"):
        load_settings({"trusted_proxies": "10.0.0.0/8,proxy.lan"}, environ={})


def run_middleware(proxies: TrustedProxies, client: tuple[str, int] | None, headers: list[tuple[bytes, bytes]]):
    seen = []

    async def app(scope, receive, send) -> None:
        seen.append(scope.get("client"))

    scope = {"type": "http", "client": client, "headers": headers}
    asyncio.run(real_client(proxies)(app)(scope, None, None))  # type: ignore[arg-type]
    return seen[0]


def test_the_middleware_gives_the_app_the_real_client() -> None:
    forwarded = [(b"x-forwarded-for", b"6.6.6.6, 203.0.113.9")]
    assert run_middleware(PROXIES, ("127.0.0.1", 5000), forwarded) == ("203.0.113.9", 0)
    assert run_middleware(PROXIES, ("192.0.2.7", 5000), forwarded) == ("192.0.2.7", 5000)
    assert run_middleware(PROXIES, ("127.0.0.1", 5000), []) == ("127.0.0.1", 5000)
    assert run_middleware(PROXIES, None, forwarded) is None
