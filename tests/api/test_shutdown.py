"""SIGTERM on a live server: it stops accepting at once, lets requests in flight run for the grace
period, then stops the rest with an error their clients see, records every request's usage and exits."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
from pathlib import Path

import httpx
import pytest
from live import LiveServer, start_server

# SmolLM2's end-of-text and end-of-turn tokens, banned so a generation runs to max_tokens.
NO_EOS = {"0": -100, "2": -100}


def long_request(stream: bool) -> dict:
    return {
        "model": "chat",
        "messages": [{"role": "user", "content": "Count from one to ten thousand, one number a line."}],
        "max_tokens": 4000,
        "logit_bias": NO_EOS,
        "stream": stream,
    }


def usage_statuses(data_dir: Path) -> list[int]:
    with sqlite3.connect(data_dir / "alveare.db") as db:
        return sorted(r[0] for r in db.execute("SELECT status FROM usage WHERE endpoint = 'chat.completions'"))


def slots_busy(server: LiveServer) -> int:
    r = httpx.get(server.base_url + "/hive/status", headers={"Authorization": f"Bearer {server.admin_key}"})
    return r.json()["slots_busy"]


def refuses_connections(server: LiveServer) -> bool:
    """Whether the port stopped accepting while the process still runs (polled until it exits)."""
    while server.process.poll() is None:
        try:
            httpx.get(server.url + "/health", timeout=1)
        except httpx.ConnectError:
            return True
        except httpx.HTTPError:
            pass
    return False


def sse_events(response: httpx.Response) -> list[str]:
    return [line[len("data: ") :] for line in response.iter_lines() if line.startswith("data: ")]


@pytest.fixture
def short_grace(tmp_path: Path):
    live = start_server(tmp_path, "--shutdown-grace", "1", "--timeout", "120")
    yield live
    live.stop()


def test_sigterm_stops_what_outlives_the_grace_period(short_grace: LiveServer) -> None:
    server = short_grace
    key = server.new_key("shutdown", plan="scale")
    headers = {"Authorization": f"Bearer {key}"}
    whole: list[httpx.Response] = []
    plain = threading.Thread(
        target=lambda: whole.append(
            httpx.post(server.base_url + "/chat/completions", json=long_request(False), headers=headers, timeout=60)
        )
    )
    plain.start()
    with httpx.stream(
        "POST", server.base_url + "/chat/completions", json=long_request(True), headers=headers, timeout=60
    ) as streamed:
        assert streamed.status_code == 200
        lines = streamed.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        assert json.loads(first[6:])["choices"]
        while slots_busy(server) < 2:  # the plain request is running too
            pass
        server.process.send_signal(signal.SIGTERM)
        rest = [line[6:] for line in lines if line.startswith("data: ")]
    plain.join()
    # uvicorn ends the process with the signal it got once it has shut down, as is conventional.
    assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)
    # The stream ends with an error event, never [DONE]; the plain request is a 503.
    assert rest and rest[-1] != "[DONE]"
    error = json.loads(rest[-1])["error"]
    assert error["code"] == "server_shutting_down" and error["request_id"]
    assert whole[0].status_code == 503 and whole[0].json()["error"]["code"] == "server_shutting_down"
    # Both are in the usage records, written before the process exited.
    assert usage_statuses(server.data_dir) == [503, 503]
    assert "Traceback" not in server.log_text()


def test_sigterm_lets_a_request_finish_within_the_grace_period(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--shutdown-grace", "60")
    try:
        key = server.new_key("graceful", plan="scale")
        # Long enough to outlast the moment uvicorn closes its socket after the signal, even on a
        # loaded machine (40 tokens once finished first: the check then saw the process gone, not
        # a refused connection), and short enough to end well inside the 60 s grace.
        body = {**long_request(True), "max_tokens": 400}
        # httpx's default 5 s read timeout is not the check: on a loaded machine (reproduced beside
        # two busy loops) a step can take seconds, and the read timed out in the middle of the stream.
        with httpx.stream(
            "POST",
            server.base_url + "/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        ) as streamed:
            lines = streamed.iter_lines()
            next(line for line in lines if line.startswith("data: "))
            server.process.send_signal(signal.SIGTERM)
            refused = refuses_connections_while(server, streamed)
            rest = [line[6:] for line in lines if line.startswith("data: ")]
        assert refused  # no new connection once SIGTERM arrived, while the stream went on
        assert rest[-1] == "[DONE]"
        assert json.loads(rest[-2])["choices"][0]["finish_reason"] == "length"
        assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)
        assert usage_statuses(server.data_dir) == [200]
    finally:
        server.stop()


def refuses_connections_while(server: LiveServer, streamed: httpx.Response) -> bool:
    """A new connection is refused while the stream is still open (its server still runs)."""
    try:
        httpx.get(server.url + "/health", timeout=2)
    except httpx.ConnectError:
        return not streamed.is_closed
    except httpx.HTTPError:
        # Accepted just before the listener closed, then dropped unanswered by the shutdown (or
        # too slow on a loaded machine): not yet a refusal, so go on trying as below.
        pass
    # uvicorn closes the listening socket a moment after the signal: try until it does.
    return refuses_connections(server) and not streamed.is_closed
