"""Bad input and abusive clients against a live server: each gets a clear 4xx or is cut off, while
another client keeps being served; a client sending wrong keys is limited without locking out the
valid keys at its address, and behind a trusted proxy the limit is the real client's. (test_errors.py
has the single-request cases of the same.)"""

from __future__ import annotations

import os
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import httpx
import pytest
from live import LiveServer, start_server
from test_errors import assert_envelope

from appliance.boot.connections import BODY_TIMEOUT_S, HEAD_TIMEOUT_S, MAX_WAITING
from appliance.core import security
from appliance.core.limits import FAILED_KEY_BURST

T = TypeVar("T")
MSG = [{"role": "user", "content": "Hello"}]


def chat(server: LiveServer, key: str, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
    return httpx.post(server.base_url + "/chat/completions", headers=headers, timeout=120, **kwargs)


def served_meanwhile(server: LiveServer, key: str, abuse: Callable[[], T]) -> T:
    """Run `abuse` in a thread while another client gets a real completion; return what abuse got."""
    results: list[T] = []
    thread = threading.Thread(target=lambda: results.append(abuse()))
    thread.start()
    other = chat(server, key, json={"model": "chat", "messages": MSG, "max_tokens": 2})
    thread.join()
    assert other.status_code == 200, other.text
    assert other.json()["choices"][0]["message"]["content"] is not None
    assert results, "the abusive request raised"
    return results[0]


BODIES = {
    "deeply nested JSON": (b'{"model":' * 20_000 + b"1" + b"}" * 20_000, 400, None),
    "a raw NUL byte": (b'{"model": "chat", "messages": [{"role": "user", "content": "a\x00b"}]}', 400, "invalid_json"),
    "binary garbage": (os.urandom(64 * 1024), 400, "invalid_json"),
}
JSONS = {
    "an escaped NUL in a message": (
        {"model": "chat", "messages": [{"role": "user", "content": "a\u0000b"}]},
        400,
        "messages[0].content",
    ),
    "an escaped NUL in a text part": (
        {"model": "chat", "messages": [{"role": "user", "content": [{"type": "text", "text": "\u0000"}]}]},
        400,
        "messages[0].content[0].text",
    ),
    "huge max_tokens": ({"model": "chat", "messages": MSG, "max_tokens": 10**30}, 400, "max_tokens"),
    "max_tokens past 64 bits": ({"model": "chat", "messages": MSG, "max_tokens": 2**64 + 1}, 400, "max_tokens"),
    "thousands of messages": ({"model": "chat", "messages": MSG * 20_000}, 400, "messages"),
    "a prompt past the context window": (
        {"model": "chat", "messages": [{"role": "user", "content": "word " * 12_000}]},
        400,
        "messages",
    ),
}


@pytest.mark.parametrize("name", list(BODIES))
def test_bad_bodies_are_400_while_others_are_served(server: LiveServer, api_key: str, name: str) -> None:
    body, status, code = BODIES[name]
    r = served_meanwhile(server, api_key, lambda: chat(server, api_key, content=body))
    assert_envelope(r, status, code)


@pytest.mark.parametrize("name", list(JSONS))
def test_bad_values_are_400_naming_them_while_others_are_served(server: LiveServer, api_key: str, name: str) -> None:
    body, status, param = JSONS[name]
    r = served_meanwhile(server, api_key, lambda: chat(server, api_key, json=body))
    assert_envelope(r, status, param=param)


def test_nul_in_the_other_prompts_is_400(server: LiveServer, api_key: str) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    r = httpx.post(server.base_url + "/infer", json={"specialist": "chat", "prompt": "a\u0000"}, headers=headers)
    assert_envelope(r, 400, param="prompt")
    r = httpx.post(
        server.base_url + "/completions", json={"model": "chat", "prompt": ["ok", "\u0000"]}, headers=headers
    )
    assert_envelope(r, 400, param="prompt[1]")


def raw_request(server: LiveServer, head: bytes) -> bytes:
    """Send a hand-written request head; return the whole response (the server closes after it)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(head)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    "header",
    [
        b"X-Request-Id: abc\r\nSet-Cookie: evil=1",  # a second header, not part of the id
        b"X-Request-Id: abc%0d%0aSet-Cookie:%20evil=1",
        b"X-Request-Id: abc\r\n Set-Cookie: evil=1",  # obsolete line folding
        b"X-Request-Id: <script>evil</script>",
        b"X-Request-Id: " + b"e" * 5000,
        b"X-Request-Id: abc\x00evil",
        b"X-Request-Id: caf\xc3\xa9-evil",
        b"X-Request-Id: abc\revil: 1",
    ],
)
def test_header_injection_in_the_request_id(server: LiveServer, api_key: str, header: bytes) -> None:
    head = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer " + api_key.encode()
    response = served_meanwhile(server, api_key, lambda: raw_request(server, head + b"\r\n" + header + b"\r\n\r\n"))
    status_line, _, rest = response.partition(b"\r\n")
    headers, _, _ = rest.partition(b"\r\n\r\n")
    assert status_line.split()[1] in (b"200", b"400"), response[:300]
    assert b"evil" not in headers.lower() and b"set-cookie" not in headers.lower()
    if status_line.split()[1] == b"200":
        rid = next(line for line in headers.split(b"\r\n") if line.lower().startswith(b"x-request-id:"))
        # only a sane id is echoed: the part before a line break is a header of its own, anything else is replaced
        assert re.fullmatch(rb"abc|req_[0-9a-f]{24}", rid.split(b":", 1)[1].strip())


def closed_by_server(s: socket.socket, wait: float) -> bool:
    """Whether the server closed this connection within `wait` seconds (a liveness bound, not a timing
    claim: the server's own limits are far below it)."""
    readable, _, _ = select.select([s], [], [], wait)
    if not readable:
        return False
    try:
        return s.recv(1024) == b""
    except ConnectionResetError:
        return True


def closed_now(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1024) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        s.setblocking(True)


def test_stalled_and_idle_clients_are_cut_off_while_others_are_served(server: LiveServer, api_key: str) -> None:
    address = ("127.0.0.1", server.port)
    idle = [socket.create_connection(address) for _ in range(MAX_WAITING + 244)]
    slow_head = socket.create_connection(address)
    slow_head.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
    slow_body = socket.create_connection(address)
    slow_body.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + api_key.encode() + b'\r\nContent-Length: 100000\r\n\r\n{"model": '
    )
    try:

        def trickle() -> None:
            # One more header byte and one more body byte a second: never enough to finish.
            for _ in range(int(BODY_TIMEOUT_S) + 10):
                try:
                    slow_head.sendall(b"X")
                    slow_body.sendall(b" ")
                except OSError:
                    return
                time.sleep(1)

        threading.Thread(target=trickle, daemon=True).start()
        # Another client is served, repeatedly, with all of them connected.
        for _ in range(3):
            assert chat(server, api_key, json={"model": "chat", "messages": MSG, "max_tokens": 2}).status_code == 200
            assert httpx.get(server.url + "/health", timeout=10).status_code == 200
        # Past MAX_WAITING idle connections, the oldest were closed as new ones came.
        evicted = [s for s in idle if closed_now(s)]
        assert len(evicted) >= len(idle) - MAX_WAITING
        assert evicted[0] is idle[0]
        # And in the end every stalled connection is cut off.
        assert closed_by_server(slow_head, HEAD_TIMEOUT_S + 20)
        assert closed_by_server(slow_body, BODY_TIMEOUT_S + 20)
        assert all(closed_by_server(s, HEAD_TIMEOUT_S) for s in idle)
    finally:
        for s in [*idle, slow_head, slow_body]:
            s.close()
    assert chat(server, api_key, json={"model": "chat", "messages": MSG, "max_tokens": 2}).status_code == 200


def wait_for_log(server: LiveServer, text: str, timeout: float = 10) -> str:
    """The server's output once it holds `text` (its lines are read in another thread)."""
    deadline = time.monotonic() + timeout
    while text not in server.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    return server.log_text()


def get(server: LiveServer, path: str, key: str, client: str | None = None) -> httpx.Response:
    """GET as a client behind the reverse proxy on loopback, which appends the client's address."""
    headers = {"Authorization": f"Bearer {key}"} | ({"X-Forwarded-For": client} if client else {})
    return httpx.get(server.url + path, headers=headers, timeout=120)


@pytest.fixture(scope="module")
def proxied_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server behind a reverse proxy on loopback: it believes X-Forwarded-For from 127.0.0.1 only."""
    live = start_server(tmp_path_factory.mktemp("alveare-proxied"), "--trusted-proxies", "127.0.0.1/32")
    try:
        yield live
    finally:
        live.stop()


def test_x_forwarded_for_is_ignored_from_an_untrusted_peer(server: LiveServer) -> None:
    # The session's server trusts no proxy: a client on loopback cannot name its own address.
    r = get(server, "/v1/models", security.generate_key(), client="198.51.100.23")
    assert_envelope(r, 401, "invalid_api_key")
    log = wait_for_log(server, "refused an API key from 127.0.0.1")
    assert "refused an API key from 127.0.0.1" in log and "198.51.100.23" not in log


def test_a_valid_key_is_served_from_an_address_that_sent_too_many_wrong_keys(proxied_server: LiveServer) -> None:
    key = proxied_server.new_key("proxied-app")
    wrong, client = security.generate_key(), "203.0.113.7"
    for _ in range(FAILED_KEY_BURST):
        assert_envelope(get(proxied_server, "/v1/models", wrong, client), 401, "invalid_api_key")
    blocked = get(proxied_server, "/v1/models", wrong, client)
    assert_envelope(blocked, 429, "rate_limit_exceeded")
    assert 1 <= int(blocked.headers["retry-after"]) <= 60 / FAILED_KEY_BURST + 1
    # A client that sends its own header is still the address the proxy appended.
    assert get(proxied_server, "/v1/models", wrong, f"198.51.100.1, {client}").status_code == 429
    # The same address's valid keys are served: the app's, for inference too, and the admin's.
    assert get(proxied_server, "/v1/models", key, client).status_code == 200
    answer = chat(proxied_server, key, headers={"X-Forwarded-For": client}, json={"model": "chat", "messages": MSG})
    assert answer.status_code == 200, answer.text
    assert get(proxied_server, "/v1/admin/accounts", proxied_server.admin_key, client).status_code == 200
    # The limit is the client's, not the proxy's: another client behind it, and the proxy itself, are not limited.
    assert_envelope(get(proxied_server, "/v1/models", wrong, "203.0.113.8"), 401, "invalid_api_key")
    assert_envelope(get(proxied_server, "/v1/models", wrong), 401, "invalid_api_key")
    # And the log names the client, never the key. The lines come from another thread, in order:
    # wait for the last request's line, or the check races the log reader (a CI run lost it once).
    log = wait_for_log(proxied_server, "refused an API key from 127.0.0.1")
    assert f"refused an API key from {client}" in log and "further wrong keys get 429" in log
    assert "refused an API key from 203.0.113.8" in log
    assert wrong[9:17] not in log and wrong[-6:] not in log


def test_one_wrong_key_a_second_does_not_fail_a_well_behaved_app_on_the_same_host(proxied_server: LiveServer) -> None:
    """A misconfigured client sends a wrong key every second while an app on the same host works. The
    misconfigured one starts with a burst: a half minute of one a second uses its allowance just the same."""
    key, client = proxied_server.new_key("same-host-app"), "203.0.113.9"
    stop = threading.Event()
    refused: list[int] = []

    def misconfigured() -> None:
        wrong = security.generate_key()
        for _ in range(FAILED_KEY_BURST):
            refused.append(get(proxied_server, "/v1/models", wrong, client).status_code)
        while not stop.wait(1.0):
            refused.append(get(proxied_server, "/v1/models", wrong, client).status_code)

    thread = threading.Thread(target=misconfigured)
    thread.start()
    try:
        served = []
        for i in range(20):
            if i % 2:
                r = get(proxied_server, "/v1/models", key, client)
            else:
                body = {"model": "chat", "messages": MSG, "max_tokens": 2}
                r = chat(proxied_server, key, headers={"X-Forwarded-For": client}, json=body)
            served.append(r.status_code)
            time.sleep(0.3)
    finally:
        stop.set()
        thread.join()
    assert served == [200] * 20
    assert set(refused) == {401, 429} and refused[:FAILED_KEY_BURST] == [401] * FAILED_KEY_BURST
