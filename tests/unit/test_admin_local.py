"""LocalAdmin: every AdminOps method directly on a data dir, with its validation messages."""

from __future__ import annotations

import pytest

from appliance.admin.checks import apply_override
from appliance.admin.local import LocalAdmin
from appliance.core.errors import Conflict, InvalidRequest, NotFound, PermissionDenied, ServerUnavailable
from appliance.core.specialists import load_specialists, with_overrides
from appliance.store import Store


@pytest.fixture
def admin(tmp_path):
    local = LocalAdmin(Store(tmp_path), load_specialists(), url="http://127.0.0.1:9")
    yield local
    local.close()


def test_offline(admin: LocalAdmin) -> None:
    assert admin.online is False
    with pytest.raises(ServerUnavailable, match=r"No Alveare server is running at http://127.0.0.1:9.*alveare serve"):
        admin.hive_status()
    with pytest.raises(ServerUnavailable):
        admin.try_it("chat", "hi")


def test_accounts_plans_and_caps(admin: LocalAdmin) -> None:
    account = admin.create_account("acme", "solo")
    assert account.plan == "solo"
    with pytest.raises(Conflict):
        admin.create_account("acme")
    with pytest.raises(NotFound, match="No plan named"):
        admin.create_account("beta", "platinum")
    assert admin.set_account_plan("acme", "professional").plan == "professional"
    assert admin.set_spending_cap("acme", 12.5).spending_cap == 12.5
    assert admin.set_spending_cap("acme", None).spending_cap is None
    with pytest.raises(InvalidRequest) as info:
        admin.set_spending_cap("acme", -1)
    assert info.value.param == "spending_cap"
    with pytest.raises(NotFound):
        admin.set_account_plan("nobody", "solo")
    overview = {o.account.name: o for o in admin.accounts()}["acme"]
    assert overview.usage.plan == "professional" and overview.active_keys == 0 and overview.alert_level == 0

    plan = admin.set_plan("solo", requests_per_minute=7, custom_prompts=True)
    assert plan.requests_per_minute == 7 and plan.custom_prompts
    assert admin.set_plan("tiny", requests_per_month=50).requests_per_minute == 100  # from starter
    assert "tiny" in {p.name for p in admin.plans()}
    for bad, field in (
        ({"rpm": 3}, "rpm"),
        ({"requests_per_minute": 1.5}, "requests_per_minute"),
        ({"requests_per_minute": 0}, "requests_per_minute"),
        ({"custom_prompts": "yes"}, "custom_prompts"),
        ({"monthly_price": "free"}, "monthly_price"),
    ):
        with pytest.raises(InvalidRequest) as info:
            admin.set_plan("solo", **bad)
        assert info.value.param == field


def test_keys(admin: LocalAdmin) -> None:
    admin.create_account("acme")
    keys = [admin.create_key("acme") for _ in range(4)]
    test = admin.create_key("acme", test=True)
    assert test.test and test.key.startswith("alv_test_")
    with pytest.raises(Conflict, match="5 active keys") as info:
        admin.create_key("acme")
    assert info.value.code == "too_many_keys"
    revoked = admin.revoke_key(keys[0].prefix)
    assert revoked.revoked_at is not None
    assert [k.prefix for k in admin.keys("acme")] == [k.prefix for k in [*keys, test]]
    admin.create_key("acme")
    with pytest.raises(NotFound):
        admin.keys("nobody")


def test_usage_and_alerts(admin: LocalAdmin) -> None:
    admin.create_account("acme")
    usage = admin.usage()
    assert usage.by_account == [] and usage.account is None
    assert admin.usage("acme", "2026-03").period == "2026-03"
    with pytest.raises(InvalidRequest):
        admin.usage(period="nope")
    with pytest.raises(NotFound):
        admin.usage("nobody")
    assert admin.alerts() == []


