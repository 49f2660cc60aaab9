"""The OpenAPI schema, made true to what the server reads and sends.

The handlers decode their bodies themselves (for errors that name the parameter) and return encoded
bytes, so Litestar's generated schema has no request bodies, says every answer is a JSON string and
every error its own validation shape. Here each operation gets its request body's JSON schema (from
the msgspec wire types the handler decodes), its success the media type it really has, with the JSON
schema of the type it encodes where _ANSWERS names one (else any JSON), and every error the one
envelope all errors share. The TypeScript SDK's wire types are generated from this schema
(sdk/typescript/src/openapi.ts), so what it says of an answer is what a client is typed against.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Litestar
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Reference,
    RequestBody,
    Schema,
)
from litestar.routes import HTTPRoute
from litestar.types import Message, Scope

from appliance.core import protocol as p

# The body each operation decodes (appliance.api.errors.decode_body).
_BODIES: dict[tuple[str, str], type] = {
    ("post", "/v1/chat/completions"): p.ChatCompletionRequest,
    ("post", "/v1/completions"): p.CompletionRequest,
    ("post", "/v1/infer"): p.InferRequest,
    ("put", "/v1/specialists/{name}"): p.SystemPromptUpdate,
    ("put", "/v1/admin/plans/{name}"): p.AdminPlanUpdate,
    ("post", "/v1/admin/accounts"): p.AdminAccountCreate,
    ("patch", "/v1/admin/accounts/{name}"): p.AdminAccountUpdate,
    ("put", "/v1/admin/accounts/{name}/prompts/{specialist}"): p.SystemPromptUpdate,
    ("post", "/v1/admin/keys"): p.AdminKeyCreate,
    ("put", "/v1/admin/specialists/{name}"): p.AdminSpecialistUpdate,
}

# The type each operation's JSON success encodes (the SDKs decode the same types); the admin routes'
# records and the streams are left open.
_ANSWERS: dict[tuple[str, str], type] = {
    ("get", "/health"): p.Health,
    ("post", "/v1/chat/completions"): p.ChatCompletion,
    ("post", "/v1/completions"): p.Completion,
    ("post", "/v1/responses"): p.Response,
    ("get", "/v1/models"): p.ModelList,
    ("get", "/v1/models/{model_id}"): p.Model,
    ("post", "/v1/infer"): p.InferResponse,
    ("get", "/v1/model/info"): p.ModelInfo,
    ("get", "/v1/usage"): p.UsageReport,
    ("get", "/v1/specialists"): p.SpecialistList,
    ("put", "/v1/specialists/{name}"): p.SpecialistView,
    ("delete", "/v1/specialists/{name}"): p.SpecialistView,
    ("get", "/v1/hive/status"): p.HiveStatus,
}

# What the few non-JSON successes are sent as.
_MEDIA_TYPES = {
    "/metrics": "text/plain",
    "/v1/admin/backup": "application/vnd.sqlite3",
}
# Every error status a client can cause, and the server's own (503 overloaded or shutting down, 504).
_ERRORS = {
    400: "The request is invalid: a bad parameter (named in `param`) or a body that is not JSON.",
    401: "Missing, malformed, unknown or revoked API key.",
    403: "Not allowed for this key, its account or its plan.",
    404: "Unknown URL, model or resource.",
    405: "Method not allowed on this URL.",
    409: "Conflicts with the current state.",
    413: "The request body is too large.",
    415: "Unsupported media type.",
    429: "A rate limit, the spending cap or too many refused keys.",
    503: "Overloaded, loading the model or shutting down; retry after `retry-after`.",
    504: "The generation did not finish within the server's time limit.",
}


def _string(nullable: bool = False) -> Schema:
    return Schema(type=[OpenAPIType.STRING, OpenAPIType.NULL] if nullable else OpenAPIType.STRING)


ERROR_ENVELOPE = Schema(
    type=OpenAPIType.OBJECT,
    required=["error"],
    properties={
        "error": Schema(
            type=OpenAPIType.OBJECT,
            required=["message", "type", "param", "code", "request_id"],
            properties={
                "message": _string(),
                "type": _string(),
                "param": _string(nullable=True),
                "code": _string(nullable=True),
                "request_id": _string(nullable=True),
            },
        )
    },
)


def document(app: Litestar) -> None:
    """Rewrite the app's generated schema in place (Litestar builds it once and serves that object)."""
    schema = app.openapi_schema
    bodies, components = _body_schemas()
    answers, answer_components = _answer_schemas()
    components = {**components, **answer_components}
    schema.components = schema.components or Components()
    schema.components.schemas = {**(schema.components.schemas or {}), **components, "ErrorEnvelope": ERROR_ENVELOPE}
    # Every operation's errors refer to one shared answer per status, not a copy each (which would make
    # the schema, and the client types generated from it, mostly repetition).
    envelope = {"application/json": OpenAPIMediaType(schema=Reference(ref="#/components/schemas/ErrorEnvelope"))}
    schema.components.responses = {
        f"Error{status}": OpenAPIResponse(description=description, content=envelope)
        for status, description in _ERRORS.items()
    }
    for path, item in (schema.paths or {}).items():
        for method in ("get", "head", "post", "put", "patch", "delete"):
            operation = getattr(item, method, None)
            if operation is None or operation.responses is None:
                continue
            if operation.parameters:
                # Litestar lists a path's parameters in no fixed order from one start to the next; a schema
                # that changes with nothing changed would make the SDK's generated types change too.
                operation.parameters.sort(
                    key=lambda param: (str(getattr(param, "param_in", "")), getattr(param, "name", ""))
                )
            if (method, path) in _BODIES:
                operation.request_body = RequestBody(
                    content={"application/json": OpenAPIMediaType(schema=bodies[_BODIES[method, path]])},
                    required=True,
                )
            responses = operation.responses
            for status, response in list(responses.items()):
                if not status.startswith("2") or not isinstance(response, OpenAPIResponse):
                    responses.pop(status)
                    continue
                # Litestar documents a file's Last-Modified as an ISO date-time; it is an HTTP date.
                response.headers = None
                if method == "head":
                    response.content = None
                else:
                    media = _MEDIA_TYPES.get(path, "application/json")
                    answer = _ANSWERS.get((method, path))
                    body = answers[answer] if answer is not None else Schema()
                    # A stream (`"stream": true`) is Server-Sent Events.
                    media_types = {media: OpenAPIMediaType(schema=body)}
                    if path in ("/v1/chat/completions", "/v1/completions", "/v1/responses"):
                        media_types["text/event-stream"] = OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING))
                    response.content = media_types
            for status in _ERRORS:
                responses[str(status)] = Reference(ref=f"#/components/responses/Error{status}")


