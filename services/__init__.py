"""Business logic between the HTTP handlers and storage: what may happen, and to whom.

Services take plain values and return plain values; they raise :class:`ServiceError`
with a user-facing sentence and the HTTP-style code that fits the failure.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A refusal the client should see: ``msg`` is a sentence, ``code`` an HTTP status."""

    def __init__(self, msg: str, code: int = 400) -> None:
        super().__init__(msg)
        self.msg = msg
        self.code = code
