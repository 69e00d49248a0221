"""Media: download (``/static/media/<username>/<file>``) and playback
(``/video/test_resp/?path=/<username>/<file>.mp4``), streamed from disk with Range
support by Tornado's StaticFileHandler, after :meth:`MediaStore.resolve` has
checked the path and the caller's right to it."""

from __future__ import annotations

import os
import urllib.parse

import tornado.web

from handlers.base import BaseHandler
from services import ServiceError
from storage import PathRefused


class MediaHandler(BaseHandler, tornado.web.StaticFileHandler):
    inline_only = False

    def initialize(self, path: str) -> None:  # type: ignore[override]
        tornado.web.StaticFileHandler.initialize(self, path)

    def client_path(self, path: str) -> str:
        return path

    async def get(self, path: str = "", include_body: bool = True) -> None:
        user = self.require_user()
        raw = self.client_path(path)
        try:
            resolved = self.ctx.media.resolve(raw, user.username, user.is_admin)
        except PathRefused as exc:
            raise ServiceError(exc.msg, exc.code) from None
        relative = self.ctx.media.relative(resolved)
        if self.get_query_argument("download", "") in ("1", "true") and not self.inline_only:
            quoted = urllib.parse.quote(os.path.basename(relative))
            self.set_header("Content-Disposition", f"attachment; filename*=UTF-8''{quoted}")
        await tornado.web.StaticFileHandler.get(self, relative, include_body)

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
