"""HTTP and WebSocket handlers, and the route table that wires them to the context."""

from __future__ import annotations

import tornado.web

from handlers.base import BaseHandler
from handlers.customers import CustomersHandler, HealthHandler, ModifyTypeHandler
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
    ]
    return tornado.web.Application(
        routes,
        ctx=ctx,
        cookie_secret=cookie_secret,
        xsrf_cookies=True,
        xsrf_cookie_kwargs={"samesite": "Strict", "secure": ctx.settings.secure_cookies},
        default_handler_class=NotFoundHandler,
        debug=ctx.settings.debug,
    )
