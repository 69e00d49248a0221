"""Accounts (``/api/mgr/customers``) and membership (``/common/modifytype``)."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from handlers import fields
from handlers.base import SESSION_COOKIE, BaseHandler
from services import ServiceError


def _customer_data(body: dict[str, Any]) -> dict[str, Any]:
    """The ``data`` object, or the flat form fields that old form clients send."""
    data = body.get("data")
    if data is None:
        return {k: v for k, v in body.items() if k != "action"}
    if isinstance(data, str):  # form clients may send data as a JSON string
        try:
            data = json.loads(data)
        except ValueError:
            raise ServiceError("field 'data' is not valid JSON") from None
    if not isinstance(data, dict):
        raise ServiceError("field 'data' must be an object")
    return data


class CustomersHandler(BaseHandler):
    async def get(self) -> None:
        action = self.get_query_argument("action", "")
        if action != "list_customer":
            raise ServiceError("unknown or missing action; GET supports list_customer")
        await self.list_customer({k: self.get_query_argument(k) for k in self.request.arguments})

    async def post(self) -> None:
        body = self.body()
        action = fields.text(body, "action", max_len=32)
        handler = {"login": self.login, "add_customer": self.add_customer,
                   "logout": self.logout, "list_customer": self.list_customer,
                   "disable_customer": self.disable_customer,
                   "delete_customer": self.delete_customer,
                   "delete_account": self.delete_account}.get(action)
        if handler is None:
            raise ServiceError(f"unknown action {action!r}")
        await handler(body)

    async def login(self, body: dict[str, Any]) -> None:
        data = _customer_data(body)
        username = fields.text(data, "username", max_len=64)
        password = fields.text(data, "password", max_len=256)
        user, token = await self.ctx.accounts.login(username, password,
                                                    self.request.remote_ip or "")
        self.set_signed_cookie(SESSION_COOKIE, token, expires_days=self.ctx.settings.session_days,
                               httponly=True, samesite="Lax",
                               secure=self.ctx.settings.secure_cookies
                               or self.request.protocol == "https")
        self.rotate_xsrf()
        self.reply({"status": 0, "userdata": user.public(), "token": token,
                    "xsrf": self.xsrf_token.decode()})

    def rotate_xsrf(self) -> None:
        """A fresh XSRF token at login: one planted before it (say, by someone who had
        the browser before, or a sibling site setting cookies) must not stay valid
        for the new session. Tornado keeps the token it read from the cookie in
        ``_raw_xsrf_token``; replacing it makes ``xsrf_token`` set a new cookie."""
        for attr in ("_xsrf_token", "_raw_xsrf_token"):
            if hasattr(self, attr):
                delattr(self, attr)
        self._raw_xsrf_token = (None, os.urandom(16), time.time())
        self.xsrf_token  # noqa: B018 - sets the new _xsrf cookie

    async def disable_customer(self, body: dict[str, Any]) -> None:
        caller = self.require_user()
        data = _customer_data(body)
        await self.ctx.accounts.set_disabled(caller, fields.integer(data, "id", minimum=1),
                                             fields.boolean(data, "disabled", default=True))
        self.reply({"status": 0})

    async def delete_customer(self, body: dict[str, Any]) -> None:
        caller = self.require_user()
        data = _customer_data(body)
        await self.ctx.accounts.delete_customer(caller, fields.integer(data, "id", minimum=1))
        self.reply({"status": 0})

    async def delete_account(self, body: dict[str, Any]) -> None:
        caller = self.require_user()
        data = _customer_data(body)
        await self.ctx.accounts.delete_account(caller, fields.text(data, "password",
                                                                   max_len=256))
        self.clear_cookie(SESSION_COOKIE)
        self.reply({"status": 0})

    async def add_customer(self, body: dict[str, Any]) -> None:
        data = _customer_data(body)
        user_id = await self.ctx.accounts.register(
            fields.text(data, "username", max_len=64), fields.text(data, "password", max_len=256),
            fields.text(data, "phonenumber", required=False, max_len=32),
            fields.text(data, "address", required=False, max_len=254))
        self.reply({"status": 0, "id": user_id})

    async def logout(self, body: dict[str, Any]) -> None:
        token = self.session_token()
        if token:
            await self.ctx.accounts.logout(token)
        self.clear_cookie(SESSION_COOKIE)
        self.reply({"status": 0})

    async def list_customer(self, args: dict[str, Any]) -> None:
        caller = self.require_user()
        pagenum = fields.integer(args, "pagenum", required=False, default=1, minimum=1,
                                 maximum=10**9)
        pagesize = fields.integer(args, "pagesize", required=False, default=20, minimum=1,
                                  maximum=100)
        keywords = fields.text(args, "keywords", required=False, max_len=64)
        rows, total = await self.ctx.accounts.list_customers(caller, pagenum, pagesize, keywords)
        self.reply({"status": 0, "retlist": rows, "total": total})


class ModifyTypeHandler(BaseHandler):
    async def post(self) -> None:
        caller = self.require_user()
        body = self.body()
        await self.ctx.accounts.modify_type(
            caller, fields.integer(body, "userid", minimum=1),
            fields.integer(body, "newtype"))
        self.reply({"status": 0})


class HealthHandler(BaseHandler):
    """Liveness for load balancers and for people: 200 when the database answers."""

    async def prepare(self) -> None:  # no session lookup: must work with the database down
        self.current_user = None

    async def get(self) -> None:
        healthy, detail = await self.ctx.health()
        if not healthy:
            self.set_status(503)
            self.reply({"status": 1, "msg": detail, "code": "db_down", "db": "down"})
            return
        self.reply({"status": 0, "db": "ok"})
