"""The browser page: ``/`` (static/index.html), ``/assets/*`` and ``/api/session``."""

from __future__ import annotations

from pathlib import Path

import tornado.web

from handlers.base import BaseHandler

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

#: No inline script or style anywhere: the page's code comes from /assets only.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "media-src 'self' blob:; connect-src 'self' ws: wss:; frame-ancestors 'none'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'")


def security_headers(handler: tornado.web.RequestHandler) -> None:
    handler.set_header("Content-Security-Policy", CSP)
    handler.set_header("X-Frame-Options", "DENY")
    handler.set_header("X-Content-Type-Options", "nosniff")
    handler.set_header("Referrer-Policy", "same-origin")


class IndexHandler(BaseHandler):
    async def prepare(self) -> None:  # the page itself needs no session lookup
        self.current_user = None

    def get(self) -> None:
        security_headers(self)
        self.xsrf_token  # noqa: B018 - sets the _xsrf cookie the page sends back
        index = STATIC_DIR / "index.html"
        if not index.exists():
            self.set_status(404)
            self.reply({"status": 1, "msg": "the web page is not installed",
                        "code": "not_found"})
            return
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Cache-Control", "no-cache")
        self.finish(index.read_bytes())


class AssetHandler(BaseHandler, tornado.web.StaticFileHandler):
    """The page's files; errors in the JSON envelope like everywhere else."""

    def initialize(self, path: str) -> None:  # type: ignore[override]
        tornado.web.StaticFileHandler.initialize(self, path)

    async def prepare(self) -> None:  # public files: no session lookup
        self.current_user = None

    def set_extra_headers(self, path: str) -> None:
        security_headers(self)
        self.set_header("Cache-Control", "no-cache")


class SessionHandler(BaseHandler):
    """Who is logged in (for the page after a reload), with the user's limits."""

    async def get(self) -> None:
        xsrf = self.xsrf_token.decode()
        user = self.require_user()
        limits = self.ctx.limits(user.usertype)
        self.reply({"status": 0, "userdata": user.public(), "xsrf": xsrf,
                    **await self.ctx.files.storage(user),
                    "limits": {"upload_bytes": limits.upload_bytes,
                               "video_seconds": limits.video_seconds,
                               "upload_seconds": limits.upload_video_seconds,
                               "output_height": limits.output_height,
                               "concurrent_tasks": limits.concurrent_tasks,
                               "storage_bytes": limits.storage_bytes,
                               "unfinished_tasks": limits.unfinished_tasks}})
