"""The base handler: authentication, XSRF policy, body parsing and the JSON envelope.

Every failure leaves as ``{"status": 1, "msg": "<sentence>"}`` with a fitting HTTP
code; a handler with another envelope (view_task) overrides :meth:`envelope`.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import tornado.httputil
import tornado.web

from services import ServiceError, default_reason
from services.accounts import User
from services.context import AppContext
from storage import DatabaseError, PathRefused

log = logging.getLogger(__name__)

SESSION_COOKIE = "session"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
DIGITS_RE = re.compile(r"^[0-9]{1,19}$")


@tornado.web.stream_request_body
class BaseHandler(tornado.web.RequestHandler):
    """Every handler streams its body, so that an oversized one is a 413 in the JSON
    envelope (Tornado's own cap answers a bare 400 before any handler runs). JSON and
    form bodies are collected here up to ``settings.body_bytes``; the upload handlers
    set :attr:`small_body` False and take the stream themselves."""

    current_user: User | None
    small_body = True
    _body_chunks: list[bytes] | None = None
    _body_size = 0
    _body_refused = False
    _xsrf_deferred = False

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
        if self.small_body:
            self.start_small_body()
        token = self.session_token()
        self.current_user = await self.ctx.accounts.authenticate(token) if token else None

    def check_xsrf_cookie(self) -> None:
        """XSRF applies to cookie-authenticated requests only: a bearer token is not
        sent by browsers on their own, and a request without a session cookie has no
        authority for a forged request to borrow. (Cross-site requests without one,
        such as a forged login form, are refused by Tornado's cross-origin protection.)

        The token may come in a form field; the body is not read yet when Tornado
        calls this, so that case is checked by :meth:`body` once it is.
        """
        if self.bearer_token() is not None or not self.get_cookie(SESSION_COOKIE):
            return
        ctype = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        has_header = self.request.headers.get("X-Xsrftoken") or \
            self.request.headers.get("X-Csrftoken")
        if not has_header and ctype in FORM_TYPES and self.small_body:
            self._xsrf_deferred = True
            return
        super().check_xsrf_cookie()

    # -- small bodies -----------------------------------------------------------------
    def start_small_body(self) -> None:
        """Refuse a declared body over the limit before reading it; let Tornado's own
        cap sit far above ours so that ours answers (413, envelope) first: Tornado counts
        a chunked body's chunks by their declared size before handing them on, and
        answers a bare 400 past its cap. Memory is bounded by :meth:`data_received`,
        which refuses at the limit (the connection then closes)."""
        limit = self.ctx.settings.body_bytes
        declared = self.request.headers.get("Content-Length")
        if declared is not None and not DIGITS_RE.match(declared):
            raise ServiceError("Content-Length must be a number of bytes")
        if declared is not None and int(declared) > limit:
            raise ServiceError(f"the request body is larger than {limit} bytes", 413,
                               "too_large")
        self._body_chunks = []
        self.request.connection.set_max_body_size(1 << 40)

    def data_received(self, chunk: bytes) -> None:
        if self._body_refused or self._body_chunks is None:
            return
        self._body_size += len(chunk)
        limit = self.ctx.settings.body_bytes
        if self._body_size > limit:
            self._body_refused, self._body_chunks = True, None
            exc = ServiceError(f"the request body is larger than {limit} bytes", 413,
                               "too_large")
            self.send_error(413, exc_info=(ServiceError, exc, None))
            return
        self._body_chunks.append(chunk)

    def raw_body(self) -> bytes:
        """The whole (small) body, and its form fields parsed as Tornado would."""
        if self._body_chunks is not None:
            self.request.body = b"".join(self._body_chunks)
            self._body_chunks = None
            if self.request.body:
                try:
                    tornado.httputil.parse_body_arguments(
                        self.request.headers.get("Content-Type", ""), self.request.body,
                        self.request.body_arguments, self.request.files, self.request.headers)
                except tornado.httputil.HTTPInputError as exc:
                    raise ServiceError(f"malformed request body ({exc})") from None
                for name, values in self.request.body_arguments.items():
                    self.request.arguments.setdefault(name, []).extend(values)
        return self.request.body or b""

    def require_user(self) -> User:
        if self.current_user is None:
            raise ServiceError("please log in first", 401)
        return self.current_user

    # -- input ----------------------------------------------------------------------
    def body(self) -> dict[str, Any]:
        """The request body as a dict, from JSON or form data."""
        ctype = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        raw = self.raw_body()
        if self._xsrf_deferred:
            self._xsrf_deferred = False
            super().check_xsrf_cookie()
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
