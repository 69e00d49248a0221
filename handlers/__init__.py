"""HTTP and WebSocket handlers, and the route table that wires them to the context."""

from __future__ import annotations

import tornado.web

from handlers.base import BaseHandler
from handlers.customers import CustomersHandler, HealthHandler, ModifyTypeHandler
from handlers.faces import FacesHandler, PreviewHandler
from handlers.files import DeleteFileHandler, FileListHandler, ThumbnailHandler
from handlers.media import MediaHandler, PlaybackHandler
from handlers.metrics import MetricsHandler
from handlers.page import STATIC_DIR, AssetHandler, IndexHandler, SessionHandler
from handlers.tasks import (
    CancelTaskHandler,
    DeleteTaskHandler,
    FaceSwapHandler,
    RetryTaskHandler,
    TaskListHandler,
    TaskSocket,
    ViewTaskHandler,
)
from handlers.upload import TusHandler, UploadHandler
from services import ServiceError
from services.context import AppContext


class NotFoundHandler(BaseHandler):
    """Unknown routes get the JSON envelope too, not Tornado's HTML page."""

    async def prepare(self) -> None:
        raise ServiceError("no such route", 404)


def make_app(ctx: AppContext, cookie_secret: str) -> tornado.web.Application:
    routes = [
        (r"/api/mgr/customers/?", CustomersHandler),
        (r"/common/modifytype/?", ModifyTypeHandler),
        (r"/healthz", HealthHandler),
        (r"/metrics", MetricsHandler),
        (r"/api/session", SessionHandler),
        (r"/video/upload/?", UploadHandler),
        (r"/video/uploads/?(?P<upload_id>[^/]*)", TusHandler),
        (r"/video/faceswap/?", FaceSwapHandler),
        (r"/video/view_task/?", ViewTaskHandler),
        (r"/video/tasks/?", TaskListHandler),
        (r"/video/cancel_task/?", CancelTaskHandler),
        (r"/video/delete_task/?", DeleteTaskHandler),
        (r"/video/retry_task/?", RetryTaskHandler),
        (r"/video/files/?", FileListHandler),
        (r"/video/delete_file/?", DeleteFileHandler),
        (r"/video/faces/?", FacesHandler),
        (r"/video/preview/?", PreviewHandler),
        (r"/ws/tasks", TaskSocket),
        (r"/static/media/(.*)", MediaHandler, {"path": str(ctx.media.root)}),
        (r"/video/test_resp/?()", PlaybackHandler, {"path": str(ctx.media.root)}),
        (r"/static/thumbs/(.*)", ThumbnailHandler, {"path": str(ctx.media.thumbs)}),
        (r"/", IndexHandler),
        (r"/assets/(.*)", AssetHandler, {"path": str(STATIC_DIR)}),
    ]
    return tornado.web.Application(
        routes,
        ctx=ctx,
        cookie_secret=cookie_secret,
        xsrf_cookies=True,
        # Tornado refuses cross-site state-changing requests (Sec-Fetch-Site / Origin):
        # a forged login form from another site is a 403 even without any cookie.
        cross_origin_protection=True,
        xsrf_cookie_kwargs={"samesite": "Strict", "secure": ctx.settings.secure_cookies},
        default_handler_class=NotFoundHandler,
        debug=ctx.settings.debug,
        websocket_ping_interval=20,
    )
