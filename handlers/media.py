"""Media: download (``/static/media/<username>/<file>``) and playback
(``/video/test_resp/?path=/<username>/<file>.mp4``), streamed from disk with Range
support by Tornado's StaticFileHandler, after :meth:`MediaStore.resolve` has
checked the path and the caller's right to it."""

from __future__ import annotations

import email.utils
import os
import re
import urllib.parse
from typing import Any

import tornado.web

from handlers.base import BaseHandler
from services import ServiceError
from storage import PathRefused

#: One byte range, as browsers and players send it; anything else is ignored (RFC 9110:
#: a server may ignore a Range it does not understand and send the whole file).
RANGE_RE = re.compile(r"^bytes=(?:[0-9]{1,19}-[0-9]{0,19}|-[0-9]{1,19})$")
ENCODED_SEPARATOR_RE = re.compile(r"%(?:2f|5c|00)", re.IGNORECASE)


class MediaHandler(BaseHandler, tornado.web.StaticFileHandler):
    inline_only = False
    _content_range: str | None = None

    def initialize(self, path: str) -> None:  # type: ignore[override]
        tornado.web.StaticFileHandler.initialize(self, path)

    def client_path(self, path: str) -> str:
        return path

    def resolve(self, raw: str) -> str:
        """The checked file behind the client path, relative to this handler's root.

        Signs the caller in and maps a refused path to its error; a handler serving
        another tree overrides :meth:`locate` only.
        """
        user = self.require_user()
        try:
            return self.locate(raw, user.username, user.is_admin)
        except PathRefused as exc:
            raise ServiceError(exc.msg, exc.code) from None

    def locate(self, raw: str, username: str, is_admin: bool) -> str:
        """Override point: ``raw``'s owner-checked file relative to the root (or PathRefused)."""
        return self.ctx.media.relative(self.ctx.media.resolve(raw, username, is_admin))

    async def get(self, path: str = "", include_body: bool = True) -> None:
        self.require_user()
        if ENCODED_SEPARATOR_RE.search(self.request.path):
            raise ServiceError("encoded separators are not allowed in media paths", 400,
                               "bad_path")
        relative = self.resolve(self.client_path(path))
        self._range_policy(os.path.join(self.root, relative))
        self._refuse_unsatisfiable(os.path.join(self.root, relative))
        if self.get_query_argument("download", "") in ("1", "true") and not self.inline_only:
            quoted = urllib.parse.quote(os.path.basename(relative))
            self.set_header("Content-Disposition", f"attachment; filename*=UTF-8''{quoted}")
        await tornado.web.StaticFileHandler.get(self, relative, include_body)

    def _range_policy(self, absolute: str) -> None:
        """Drop a Range the whole file must answer instead (Tornado honours any Range).

        A malformed Range is ignored; so is one under an ``If-Range`` that no longer
        matches: a stale ETag (or a weak one) or a date other than the file's
        Last-Modified means the client's copy is another version, so it gets all of it.
        """
        headers = self.request.headers
        if "Range" not in headers:
            return
        if not RANGE_RE.match(headers["Range"].replace(" ", "")):
            del headers["Range"]
            return
        condition = headers.get("If-Range")
        if condition is None:
            return
        condition = condition.strip()
        if condition.startswith(('"', "W/")):
            # the ETag Tornado sends for this file (its content hash, cached per path)
            current = f'"{self._get_cached_version(absolute)}"'
            fresh = condition == current
        else:
            try:
                stated = email.utils.parsedate_to_datetime(condition).timestamp()
            except (TypeError, ValueError, IndexError, OverflowError):
                stated = None
            fresh = stated is not None and int(stated) == int(os.stat(absolute).st_mtime)
        if not fresh:
            del headers["Range"]

    def _refuse_unsatisfiable(self, absolute: str) -> None:
        """A range that starts past the end is 416 in the JSON envelope (Tornado's own
        answer has an empty text body), with ``Content-Range: bytes */<size>``."""
        header = self.request.headers.get("Range")
        if header is None:
            return  # _range_policy left only well-formed single ranges
        first, _, last = header.replace(" ", "")[len("bytes="):].partition("-")
        size = os.path.getsize(absolute)
        if first == "":  # a suffix: the last N bytes; only N = 0 is unsatisfiable
            bad = int(last) == 0
        else:
            bad = int(first) >= size or (last != "" and int(last) < int(first))
        if bad:
            self._content_range = f"bytes */{size}"
            raise ServiceError("the requested range is outside the file", 416)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if self._content_range is not None:  # send_error cleared the headers set before
            self.set_header("Content-Range", self._content_range)
        super().write_error(status_code, **kwargs)

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", "private, max-age=0, must-revalidate")
        self.set_header("X-Content-Type-Options", "nosniff")


class PlaybackHandler(MediaHandler):
    inline_only = True

    def client_path(self, path: str) -> str:
        value = self.get_query_argument("path", "")
        if not value.startswith("/") or not value.endswith(".mp4"):
            raise ServiceError("path must name an .mp4 file: /<username>/<file>.mp4")
        return value[1:]

    def get_content_type(self) -> str:
        return "video/mp4"
