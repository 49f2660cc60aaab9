"""`GET /schema`: the API's operations on one plain HTML page, made on the server from the OpenAPI
schema, beside `/schema/openapi.json`.

Litestar's own pages (Redoc, Swagger UI, Stoplight Elements, RapiDoc) load their scripts and fonts
from public CDNs, which an on-prem or air-gapped appliance must neither depend on nor call out to.
This page loads nothing: no script, no font, no image, and a Content-Security-Policy that forbids
them; an OpenAPI viewer the admin runs locally can read the JSON.
"""

from __future__ import annotations

from html import escape
from typing import Any

from litestar import Request
from litestar.openapi.plugins import OpenAPIRenderPlugin

_METHODS = ("get", "post", "put", "patch", "delete")
_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;color:#222}"
    "table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .6rem;"
    "border-bottom:1px solid #ddd;vertical-align:top}code{font-size:.95em}.m{font-weight:600}"
)


def _type_name(media: dict[str, Any] | None) -> str:
    """The component a body or an answer refers to (`ChatCompletionRequest`), or '' when it names none."""
    ref = ((media or {}).get("application/json") or {}).get("schema", {}).get("$ref", "")
    return ref.rsplit("/", 1)[-1]


class SchemaPage(OpenAPIRenderPlugin):
    def __init__(self) -> None:
        super().__init__(path="/")

    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:
        info = openapi_schema.get("info", {})
        title = escape(f"{info.get('title', 'API')} {info.get('version', '')}".strip())
        json_url = escape(self.get_openapi_json_route(request))
        rows = []
        for path, item in openapi_schema.get("paths", {}).items():
            for method in _METHODS:
                operation = item.get(method)
                if not isinstance(operation, dict):
                    continue
                body = _type_name(operation.get("requestBody", {}).get("content"))
                answers = operation.get("responses", {})
                success = next((a for status, a in answers.items() if status.startswith("2")), {})
                rows.append(
                    f"<tr><td class=m>{method.upper()}</td><td><code>{escape(path)}</code></td>"
                    f"<td>{escape(operation.get('summary', ''))}</td><td>{escape(body)}</td>"
                    f"<td>{escape(_type_name(success.get('content')))}</td></tr>"
                )
        page = (
            "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            "<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; style-src 'unsafe-inline'\">"
            f"<title>{title}</title><style>{_STYLE}</style></head><body>"
            f'<h1>{title}</h1><p>The OpenAPI schema: <a href="{json_url}">{json_url}</a>. Its '
            "<code>components</code> give each request body's and answer's fields; every error has the "
            "envelope <code>ErrorEnvelope</code>.</p>"
            "<table><tr><th>method</th><th>path</th><th>operation</th><th>request body</th><th>answer</th></tr>"
            + "".join(rows)
            + "</table></body></html>"
        )
        return page.encode()