def _body_schemas() -> tuple[dict[type, Any], dict[str, Any]]:
    """msgspec's JSON schemas of the body types (plain dicts, which Litestar serialises as they are),
    with their shared parts as components."""
    types = sorted(set(_BODIES.values()), key=lambda t: t.__name__)
    refs, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    return dict(zip(types, refs, strict=True)), components


def _answer_schemas() -> tuple[dict[type, Any], dict[str, Any]]:
    """msgspec's JSON schemas of the answer types, as _body_schemas. The server sends every field of
    an answer (none is left out for being its default, but where a Struct says omit_defaults), so
    each is required here: a client's type then has no optional field the server always sends."""
    types = sorted(set(_ANSWERS.values()), key=lambda t: t.__name__)
    refs, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    for name, schema in components.items():
        struct = getattr(p, name, None)
        config = getattr(struct, "__struct_config__", None)
        if config is None or config.omit_defaults or "properties" not in schema:
            continue
        schema["required"] = list(schema["properties"])
    return dict(zip(types, refs, strict=True)), components


async def complete_allow(message: Message, scope: Scope) -> None:
    """before_send hook: an OPTIONS answer's Allow lists every method of its URL. Litestar's automatic
    OPTIONS handler lists only those of the handlers registered before it (GET alone where a POST
    shares the path), which a client, or the schema's checker, takes as the URL's whole list."""
    if message["type"] != "http.response.start" or scope.get("method") != "OPTIONS":
        return
    template = scope.get("path_template")
    routes = [r for r in scope["app"].routes if isinstance(r, HTTPRoute) and r.path_format == template]
    if not routes:
        return
    allow = ", ".join(sorted(routes[0].methods)).encode()
    message["headers"] = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"] + [(b"allow", allow)]
