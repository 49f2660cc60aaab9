"""The appliance on a CPU whose fast llama.cpp kernels crash (a virtualised Xeon with AMX, forced here
by making the startup check's child crash): it warns once, serves on the safe kernels, says so in
/v1/hive/status, and remembers the verdict for the next start. Each test has a kernel cache of its
own: the run's shared one (conftest.py) holds this machine's real verdict, which would skip the check."""

from __future__ import annotations

import httpx
import openai
from live import LiveServer, start_server


def kernels(server: LiveServer, admin_key: str) -> dict:
    """The hive status's cpu part: kernels, how they were chosen and why."""
    headers = {"Authorization": f"Bearer {admin_key}"}
    return httpx.get(server.base_url + "/hive/status", headers=headers).json()["cpu"]


def test_a_crashing_kernel_check_serves_on_safe_kernels_and_is_remembered(tmp_path) -> None:
    data = tmp_path / "data"
    cache = tmp_path / "cache" / "cpu-kernels.json"
    crash = {"ALVEARE_KERNEL_CHECK_FAULT": "crash", "ALVEARE_KERNEL_CACHE": str(cache)}
    # The original file: one check, one warning (an optimised copy's solo lane would check the original too).
    server = start_server(data, "--optimized-model", "off", env=crash)
    try:
        body = kernels(server, server.admin_key)
        assert (body["kernels"], body["kernels_source"]) == ("safe", "check")
        assert "SIGSEGV" in body["kernels_reason"]
        client = openai.OpenAI(base_url=server.base_url, api_key=server.admin_key, max_retries=0, timeout=60)
        reply = client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "Say hi."}], max_tokens=8
        )
        assert reply.choices[0].message.content and reply.usage.completion_tokens > 0
    finally:
        server.stop()
    log = server.log_text()
    warnings = [line for line in log.splitlines() if " WARNING " in line]
    assert len(warnings) == 1 and "SIGSEGV" in warnings[0]
    assert "Traceback" not in log
    assert cache.stat().st_mode & 0o777 == 0o600
    assert not (data / "cpu-kernels.json").exists()  # the machine's verdict, not the data dir's

    # The same model, build and CPU, even in another data dir: no check this time (the fault would be
    # seen again if it ran).
    again = start_server(tmp_path / "other-data", "--optimized-model", "off", env=crash)
    try:
        body = kernels(again, again.admin_key)
        assert (body["kernels"], body["kernels_source"]) == ("safe", "cache")
    finally:
        again.stop()
    assert " WARNING " not in again.log_text()


def test_forcing_fast_kernels_skips_the_check(tmp_path) -> None:
    cache = tmp_path / "cache" / "cpu-kernels.json"
    crash = {"ALVEARE_KERNEL_CHECK_FAULT": "crash", "ALVEARE_KERNEL_CACHE": str(cache)}
    server = start_server(tmp_path / "data", "--cpu-kernels", "fast", env=crash)
    try:
        body = kernels(server, server.admin_key)
        assert (body["kernels"], body["kernels_source"]) == ("fast", "setting")
    finally:
        server.stop()
    assert not cache.exists()
