"""Swap tasks: start, view, list, cancel, and the live ``/ws/tasks`` feed."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import tornado.websocket

from handlers import fields
from handlers.base import BaseHandler
from services import ServiceError
from services.accounts import User
from services.tasks import MAX_FACE_PHOTOS


class TaskHandler(BaseHandler):
    async def acting_user(self, body: dict[str, Any]) -> User:
        """The caller, or for an administrator the user named in ``username``."""
        user = self.require_user()
        name = fields.text(body, "username", required=False, max_len=64)
        if not name or name == user.username:
            return user
        if not user.is_admin:
            raise ServiceError("username does not match the logged-in user", 403)
        doc = await self.ctx.repos.users.by_username(name)
        if doc is None:
            raise ServiceError("no such user", 404)
        return User.from_doc(doc)


def face_field(body: dict[str, Any]) -> str | list[str]:
    """``imagepath``: one photo, a list of photos of one person, or a face video."""
    if isinstance(body.get("imagepath"), list):
        return fields.texts(body, "imagepath", max_items=MAX_FACE_PHOTOS, max_len=200)
    return fields.text(body, "imagepath", max_len=200)


class FaceSwapHandler(TaskHandler):
    async def post(self) -> None:
        body = self.body()
        user = await self.acting_user(body)
        task_id = await self.ctx.tasks.create(
            user, face_field(body),
            fields.text(body, "videopath", max_len=200),
            fields.text(body, "swapname", max_len=64),
            many_faces=fields.boolean(body, "many_faces"),
            keep_mouth=fields.boolean(body, "keep_mouth"),
            quality=fields.text(body, "quality", required=False, default="balanced",
                                max_len=16),
            start_s=fields.number(body, "start_s", reason="bad_segment"),
            end_s=fields.number(body, "end_s", reason="bad_segment"),
            target_face=fields.face_id(body, "target_face"),
            source_face=fields.face_id(body, "source_face"))
        task = await self.ctx.tasks.get(user, task_id)
        self.reply({"status": 0, "task_id": task_id, "warnings": task.get("warnings") or []})


class ViewTaskHandler(TaskHandler):
    """``view_task`` has its own envelope: errors are ``status 2`` (never 1 = finished)."""

    def envelope(self, msg: str, reason: str = "bad_request") -> dict[str, Any]:
        return {"status": 2, "progress": msg, "msg": msg, "code": reason}

    async def post(self) -> None:
        body = self.body()
        user = self.require_user()
        fields.text(body, "username", required=False, max_len=64)
        if body.get("username") and body["username"] != user.username and not user.is_admin:
            raise ServiceError("username does not match the logged-in user", 403)
        self.reply(await self.ctx.tasks.view(user, fields.text(body, "task_id", max_len=64)))


class TaskListHandler(TaskHandler):
    """Newest first; ``?limit=&before=<task_id>`` pages (no parameters: the newest 200)."""

    async def get(self) -> None:
        user = self.require_user()
        args = {k: self.get_query_argument(k) for k in ("limit", "before")
                if self.get_query_argument(k, None) not in (None, "")}
        limit = fields.integer(args, "limit", required=False, default=0, minimum=1,
                               maximum=200) or None
        before = fields.text(args, "before", required=False, max_len=64) or None
        tasks = await self.ctx.tasks.list(user, limit, before)
        reply: dict[str, Any] = {"status": 0, "tasks": tasks}
        if limit is not None:  # where the next page starts, if there may be one
            reply["next_before"] = tasks[-1]["task_id"] if len(tasks) == limit else None
        self.reply(reply)


class DeleteTaskHandler(TaskHandler):
    async def post(self) -> None:
        body = self.body()
        await self.ctx.tasks.delete(self.require_user(), fields.text(body, "task_id", max_len=64))
        self.reply({"status": 0})


class RetryTaskHandler(TaskHandler):
    async def post(self) -> None:
        body = self.body()
        user = self.require_user()
        swapname = fields.text(body, "swapname", required=False, max_len=64) or None
        task_id = await self.ctx.tasks.retry(user, fields.text(body, "task_id", max_len=64),
                                             swapname)
        task = await self.ctx.tasks.get(user, task_id)
        self.reply({"status": 0, "task_id": task_id, "warnings": task.get("warnings") or []})


class CancelTaskHandler(TaskHandler):
    async def post(self) -> None:
        body = self.body()
        await self.ctx.tasks.cancel(self.require_user(), fields.text(body, "task_id", max_len=64))
        self.reply({"status": 0})


class TaskSocket(BaseHandler, tornado.websocket.WebSocketHandler):
    """Pushes each change of the caller's tasks; a snapshot of unfinished ones on open.

    Browsers authenticate with the session cookie (Tornado's same-origin check stops
    other sites from riding on it); other clients pass ``?token=``.
    """

    _expiry: Any = None

    def session_token(self) -> str | None:
        return self.get_query_argument("token", None) or super().session_token()

    async def get(self, *args: Any, **kwargs: Any) -> None:
        if self.current_user is None:
            raise ServiceError("please log in first", 401)
        if self.request.headers.get("Upgrade", "").lower() != "websocket":
            raise ServiceError("this is a WebSocket endpoint; connect with a WebSocket client")
        self.token = self.session_token()
        self.expires = await self.ctx.accounts.session_expires(self.token or "")
        await super().get(*args, **kwargs)

    def open(self) -> None:
        """Subscribe, and end with the session: logout or disabling (the accounts
        service calls back) or expiry (a timer), whichever comes first."""
        self.user = self.current_user
        self.ctx.accounts.watch(self.token, self.user.id, self.session_ended)
        if self.expires is not None:
            delay = (self.expires - dt.datetime.now(dt.UTC)).total_seconds()
            self._expiry = asyncio.get_running_loop().call_later(
                max(0.0, delay), self.session_ended, "session expired")
        self.ctx.tasks.subscribe(self.user.id, self.push)
        for view in self.ctx.tasks.snapshot(self.user.id):
            self.push(view)

    def session_ended(self, reason: str) -> None:
        self.on_close()
        self.close(4001, reason)

    def push(self, view: dict[str, Any]) -> None:
        try:
            self.write_message(json.dumps(view, ensure_ascii=False, default=str))
        except tornado.websocket.WebSocketClosedError:
            self.on_close()

    def on_message(self, message: str | bytes) -> None:
        pass  # the feed is one-way; pings are handled by Tornado

    def on_close(self) -> None:
        if getattr(self, "user", None) is not None:
            self.ctx.tasks.unsubscribe(self.user.id, self.push)
            self.ctx.accounts.unwatch(self.token, self.user.id, self.session_ended)
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
