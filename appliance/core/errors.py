"""Domain errors. Each knows the HTTP status, OpenAI error type and code it maps to.

The API layer turns any of these into the one error envelope; nothing else needs to
know about HTTP.
"""

from __future__ import annotations


class AlveareError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str | None = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}


class InvalidRequest(AlveareError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class AuthenticationFailed(AlveareError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(AlveareError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class NotFound(AlveareError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class MethodNotAllowed(AlveareError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class Conflict(AlveareError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class PayloadTooLarge(AlveareError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(AlveareError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class QuotaExceeded(AlveareError):
    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


class ServerError(AlveareError):
    status = 500
    type = "server_error"
    code = "internal_error"


class Overloaded(AlveareError):
    status = 503
    type = "server_error"
    code = "server_overloaded"


class ModelLoading(AlveareError):
    status = 503
    type = "server_error"
    code = "model_loading"


class ShuttingDown(AlveareError):
    """The server is stopping: a request it would not start, or one it stopped at the end of the grace period."""

    status = 503
    type = "server_error"
    code = "server_shutting_down"

    def __init__(self, message: str = "The server is shutting down; retry the request shortly.") -> None:
        super().__init__(message, headers={"retry-after": "1"})


class GenerationTimeout(AlveareError):
    status = 504
    type = "server_error"
    code = "timeout"


class ServerUnavailable(AlveareError):
    """The admin tools could not reach a running server (or the operation needs one)."""

    status = 503
    type = "server_error"
    code = "server_unavailable"


class StoreUnavailable(AlveareError):
    """The shared database (PostgreSQL) does not answer: nothing was done; retrying later is safe."""

    status = 503
    type = "server_error"
    code = "store_unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"retry-after": "2"})


class ConfigError(Exception):
    """A bad settings or specialists file; stops start-up with one clear line."""
