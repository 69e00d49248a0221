"""Exceptions the engine raises to its callers.

Kept in a module of their own so that every stage can raise them without
importing the heavy pipeline, and so the service can catch them without
importing OpenCV or dlib.
"""


class EngineError(Exception):
    """User-facing failure; ``str(e)`` is a clear one-line sentence."""


class Cancelled(EngineError):
    """The caller asked to stop (``should_cancel`` returned True)."""

    def __init__(self, message: str = "the task was cancelled") -> None:
        super().__init__(message)


class ProbeRefused(EngineError):
    """An upload refused by a probe before (or instead of) decoding it.

    ``reason`` is a stable snake_case name of the cause; ``oversize`` tells the
    caller whether the file is refused for what it claims to need (dimensions,
    sample counts, length, memory: "too large") rather than for what it is.
    """

    def __init__(self, message: str, reason: str, oversize: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.oversize = oversize
