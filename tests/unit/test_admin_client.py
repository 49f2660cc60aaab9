"""AdminClient against the in-process app (fake engine), its error mapping, and open_admin's fallback.
The same operations against a real server and model are in tests/api/test_admin_api.py."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
from litestar.testing import TestClient

from appliance.admin.local import LocalAdmin
from appliance.admin.reach import open_admin, tui_admin_key
from appliance.admin.remote import AdminClient, error_from_envelope
from appliance.api import create_app
from appliance.core import errors
from appliance.core.settings import Settings
from appliance.core.specialists import load_specialists
from appliance.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from fake_engine import FakeEngine

sys.path.insert(0, str(Path(__file__).parents[1]))
from live import free_port


@pytest.fixture
def admin(tmp_path):
    store = Store(tmp_path)
    key = store.ensure_admin().key  # type: ignore[union-attr]
    app = create_app(
        Settings(data_dir=str(tmp_path)),
        engine=FakeEngine(reply="one two three"),
        store=store,
        specialists=load_specialists(),
    )
    with TestClient(app, raise_server_exceptions=False) as test_client:
        client = AdminClient("http://testserver.local/v1", key, transport=test_client._transport)
        yield client  # not closed: the transport is the TestClient's
    store.close()


def test_operations_and_errors_round_trip(admin: AdminClient) -> None:
    assert admin.online is True
    assert admin.create_account("acme", "solo").plan == "solo"
    with pytest.raises(errors.Conflict, match="already exists"):
        admin.create_account("acme")
    with pytest.raises(errors.NotFound, match="No plan named") as info:
        admin.set_account_plan("acme", "platinum")
    assert info.value.code == "plan_not_found" and info.value.status == 404
    assert admin.set_spending_cap("acme", 5).spending_cap == 5
    assert admin.set_spending_cap("acme", None).spending_cap is None
    keys = [admin.create_key("acme") for _ in range(5)]
    with pytest.raises(errors.Conflict, match="5 active keys") as info:
        admin.create_key("acme")
    assert info.value.code == "too_many_keys"
    assert admin.revoke_key(keys[0].prefix).revoked_at is not None
    assert len(admin.keys("acme")) == 5
    assert admin.set_plan("solo", requests_per_minute=9).requests_per_minute == 9
    with pytest.raises(errors.InvalidRequest) as info:
        admin.set_plan("solo", rpm=9)
    assert info.value.param == "rpm"
    with pytest.raises(errors.InvalidRequest) as info:
        admin.set_specialist("chat", top_p=0)
    assert info.value.param == "top_p"
    with pytest.raises(errors.PermissionDenied) as info:
        admin.set_custom_prompt("acme", "qa", "Hi.")
    assert info.value.code == "custom_prompts_not_in_plan"
    assert admin.set_specialist("chat", temperature=0).overridden
    assert admin.reset_specialist("chat").overridden is False
    assert {o.account.name for o in admin.accounts()} == {"admin", "acme"}
    assert admin.usage("acme").account == "acme" and admin.alerts("acme") == []
    assert admin.custom_prompts("acme") == [] and admin.reset_custom_prompt("acme", "qa") is False
    assert admin.hive_status().slots_total == 1


def test_try_it_streams_pieces_then_counts(admin: AdminClient) -> None:
    events = list(admin.try_it("chat", "hello", max_tokens=8))
    assert "".join(e.text for e in events if not e.done) == "one two three"
    final = events[-1]
    assert final.done and final.completion_tokens == 3 and final.prompt_tokens > 0
    assert final.finish_reason == "stop" and final.latency_ms >= final.time_to_first_token_ms >= 0
    with pytest.raises(errors.ModelNotFound):
        list(admin.try_it("poet", "hello"))
    with pytest.raises(errors.InvalidRequest):
        admin.try_it("chat", "  ")


def test_error_mapping() -> None:
    body = {
        "error": {"message": "Slow down.", "type": "rate_limit_error", "param": None, "code": "rate_limit_exceeded"}
    }
    exc = error_from_envelope(429, body)
    assert isinstance(exc, errors.RateLimited) and str(exc) == "Slow down."
    quota = error_from_envelope(429, {"error": {"message": "Cap.", "code": "insufficient_quota"}})
    assert isinstance(quota, errors.QuotaExceeded)
    odd = error_from_envelope(403, {"error": {"message": "No.", "code": "admin_required"}})
    assert isinstance(odd, errors.PermissionDenied) and odd.code == "admin_required"
    assert isinstance(error_from_envelope(0, {"error": {"message": "t", "code": "timeout"}}), errors.GenerationTimeout)
    assert isinstance(error_from_envelope(502, None, "Bad gateway"), errors.ServerError)


def test_unreachable_server_and_fallback(tmp_path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    client = AdminClient(url, "alv_live_x", timeout=2)
    with pytest.raises(errors.ServerUnavailable, match="Could not reach the Alveare server"):
        client.plans()
    with pytest.raises(errors.ServerUnavailable):
        list(client.try_it("chat", "hi"))
    client.close()
    with pytest.raises(errors.NotFound, match=r"no alveare\.db"):
        open_admin(tmp_path / "data", url=url)  # a mistyped data dir is not created
    Store(tmp_path / "data").close()
    local = open_admin(tmp_path / "data", url=url)
    try:
        assert isinstance(local, LocalAdmin) and local.online is False
        assert local.create_account("acme").name == "acme"
        with pytest.raises(errors.ServerUnavailable, match=url):
            local.hive_status()
    finally:
        local.close()


def test_tui_key_file(tmp_path) -> None:
    with pytest.raises(errors.NotFound, match="not an Alveare data dir"):
        tui_admin_key(tmp_path / "nothing")
    Store(tmp_path).close()
    key = tui_admin_key(tmp_path)
    path = tmp_path / "tui-admin.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert tui_admin_key(tmp_path) == key
    renewed = tui_admin_key(tmp_path, renew=True)
    assert renewed != key and path.read_text().strip() == renewed
    store = Store(tmp_path)
    try:
        principal = store.authenticate(renewed)
        assert principal is not None and principal.admin and principal.account == "admin"
    finally:
        store.close()


def test_backup_through_the_admin_api_makes_a_folder_named_with_a_slash(admin: AdminClient, tmp_path) -> None:
    # The client names and writes the copy on its own machine, with the same rules as the data dir.
    folder = tmp_path / "copies" / "today"
    info = admin.backup(f"{folder}/")
    assert info.integrity == "ok" and info.path.startswith(str(folder / "alveare-"))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    with pytest.raises(errors.NotFound, match="give a folder ending in /"):
        admin.backup(str(tmp_path / "missing" / "x.db"))
    assert not (tmp_path / "missing").exists()
