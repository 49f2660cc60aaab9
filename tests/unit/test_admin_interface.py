"""LocalAdmin and AdminClient both implement AdminOps: the same methods with the same signatures."""

from __future__ import annotations

import inspect

import pytest

from appliance.admin.local import LocalAdmin
from appliance.admin.ops import AdminOps
from appliance.admin.remote import AdminClient

METHODS = sorted(name for name, value in vars(AdminOps).items() if not name.startswith("_") and callable(value))


def _shape(func) -> list[tuple[str, object, object]]:
    params = list(inspect.signature(func).parameters.values())[1:]  # without self
    return [(p.name, p.kind, p.default) for p in params]


@pytest.mark.parametrize("impl", [LocalAdmin, AdminClient])
@pytest.mark.parametrize("name", METHODS)
def test_same_methods_and_signatures(impl, name) -> None:
    assert _shape(getattr(impl, name)) == _shape(getattr(AdminOps, name)), name


@pytest.mark.parametrize("impl", [LocalAdmin, AdminClient])
def test_online_is_a_property(impl) -> None:
    assert isinstance(impl.online, property)


def test_every_operation_is_listed() -> None:
    assert len(METHODS) == 25 and "backup" in METHODS and "set_account_specialists" in METHODS
    assert "try_it" in METHODS and "hive_status" in METHODS and "set_specialist_adapter" in METHODS
    assert "audit" in METHODS and "verify_audit" in METHODS
