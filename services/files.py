"""The user's files: listing (uploads and results, newest first), deletion, the storage
quota's figures, and the clean-up when an account goes.

A file is its bytes under ``media/``, its thumbnail under ``thumbs/`` and its record in
``uploads``; deleting removes all three, so nothing is left on disk or in the database.
A file that a queued or running task reads is kept (409 ``in_use``); deleting a result
marks its task ``deleted``.
"""

from __future__ import annotations

import datetime as dt
import logging
import urllib.parse
from typing import Any

from services import ServiceError
from services.accounts import User
from services.faces import FaceService
from services.tasks import TaskService
from services.uploads import UploadService
from storage import MediaStore, PathRefused, Repositories

log = logging.getLogger(__name__)

KINDS = ("image", "video")
#: Where thumbnails are served (handlers.media.ThumbnailHandler), owner-checked.
THUMB_PREFIX = "/static/thumbs/"


def thumbnail_url(record: dict[str, Any]) -> str | None:
    """The media URL of a file's thumbnail, or None when it has none."""
    if not record.get("thumbnail"):
        return None
    return THUMB_PREFIX + urllib.parse.quote(MediaStore.thumb_name(record["filepath"]))


def file_warnings(record: dict[str, Any]) -> list[dict[str, Any]]:
    """What the analysis at upload found (a photo's: the check's warnings, and its
    refusal as a warning too, so that the page can say at once that this photo will not
    do), or a result's warnings."""
    if record.get("warnings"):
        return list(record["warnings"])
    check = record.get("photo_check") or {}
    found = list(check.get("warnings") or [])
    if check and not check.get("ok") and check.get("code"):
        found.insert(0, {"code": check["code"], "msg": check.get("msg") or check["code"]})
    return found


def public_file(record: dict[str, Any]) -> dict[str, Any]:
    """One entry of ``GET /video/files``."""
    created = record.get("created")
    return {"filepath": record["filepath"], "kind": record["kind"], "size": record["size"],
            "created": created.isoformat() if isinstance(created, dt.datetime) else created,
            "width": record.get("width"), "height": record.get("height"),
            "duration": record.get("duration"), "faces": record.get("faces"),
            "warnings": file_warnings(record),
            "thumbnail": thumbnail_url(record),
            "origin": record.get("origin") or "upload", "task_id": record.get("task_id")}


class FileService:
    def __init__(self, repos: Repositories, media: MediaStore, uploads: UploadService,
                 tasks: TaskService, faces: FaceService | None = None) -> None:
        self.repos = repos
        self.faces = faces  #: forgets the people found in a deleted file (and their crops)
        self.media = media
        self.uploads = uploads
        self.tasks = tasks

    async def list(self, user: User, kind: str | None = None) -> list[dict[str, Any]]:
        if kind not in (None, *KINDS):
            raise ServiceError("kind must be 'image' or 'video'")
        return [public_file(r) for r in await self.repos.uploads.for_owner(user.id, kind)]

    async def storage(self, user: User) -> dict[str, int]:
        """``usage_bytes`` and ``quota_bytes`` (for ``/api/session``)."""
        return {"usage_bytes": await self.uploads.usage(user.id),
                "quota_bytes": self.uploads.quota(user)}

    async def own(self, user: User, filepath: str) -> dict[str, Any]:
        """The record of one of the caller's files; anything else is 404 (as the task
        routes: another user's file does not exist for the caller)."""
        try:
            self.media.split(filepath)
        except PathRefused as exc:
            raise ServiceError(exc.msg, exc.code, "bad_path") from None
        record = await self.repos.uploads.get(filepath)
        if record is None or record["owner_id"] != user.id:
            raise ServiceError("no such file", 404)
        return record

    async def delete(self, user: User, filepath: str) -> None:
        """File, thumbnail and record gone; 409 ``in_use`` while a task reads it."""
        record = await self.own(user, filepath)
        if await self.repos.tasks.using(filepath):
            raise ServiceError("a queued or running task uses this file; cancel it or wait",
                               409, "in_use")
        await self.repos.uploads.delete(filepath)
        self.media.remove(filepath)
        self.media.remove_thumb(filepath)
        if self.faces is not None:
            await self.faces.forget(filepath)
        if record.get("origin") == "result" and record.get("task_id"):
            await self.tasks.result_deleted(record["task_id"])
