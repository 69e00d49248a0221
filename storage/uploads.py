"""Uploaded files (``uploads``) and resumable tus uploads in flight (``tus_uploads``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from motor.motor_asyncio import AsyncIOMotorDatabase


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UploadRepository:
    def __init__(self, db: AsyncIOMotorDatabase) -> None:
        self.uploads = db.uploads
        self.tus = db.tus_uploads

    async def record(self, owner_id: int, filepath: str, kind: str, size: int,
                     info: dict[str, Any]) -> dict[str, Any]:
        doc = {"filepath": filepath, "owner_id": owner_id, "kind": kind, "size": size,
               "width": info.get("width"), "height": info.get("height"),
               "duration": info.get("duration"), "frames": info.get("frames"),
               "faces": info.get("faces"), "photo_check": info.get("photo_check"),
               "created": _now()}
        await self.uploads.insert_one(dict(doc))
        return doc

    async def get(self, filepath: str) -> dict[str, Any] | None:
        return await self.uploads.find_one({"filepath": filepath}, {"_id": 0})

    # -- tus ------------------------------------------------------------------------
    async def tus_create(self, upload_id: str, owner_id: int, username: str, length: int,
                         metadata: dict[str, str], expires: dt.datetime) -> None:
        await self.tus.insert_one({"_id": upload_id, "owner_id": owner_id, "username": username,
                                   "length": length, "metadata": metadata, "created": _now(),
                                   "expires": expires, "filepath": None})

    async def tus_open_count(self, owner_id: int) -> int:
        """How many of the owner's resumable uploads are not finished yet."""
        return await self.tus.count_documents({"owner_id": owner_id, "filepath": None})

    async def tus_get(self, upload_id: str) -> dict[str, Any] | None:
        return await self.tus.find_one({"_id": upload_id})

    async def tus_finish(self, upload_id: str, filepath: str) -> None:
        await self.tus.update_one({"_id": upload_id}, {"$set": {"filepath": filepath}})

    async def tus_delete(self, upload_id: str) -> None:
        await self.tus.delete_one({"_id": upload_id})

    async def tus_expired(self, now: dt.datetime) -> list[dict[str, Any]]:
        return await self.tus.find({"expires": {"$lt": now}}).to_list(None)
