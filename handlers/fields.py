"""Typed access to request fields: a wrong type or size is a 400 with a sentence."""

from __future__ import annotations

import math
import re
from typing import Any

from services import ServiceError

INT_RE = re.compile(r"^-?[0-9]{1,18}$")
NUMBER_RE = re.compile(r"^-?[0-9]{1,9}(?:\.[0-9]{1,9})?$")


def text(data: dict[str, Any], name: str, *, required: bool = True, max_len: int = 256,
         default: str = "") -> str:
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise ServiceError(f"missing field '{name}'")
        return default
    if not isinstance(value, str):
        raise ServiceError(f"field '{name}' must be a string")
    if len(value) > max_len:
        raise ServiceError(f"field '{name}' is longer than {max_len} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800") is valid JSON, not text
        raise ServiceError(f"field '{name}' is not valid Unicode text", 400,
                           "bad_text") from None
    return value


def integer(data: dict[str, Any], name: str, *, required: bool = True, default: int = 0,
            minimum: int | None = None, maximum: int | None = None) -> int:
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise ServiceError(f"missing field '{name}'")
        return default
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ServiceError(f"field '{name}' must be an integer")
    if isinstance(value, str):
        if not INT_RE.match(value):
            raise ServiceError(f"field '{name}' must be an integer")
        value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ServiceError(f"field '{name}' must be between {minimum} and {maximum}")
    return value


def boolean(data: dict[str, Any], name: str, default: bool = False) -> bool:
    value = data.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false",
                                                     "no", "off"):
        return value.lower() in ("1", "true", "yes", "on")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ServiceError(f"field '{name}' must be true or false")


def obj(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    if value is None:
        raise ServiceError(f"missing field '{name}'")
    if not isinstance(value, dict):
        raise ServiceError(f"field '{name}' must be an object")
    return value


def texts(data: dict[str, Any], name: str, *, max_items: int, max_len: int = 256) -> list[str]:
    """A list of strings (each checked as :func:`text`); a wrong type or size is a 400."""
    value = data.get(name)
    if not isinstance(value, list):
        raise ServiceError(f"field '{name}' must be a list of strings")
    if len(value) > max_items:
        raise ServiceError(f"field '{name}' has more than {max_items} items", 400,
                           "too_many_photos")
    return [text({name: v}, name, max_len=max_len) for v in value]


def number(data: dict[str, Any], name: str, *, reason: str = "bad_request") -> float | None:
    """An optional finite number (JSON number or decimal string); None when absent.

    ``reason``: the code of the refusal (e.g. ``bad_segment`` for a segment's times).
    """
    value = data.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str) and NUMBER_RE.match(value):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or abs(value) > 1e12 or not math.isfinite(value):  # 10**400 would not convert
        raise ServiceError(f"field '{name}' must be a number", 400, reason)
    return float(value)


def face_id(data: dict[str, Any], name: str) -> str | None:
    """An optional ``face_id`` (``/video/faces``): a string of digits or an integer."""
    value = data.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**6:
        return str(value)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 6:
        return value
    raise ServiceError(f"field '{name}' must be a face_id from /video/faces", 400,
                       "bad_face_id")
