"""The base handler: authentication, XSRF policy, body parsing and the JSON envelope.

Every failure leaves as ``{"status": 1, "msg": "<sentence>"}`` with a fitting HTTP
code; a handler with another envelope (view_task) overrides :meth:`envelope`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import tornado.web

from services import ServiceError, default_reason
from services.accounts import User
from services.context import AppContext
from storage import DatabaseError, PathRefused

log = logging.getLogger(__name__)

SESSION_COOKIE = "session"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class BaseHandler(tornado.web.RequestHandler):
    current_user: User | None

    @property
    def ctx(self) -> AppContext:
        return self.application.settings["ctx"]

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Referrer-Policy", "same-origin")
        self.set_header("Cache-Control", "no-store")

    # -- authentication -------------------------------------------------------------
    def bearer_token(self) -> str | None:
        auth = self.request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def session_token(self) -> str | None:
        """The caller's token: the bearer header if present, else the signed cookie."""
        bearer = self.bearer_token()
        if bearer is not None:
            return bearer
        value = self.get_signed_cookie(SESSION_COOKIE,
                                       max_age_days=self.ctx.settings.session_days)
        return value.decode() if value else None

    async def prepare(self) -> None:
        token = self.session_token()
        self.current_user = await self.ctx.accounts.authenticate(token) if token else None

    def check_xsrf_cookie(self) -> None:
        """XSRF applies to cookie-authenticated requests only: a bearer token is not
        sent by browsers on their own, and a request without a session cookie has no
        authority for a forged request to borrow."""
        if self.bearer_token() is not None or not self.get_cookie(SESSION_COOKIE):
            return
        super().check_xsrf_cookie()

    def require_user(self) -> User:
        if self.current_user is None:
            raise ServiceError("please log in first", 401)
        return self.current_user

    # -- input ----------------------------------------------------------------------
    def body(self) -> dict[str, Any]:
        """The request body as a dict, from JSON or form data."""
        ctype = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        raw = self.request.body or b""
        if ctype == "application/x-www-form-urlencoded" and raw.lstrip().startswith(b"{"):
            ctype = "application/json"  # a JSON body sent with a form header (curl -d)
        if ctype in FORM_TYPES:
            return {name: self.get_body_argument(name) for name in self.request.body_arguments}
        if ctype in ("application/json", "text/json") or (not ctype and raw.strip()):
            try:
                data = json.loads(raw or b"{}")
            except RecursionError:  # nested 100 000 deep: refused, not a crash
                raise ServiceError("request body is nested too deeply", 400,
                                   "bad_json") from None
            except (ValueError, UnicodeDecodeError):
                raise ServiceError("request body is not valid JSON", 400, "bad_json") from None
            if not isinstance(data, dict):
                raise ServiceError("request body must be a JSON object")
            return data
        if not raw.strip():
            return {}
        raise ServiceError(f"unsupported content type {ctype!r}; send JSON or form data", 415)

    # -- output ---------------------------------------------------------------------
    def envelope(self, msg: str, reason: str = "bad_request") -> dict[str, Any]:
        return {"status": 1, "msg": msg, "code": reason}

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        reason = None
        if isinstance(exc, ServiceError):
            status_code, msg, reason = exc.code, exc.msg, exc.reason
        elif isinstance(exc, PathRefused):
            status_code, msg = exc.code, exc.msg
        elif isinstance(exc, DatabaseError):
            status_code, msg = 503, "the database is unavailable; try again shortly"
        elif isinstance(exc, tornado.web.HTTPError) and exc.log_message and status_code < 500:
            msg = exc.log_message % exc.args if exc.args else exc.log_message
            if status_code == 403 and "origin" in msg.lower():
                reason = "cross_site"
        elif status_code >= 500:
            msg = "internal server error"
        else:
            msg = self._reason
        self.set_status(status_code)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(self.envelope(msg, reason or default_reason(status_code)),
                               ensure_ascii=False))

    def log_exception(self, typ, value, tb) -> None:  # type: ignore[no-untyped-def]
        if isinstance(value, ServiceError | PathRefused):
            log.info("%s %s -> %d %s", self.request.method, self.request.uri, value.code,
                     value.msg)
        elif isinstance(value, DatabaseError):
            log.error("database error on %s %s: %s", self.request.method, self.request.uri,
                      value)
        else:
            super().log_exception(typ, value, tb)

    def reply(self, payload: dict[str, Any]) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(payload, ensure_ascii=False, default=str))
