"""The Python client of a running Alveare server (httpx, synchronous).

`AdminClient` implements `appliance.admin.ops.AdminOps` over the admin API (`/v1/admin/...`) with an
admin key, so the server sees every change at once; `open_admin` picks it when a server answers,
else a `LocalAdmin` on the data dir. Errors come back as the same `AlveareError` subclasses the
server raised (by status and code, with the server's message); a server that cannot be reached
is `ServerUnavailable`.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from appliance.admin.ops import SpecialistProfile, TryItEvent
from appliance.core import errors
from appliance.core.errors import (
    AlveareError,
    ConfigError,
    InvalidRequest,
    ServerUnavailable,
)
from appliance.core.protocol import AdapterStatus, AdminDeleted, HiveStatus
from appliance.store import (
    Account,
    AccountOverview,
    AlertEvent,
    AuditPage,
    AuditVerification,
    BackupInfo,
    BillingPlan,
    CreatedKey,
    CustomPrompt,
    KeyInfo,
    UsageBreakdown,
)
from appliance.store import backup as backups

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 30.0
PROBE_TIMEOUT_S = 2.0

# The exception for an error status when its code names no class of its own.
_BY_STATUS: dict[int, type[AlveareError]] = {
    400: errors.InvalidRequest,
    401: errors.AuthenticationFailed,
    403: errors.PermissionDenied,
    404: errors.NotFound,
    405: errors.MethodNotAllowed,
    409: errors.Conflict,
    413: errors.PayloadTooLarge,
    429: errors.RateLimited,
    500: errors.ServerError,
    503: errors.Overloaded,
    504: errors.GenerationTimeout,
}


def _subclasses(cls: type[AlveareError]) -> Iterator[type[AlveareError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _by_code() -> dict[str, type[AlveareError]]:
    found: dict[str, type[AlveareError]] = {}
    for cls in _subclasses(AlveareError):
        if cls.code and cls.code not in found:
            found[cls.code] = cls
    return found


_BY_CODE = _by_code()


def error_from_envelope(status: int, body: Any, fallback: str = "") -> AlveareError:
    """The AlveareError for an error envelope (`{"error": {...}}`): the class whose code it names,
    else the usual one for the status, carrying the server's message, param and code."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {}
    code = error.get("code") if isinstance(error.get("code"), str) else None
    message = error.get("message") or fallback or f"The server answered HTTP {status}."
    cls = _BY_CODE.get(code or "")
    if cls is None or (status and cls.status != status):
        # status 0: an error event inside a stream, which only the server's own failures produce.
        cls = _BY_STATUS.get(status) or (errors.InvalidRequest if 400 <= status < 500 else errors.ServerError)
    exc = cls(str(message), param=error.get("param"), code=code)
    if status:
        exc.status = status
    return exc


def error_from_response(r: httpx.Response) -> AlveareError:
    try:
        body = msgspec.json.decode(r.content)
    except msgspec.DecodeError:
        body = None
    exc = error_from_envelope(r.status_code, body, r.text.strip()[:200])
    exc.headers = {k: v for k, v in r.headers.items() if k.lower() in ("retry-after", "x-request-id")}
    return exc


def root_url(url: str) -> str:
    """The server's root URL; an OpenAI-style base URL (ending in /v1) is accepted too."""
    url = url.rstrip("/")
    return url.removesuffix("/v1")


def _seg(value: str) -> str:
    return quote(value, safe="")


