"""Schemathesis against the server's own OpenAPI schema (/schema/openapi.json), on a live server:
no 5xx and no response that breaks the schema, for every operation, with an admin key and without."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from live import LiveServer, start_server
from schemathesis.specs.openapi.checks import positive_data_acceptance


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server of its own: the fuzzer creates plans, accounts and prompts through the admin API."""
    live = start_server(Path(tmp_path_factory.mktemp("schemathesis")))
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def api_schema(fuzzed_server: LiveServer):
    return schemathesis.openapi.from_url(fuzzed_server.url + "/schema/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
def test_the_api_keeps_to_its_schema(case, fuzzed_server: LiveServer) -> None:
    if isinstance(case.body, dict):
        # A few tokens at most, so the real model answers each generated request in well under a second.
        for field in ("max_tokens", "max_completion_tokens"):
            if isinstance(case.body.get(field), int):
                case.body[field] = min(case.body[field], 3)
    case.call_and_validate(
        base_url=fuzzed_server.url,
        headers={"Authorization": f"Bearer {fuzzed_server.admin_key}"},
        # Every check but one: the schema holds the wire types' shapes, not every rule a value must
        # follow (an account name's characters, a specialist that exists, 4.0 where an integer goes),
        # so a request that fits the schema may still be a 400, and rightly.
        excluded_checks=[positive_data_acceptance],
    )


def test_options_lists_every_method_and_needs_no_admin_key(fuzzed_server: LiveServer) -> None:
    """Found by Schemathesis: OPTIONS on an admin URL was a 500 (the admin guard ran without a key),
    and Allow listed only the methods of the path's first handler."""
    for path, methods in [
        ("/v1/admin/accounts", "GET, OPTIONS, POST"),
        ("/v1/admin/specialists/qa", "DELETE, OPTIONS, PUT"),
        ("/v1/specialists/qa", "DELETE, OPTIONS, PUT"),
    ]:
        for headers in ({}, {"Authorization": f"Bearer {fuzzed_server.admin_key}"}):
            r = httpx.options(fuzzed_server.url + path, headers=headers)
            assert r.status_code == 204 and r.headers["allow"] == methods
