"""Business logic between the HTTP handlers and storage: what may happen, and to whom.

Services take plain values and return plain values; they raise :class:`ServiceError`
with a user-facing sentence, the HTTP-style code that fits the failure and a stable
snake_case ``reason`` (the envelope's ``code``) that clients and the page can key on.
"""

from __future__ import annotations

#: The reason a refusal gets when the raiser names none: one per HTTP status, so that
#: every envelope carries a ``code`` even where no finer cause is worth naming.
DEFAULT_REASONS = {
    400: "bad_request", 401: "not_logged_in", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 410: "gone", 412: "precondition_failed",
    413: "too_large", 415: "unsupported_media_type", 416: "range_not_satisfiable",
    423: "locked", 429: "over_quota", 500: "internal_error", 503: "unavailable",
    507: "disk_full",
}


def default_reason(status: int) -> str:
    """The generic ``code`` of an HTTP status (``internal_error`` for unknown 5xx)."""
    return DEFAULT_REASONS.get(status, "internal_error" if status >= 500 else "bad_request")


class ServiceError(Exception):
    """A refusal the client should see: ``msg`` is a sentence, ``code`` an HTTP status,
    ``reason`` the stable snake_case name of the cause (defaults to one per status)."""

    def __init__(self, msg: str, code: int = 400, reason: str | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.code = code
        self.reason = reason or default_reason(code)