class AdminClient:
    """AdminOps over a running server's admin API."""

    def __init__(
        self,
        base_url: str,
        admin_key: str,
        timeout: float = DEFAULT_TIMEOUT_S,
        *,
        transport: httpx.BaseTransport | None = None,
        ca_cert: Path | str | None = None,
    ) -> None:
        self.url = root_url(base_url)
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {admin_key}"},
            timeout=timeout,
            transport=transport,
            verify=trust(ca_cert),
        )

    @property
    def online(self) -> bool:
        return True

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # plumbing ---------------------------------------------------------------
    def _unreachable(self, exc: httpx.HTTPError) -> ServerUnavailable:
        if isinstance(exc, httpx.TimeoutException):
            return ServerUnavailable(f"The Alveare server at {self.url} did not answer within {self.timeout:g} s.")
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return ServerUnavailable(
                f"The server at {self.url} offered a certificate this client does not trust; pass the "
                "appliance's certificate (--ca-cert, ALVEARE_CA_CERT)."
            )
        return ServerUnavailable(
            f"Could not reach the Alveare server at {self.url} ({type(exc).__name__}); "
            "is it running? Start it with `alveare serve`."
        )

    def _call(
        self,
        method: str,
        path: str,
        type_: type[T],
        *,
        json: Any = None,
        params: dict[str, str | None] | None = None,
        content: bytes | None = None,
    ) -> T:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        headers = {"content-type": "application/octet-stream"} if content is not None else None
        try:
            r = self._http.request(method, path, json=json, params=query, content=content, headers=headers)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if r.status_code >= 400:
            raise error_from_response(r)
        try:
            return msgspec.json.decode(r.content, type=type_)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise errors.ServerError(f"The server's answer to {method} {path} was not understood: {exc}") from None

    # plans ------------------------------------------------------------------
    def plans(self) -> list[BillingPlan]:
        return self._call("GET", "/v1/admin/plans", list[BillingPlan])

    def set_plan(self, name: str, **limits: int | float | bool) -> BillingPlan:
        return self._call("PUT", f"/v1/admin/plans/{_seg(name)}", BillingPlan, json=limits)

    # accounts ---------------------------------------------------------------
    def accounts(self, period: str | None = None) -> list[AccountOverview]:
        return self._call("GET", "/v1/admin/accounts", list[AccountOverview], params={"period": period})

    def create_account(self, name: str, plan: str = "starter") -> Account:
        return self._call("POST", "/v1/admin/accounts", Account, json={"name": name, "plan": plan})

    def set_account_plan(self, name: str, plan: str) -> Account:
        return self._call("PATCH", f"/v1/admin/accounts/{_seg(name)}", Account, json={"plan": plan})

    def set_spending_cap(self, name: str, cap: float | None) -> Account:
        return self._call("PATCH", f"/v1/admin/accounts/{_seg(name)}", Account, json={"spending_cap": cap})

    def set_account_specialists(self, name: str, specialists: list[str] | None) -> Account:
        return self._call("PATCH", f"/v1/admin/accounts/{_seg(name)}", Account, json={"specialists": specialists})

    # keys -------------------------------------------------------------------
    def keys(self, account: str | None = None) -> list[KeyInfo]:
        return self._call("GET", "/v1/admin/keys", list[KeyInfo], params={"account": account})

    def create_key(self, account: str, *, test: bool = False, admin: bool = False) -> CreatedKey:
        body = {"account": account, "test": test, **({"admin": True} if admin else {})}
        return self._call("POST", "/v1/admin/keys", CreatedKey, json=body)

    def revoke_key(self, prefix: str) -> KeyInfo:
        return self._call("DELETE", f"/v1/admin/keys/{_seg(prefix)}", KeyInfo)

    # usage ------------------------------------------------------------------
    def usage(self, account: str | None = None, period: str | None = None) -> UsageBreakdown:
        return self._call("GET", "/v1/admin/usage", UsageBreakdown, params={"account": account, "period": period})

    def alerts(self, account: str | None = None, period: str | None = None) -> list[AlertEvent]:
        return self._call("GET", "/v1/admin/alerts", list[AlertEvent], params={"account": account, "period": period})

    # specialists and custom prompts -----------------------------------------
    def specialists(self) -> list[SpecialistProfile]:
        return self._call("GET", "/v1/admin/specialists", list[SpecialistProfile])

    def set_specialist(
        self,
        name: str,
        *,
        system_prompt: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
    ) -> SpecialistProfile:
        body = {"system_prompt": system_prompt, "temperature": temperature, "top_p": top_p, "max_tokens": max_tokens}
        body = {k: v for k, v in body.items() if v is not None}
        return self._call("PUT", f"/v1/admin/specialists/{_seg(name)}", SpecialistProfile, json=body)

    def reset_specialist(self, name: str) -> SpecialistProfile:
        return self._call("DELETE", f"/v1/admin/specialists/{_seg(name)}", SpecialistProfile)

    def custom_prompts(self, account: str) -> list[CustomPrompt]:
        return self._call("GET", f"/v1/admin/accounts/{_seg(account)}/prompts", list[CustomPrompt])

    def set_custom_prompt(self, account: str, specialist: str, prompt: str) -> CustomPrompt:
        path = f"/v1/admin/accounts/{_seg(account)}/prompts/{_seg(specialist)}"
        return self._call("PUT", path, CustomPrompt, json={"system_prompt": prompt})

    def reset_custom_prompt(self, account: str, specialist: str) -> bool:
        path = f"/v1/admin/accounts/{_seg(account)}/prompts/{_seg(specialist)}"
        return self._call("DELETE", path, AdminDeleted).deleted

    # the database -----------------------------------------------------------
    def backup(self, path: str) -> BackupInfo:
        """The server takes the copy (SQLite's backup API) and streams it; it is checked and named here,
        so `path` is on this machine and written as this user."""
        dest = backups.destination(path)
        tmp = backups.scratch_file(dest)
        try:
            with self._http.stream("GET", "/v1/admin/backup") as r:
                if r.status_code >= 400:
                    r.read()
                    raise error_from_response(r)
                with tmp.open("wb") as f:
                    for chunk in r.iter_bytes(1 << 20):
                        f.write(chunk)
            return backups.finish(tmp, dest)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        except OSError as exc:
            raise backups.unwritable(dest, exc) from None
        finally:
            tmp.unlink(missing_ok=True)

    # the audit log ----------------------------------------------------------
    def audit(self, limit: int = 50, before: int | None = None) -> AuditPage:
        params = {"limit": str(limit), "before": None if before is None else str(before)}
        return self._call("GET", "/v1/admin/audit", AuditPage, params=params)

    def verify_audit(self) -> AuditVerification:
        return self._call("GET", "/v1/admin/audit/verify", AuditVerification)

    # live server ------------------------------------------------------------
    def hive_status(self) -> HiveStatus:
        """The server's hive, and every node of its cluster (`nodes`; itself alone on a single box)."""
        return self._call("GET", "/v1/hive/status", HiveStatus, params={"all": "1"})

    def set_specialist_adapter(self, name: str, path: str, scale: float = 1.0) -> AdapterStatus:
        try:
            data = Path(path).expanduser().read_bytes()
        except OSError as exc:
            raise InvalidRequest(f"cannot read the adapter file {path}: {exc.strerror}", param="file") from None
        adapter = f"/v1/admin/specialists/{_seg(name)}/adapter"
        return self._call("PUT", adapter, AdapterStatus, params={"scale": f"{scale:g}"}, content=data)

    def clear_specialist_adapter(self, name: str) -> AdapterStatus | None:
        return self._call("DELETE", f"/v1/admin/specialists/{_seg(name)}/adapter", AdapterStatus | None)  # type: ignore[arg-type]

    def try_it(self, specialist: str, prompt: str, *, max_tokens: int | None = None) -> Iterator[TryItEvent]:
        """Stream one chat request to the specialist: text pieces as they come, then one final event
        with the token counts, the latency and the time to the first token (both in ms)."""
        if not prompt.strip():
            raise InvalidRequest("Type a prompt to send.", param="prompt")
        body: dict[str, Any] = {
            "model": specialist,
            "messages": [{"role": "user", "content": prompt}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        return self._try_it(body)

    def _try_it(self, body: dict[str, Any]) -> Iterator[TryItEvent]:
        t0 = time.perf_counter()
        first: float | None = None
        finish: str | None = None
        usage: dict[str, Any] = {}
        try:
            with self._http.stream("POST", "/v1/chat/completions", json=body) as r:
                if r.status_code >= 400:
                    r.read()
                    raise error_from_response(r)
                for line in r.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    data = line[6:].strip()
                    if data == "[DONE]":
                        break
                    event = msgspec.json.decode(data)
                    if "error" in event:
                        raise error_from_envelope(0, event)
                    usage = event.get("usage") or usage
                    for choice in event.get("choices") or []:
                        finish = choice.get("finish_reason") or finish
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            if first is None:
                                first = time.perf_counter()
                            yield TryItEvent(text=text)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        except msgspec.DecodeError:
            raise errors.ServerError("The server's stream was not understood.") from None
        done = time.perf_counter()
        yield TryItEvent(
            done=True,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            latency_ms=round((done - t0) * 1000),
            time_to_first_token_ms=round(((first or done) - t0) * 1000),
            finish_reason=finish,
        )


# ---------------------------------------------------------------- choosing one
def trust(ca_cert: Path | str | None) -> ssl.SSLContext | bool:
    """What HTTPS trusts: the appliance's own certificate when given (a path to its PEM), else the
    system's certificate authorities."""
    if not ca_cert:
        return True
    path = Path(ca_cert).expanduser()
    try:
        return ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot use {path} as the appliance's certificate: {exc}") from None


def server_answers(url: str, timeout: float = PROBE_TIMEOUT_S, *, ca_cert: Path | str | None = None) -> bool:
    """True when an Alveare server answers GET {url}/health."""
    try:
        r = httpx.get(root_url(url) + "/health", timeout=timeout, verify=trust(ca_cert))
        return r.status_code == 200 and "status" in r.json()
    except (httpx.HTTPError, ValueError):
        return False
