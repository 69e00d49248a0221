"""The user's files: ``GET /video/files``, ``POST /video/delete_file`` and the thumbnails
(``/static/thumbs/<username>/<file>.jpg``, owner or administrator only)."""

from __future__ import annotations

from handlers import fields
from handlers.base import BaseHandler
from handlers.media import MediaHandler


class FileListHandler(BaseHandler):
    async def get(self) -> None:
        user = self.require_user()
        kind = self.get_query_argument("kind", None)
        self.reply({"status": 0, "files": await self.ctx.files.list(user, kind or None)})


class DeleteFileHandler(BaseHandler):
    async def post(self) -> None:
        body = self.body()
        user = self.require_user()
        await self.ctx.files.delete(user, fields.text(body, "filepath", max_len=200))
        self.reply({"status": 0})


class ThumbnailHandler(MediaHandler):
    """Thumbnails are media like the files they show: streamed from disk, owner-checked."""

    def locate(self, raw: str, username: str, is_admin: bool) -> str:
        resolved = self.ctx.media.resolve_thumb(raw, username, is_admin)
        return str(resolved.relative_to(self.ctx.media.thumbs))

    def get_content_type(self) -> str:
        return "image/jpeg"
