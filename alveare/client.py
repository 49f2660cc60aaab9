"""alveare.Client: the synchronous client of an Alveare server, on one pooled httpx connection."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import httpx

from alveare import _shared as s
from alveare.config import resolve
from alveare.errors import AlveareError, error_from_response
from alveare.types import (
    ChatCompletion,
    Health,
    HiveStatus,
    InferResponse,
    ModelList,
    SpecialistList,
    SpecialistView,
    UsageReport,
)

T = TypeVar("T")


class Specialists:
    """client.specialists: the account's view of the specialists and its own system prompts."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self) -> SpecialistList:
        """Every specialist with the system prompt in force for this account."""
        return self._client._request("GET", "/v1/specialists", SpecialistList)

    def update(self, name: str, *, system_prompt: str) -> SpecialistView:
        """Set this account's own system prompt for a specialist (professional and scale plans)."""
        body = {"system_prompt": system_prompt}
        return self._client._request("PUT", f"/v1/specialists/{s.seg(name)}", SpecialistView, json=body)

    def reset(self, name: str) -> SpecialistView:
        """Go back to the specialist's default system prompt."""
        return self._client._request("DELETE", f"/v1/specialists/{s.seg(name)}", SpecialistView)


class Client:
    """A client of one Alveare server.

    api_key and base_url default to ALVEARE_API_KEY and ALVEARE_BASE_URL, then to the config file
    (see alveare.config), then base_url to http://127.0.0.1:8080. Failed requests are retried up to
    `max_retries` times (see alveare._shared.retry_wait); errors are alveare.errors exceptions.
    Over HTTPS, ca_cert (else ALVEARE_CA_CERT, else the config file's ca_cert) is the appliance's own
    certificate to trust (the PEM `alveare init` made); without it the system's authorities are used.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | httpx.Timeout = s.DEFAULT_TIMEOUT_S,
        max_retries: int = s.DEFAULT_MAX_RETRIES,
        *,
        http_client: httpx.Client | None = None,
        ca_cert: str | None = None,
    ) -> None:
        config = resolve(api_key, base_url, ca_cert=ca_cert)
        self.api_key = config.api_key
        self.base_url = config.base_url
        self.ca_cert = config.ca_cert
        self.timeout = timeout
        self.max_retries = max_retries
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout, verify=s.trust(config.ca_cert))
        self.specialists = Specialists(self)

    # lifecycle --------------------------------------------------------------
    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # plumbing ---------------------------------------------------------------
    def _send(self, method: str, path: str, *, json: Any = None, auth: bool = True, stream: bool = False):
        """The response to a request, after any retries; an error status raises. With stream=True the
        caller must close the response."""
        if auth and not self.api_key:
            raise s.missing_key()
        request = self._http.build_request(
            method, self.base_url + path, json=json, headers=s.default_headers(self.api_key if auth else None)
        )
        attempt = 0
        while True:
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                error: AlveareError = s.transport_error(exc, self.base_url, self.timeout)
            else:
                if response.status_code < 400:
                    return response
                response.read()
                response.close()
                error = error_from_response(response.status_code, response.content, response.headers)
            wait = s.retry_wait(error, attempt, self.max_retries)
            if wait is None:
                raise error
            time.sleep(wait)
            attempt += 1

    def _request(self, method: str, path: str, type_: type[T], *, json: Any = None, auth: bool = True) -> T:
        response = self._send(method, path, json=json, auth=auth)
        return s.decode(response.content, type_, f"{method} {path}")

    # the API ----------------------------------------------------------------
    def infer(
        self, specialist: str, prompt: str, max_tokens: int | None = None, temperature: float | None = None
    ) -> InferResponse:
        """POST /v1/infer: a specialist's answer to a prompt (.result, .tokens_used, .latency_ms, ...)."""
        body = s.infer_body(specialist, prompt, max_tokens, temperature)
        return self._request("POST", "/v1/infer", InferResponse, json=body)

    def chat(
        self,
        specialist: str,
        messages: str | Sequence[s.Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | list[str] | None = None,
    ) -> ChatCompletion:
        """POST /v1/chat/completions. `specialist` is any model name the server accepts (summarise,
        alveare-summarise, gpt-4o, ...); `messages` a list of {role, content} or one user message."""
        body = s.chat_body(
            specialist, messages, max_tokens=max_tokens, temperature=temperature, top_p=top_p, stop=stop, stream=False
        )
        return self._request("POST", "/v1/chat/completions", ChatCompletion, json=body)

    def chat_stream(
        self,
        specialist: str,
        messages: str | Sequence[s.Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | list[str] | None = None,
    ) -> Iterator[str]:
        """chat(), streamed: yields the answer's text as it arrives. The request is sent (and retried)
        when iteration starts; an error before the first piece raises from the first next()."""
        body = s.chat_body(
            specialist, messages, max_tokens=max_tokens, temperature=temperature, top_p=top_p, stop=stop, stream=True
        )
        response = self._send("POST", "/v1/chat/completions", json=body, stream=True)
        try:
            for line in response.iter_lines():
                text = s.sse_text(line)
                if text is s.DONE:
                    return
                if text:
                    yield text  # type: ignore[misc]
        except httpx.TransportError as exc:
            raise s.transport_error(exc, self.base_url, self.timeout) from None
        finally:
            response.close()

    def models(self) -> ModelList:
        """GET /v1/models: the specialists this account may use, as models (.data)."""
        return self._request("GET", "/v1/models", ModelList)

    def usage(self) -> UsageReport:
        """GET /v1/usage: this account's requests and tokens in the current period."""
        return self._request("GET", "/v1/usage", UsageReport)

    def health(self) -> Health:
        """GET /health (no key needed): status, version, uptime, whether the model is loaded."""
        return self._request("GET", "/health", Health, auth=False)

    def hive_status(self, all_nodes: bool = False) -> HiveStatus:
        """GET /v1/hive/status (an admin key): model, device, slots, queue, throughput, cache; with
        all_nodes, every node of the cluster too (.nodes)."""
        return self._request("GET", "/v1/hive/status" + ("?all=1" if all_nodes else ""), HiveStatus)
