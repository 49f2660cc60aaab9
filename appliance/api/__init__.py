"""The HTTP API: Litestar app, auth, controllers and error mapping."""

from appliance.api.app import create_app

__all__ = ["create_app"]
