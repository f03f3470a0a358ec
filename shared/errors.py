"""Domain errors. Raised anywhere; rendered in exactly one place (web.middlewares.error_middleware)."""
from __future__ import annotations

from typing import Any, Mapping


class AppError(Exception):
    status = 500
    slug = "internal-error"
    title = "Internal Server Error"

    def __init__(self, detail: str | None = None, *, errors: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors
        self.headers = dict(headers or {})


class BadRequest(AppError):
    status, slug, title = 400, "bad-request", "Bad Request"


class Unauthorized(AppError):
    status, slug, title = 401, "unauthorized", "Unauthorized"

    def __init__(self, detail: str | None = None, *, error: str = "invalid_token") -> None:
        super().__init__(detail or "Authentication required",
                         headers={"WWW-Authenticate": f'Bearer realm="taskdeck", error="{error}"'})


class Forbidden(AppError):
    status, slug, title = 403, "forbidden", "Forbidden"


class NotFound(AppError):
    status, slug, title = 404, "not-found", "Not Found"


class Conflict(AppError):
    status, slug, title = 409, "conflict", "Conflict"


class Gone(AppError):
    status, slug, title = 410, "gone", "Gone"


class PreconditionFailed(AppError):
    status, slug, title = 412, "precondition-failed", "Precondition Failed"


class PayloadTooLarge(AppError):
    status, slug, title = 413, "payload-too-large", "Payload Too Large"


class UnsupportedMediaType(AppError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported Media Type"


class ValidationFailed(AppError):
    """422. ``errors`` may be nested (marshmallow's shape); the response always carries it flat."""

    status, slug, title = 422, "validation-error", "Unprocessable Content"

    def __init__(self, errors: Mapping[Any, Any], detail: str = "The request has invalid fields") -> None:
        super().__init__(detail, errors=flatten_errors(errors))


class RateLimited(AppError):
    status, slug, title = 429, "rate-limited", "Too Many Requests"


class ServiceUnavailable(AppError):
    status, slug, title = 503, "service-unavailable", "Service Unavailable"


def field_error(field: str, message: str) -> ValidationFailed:
    return ValidationFailed({field: [message]})


def flatten_errors(errors: Any, prefix: str = "") -> dict[str, list[str]]:
    """The contract's one error shape, ``{"dotted.path": ["message", ...]}``, from any nesting.

    List items are numbered (``tags.0``), nested objects dotted (``filters.status.1``); a nested
    ``_schema`` (the object as a whole) belongs to its parent's path; a top-level one stays ``_schema``.
    """
    flat: dict[str, list[str]] = {}
    if isinstance(errors, Mapping):
        for key, value in errors.items():
            name = str(key)
            path = prefix if name == "_schema" and prefix else f"{prefix}.{name}" if prefix else name
            for field, messages in flatten_errors(value, path).items():
                flat.setdefault(field, []).extend(messages)
        return flat
    messages = errors if isinstance(errors, (list, tuple)) else [errors]
    for message in messages:
        if isinstance(message, Mapping):
            for field, nested in flatten_errors(message, prefix).items():
                flat.setdefault(field, []).extend(nested)
        else:
            flat.setdefault(prefix or "_schema", []).append(str(message))
    return flat