def test_specialist_overrides(admin: LocalAdmin) -> None:
    chat = {s.name: s for s in admin.specialists()}["chat"]
    assert not chat.overridden and chat.system_prompt == chat.default_system_prompt
    changed = admin.set_specialist("alveare-chat", system_prompt="  Answer in French.  ", temperature=0)
    assert changed.overridden and changed.system_prompt == "Answer in French." and changed.temperature == 0.0
    assert changed.top_p == chat.top_p and changed.default_system_prompt == chat.system_prompt
    again = admin.set_specialist("chat", max_tokens=12)
    assert again.system_prompt == "Answer in French." and again.max_tokens == 12
    assert {s.name: s for s in admin.specialists()}["chat"].max_tokens == 12
    reset = admin.reset_specialist("chat")
    assert not reset.overridden and reset.system_prompt == chat.system_prompt and reset.max_tokens == chat.max_tokens

    cases = [
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.01}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 4097}, "max_tokens"),
        ({"system_prompt": "   "}, "system_prompt"),
        ({"system_prompt": "x" * 8001}, "system_prompt"),
    ]
    for kwargs, field in cases:
        with pytest.raises(InvalidRequest) as info:
            admin.set_specialist("chat", **kwargs)
        assert info.value.param == field, kwargs
    with pytest.raises(InvalidRequest, match="at least one"):
        admin.set_specialist("chat")
    with pytest.raises(NotFound, match="No specialist named 'poet'") as info:
        admin.set_specialist("poet", temperature=1)
    assert info.value.code == "specialist_not_found"
    assert not {s.name: s for s in admin.specialists()}["chat"].overridden


def test_custom_prompts(admin: LocalAdmin) -> None:
    admin.create_account("pro", "professional")
    admin.create_account("small", "solo")
    saved = admin.set_custom_prompt("pro", "alveare-qa", " Cite the text. ")
    assert (saved.specialist, saved.system_prompt) == ("qa", "Cite the text.")
    assert [c.specialist for c in admin.custom_prompts("pro")] == ["qa"]
    with pytest.raises(PermissionDenied) as info:
        admin.set_custom_prompt("small", "qa", "Hi.")
    assert info.value.code == "custom_prompts_not_in_plan"
    with pytest.raises(InvalidRequest):
        admin.set_custom_prompt("pro", "qa", "x" * 8001)
    with pytest.raises(NotFound):
        admin.set_custom_prompt("nobody", "qa", "Hi.")
    with pytest.raises(NotFound):
        admin.set_custom_prompt("pro", "poet", "Hi.")
    assert admin.reset_custom_prompt("pro", "qa") is True
    assert admin.reset_custom_prompt("pro", "qa") is False
    assert admin.custom_prompts("pro") == []


def test_overrides_are_pure() -> None:
    chat = load_specialists().by_name["chat"]
    assert with_overrides(chat) is chat
    hot = with_overrides(chat, temperature=1.5, system_prompt="New.")
    assert (hot.temperature, hot.system_prompt, hot.top_p) == (1.5, "New.", chat.top_p)
    assert chat.temperature != 1.5 or chat.system_prompt != "New."
    assert apply_override(chat, None) is chat


def test_account_specialists(admin: LocalAdmin) -> None:
    admin.create_account("acme", "solo")
    assert admin.set_account_specialists("acme", ["qa", " alveare-chat", "qa", ""]).specialists == ["qa", "chat"]
    with pytest.raises(InvalidRequest, match="solo plan allows 3") as info:
        admin.set_account_specialists("acme", ["qa", "chat", "code", "classify"])
    assert info.value.param == "specialists"
    with pytest.raises(NotFound, match="poetry"):
        admin.set_account_specialists("acme", ["poetry"])
    with pytest.raises(InvalidRequest, match="at least one"):
        admin.set_account_specialists("acme", [" "])
    with pytest.raises(InvalidRequest, match="list"):
        admin.set_account_specialists("acme", "qa")  # type: ignore[arg-type]
    with pytest.raises(NotFound, match="ghost"):
        admin.set_account_specialists("ghost", ["qa"])
    assert admin.set_account_specialists("acme", None).specialists is None


def test_admin_keys(admin: LocalAdmin) -> None:
    created = admin.create_key("admin", admin=True)  # the admin account is made when missing
    assert created.account == "admin" and created.key.startswith("alv_live_")
    assert [k.admin for k in admin.keys("admin")] == [True]
    admin.create_account("acme")
    with pytest.raises(InvalidRequest, match="admin account"):
        admin.create_key("acme", admin=True)
    with pytest.raises(InvalidRequest, match="live key"):
        admin.create_key("admin", admin=True, test=True)
