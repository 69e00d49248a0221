"""The user's files (``uploads``: uploads and, since the file list, results too) and
resumable tus uploads in flight (``tus_uploads``)."""

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
                     info: dict[str, Any], *, origin: str = "upload",
                     task_id: str | None = None, thumbnail: bool = False,
                     warnings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Record a stored file. ``origin``: ``upload`` or ``result`` (of ``task_id``);
        ``thumbnail``: whether its thumbnail was written; ``warnings``: a result's."""
        doc = {"filepath": filepath, "owner_id": owner_id, "kind": kind, "size": size,
               "width": info.get("width"), "height": info.get("height"),
               "duration": info.get("duration"), "frames": info.get("frames"),
               "faces": info.get("faces"), "photo_check": info.get("photo_check"),
               "origin": origin, "task_id": task_id, "thumbnail": thumbnail,
               "warnings": warnings, "created": _now()}
        await self.uploads.insert_one(dict(doc))
        return doc

    async def get(self, filepath: str) -> dict[str, Any] | None:
        return await self.uploads.find_one({"filepath": filepath}, {"_id": 0})

    async def for_owner(self, owner_id: int, kind: str | None = None,
                        limit: int = 1000) -> list[dict[str, Any]]:
        """The owner's files, newest first (optionally one kind)."""
        query: dict[str, Any] = {"owner_id": owner_id}
        if kind:
            query["kind"] = kind
        cursor = self.uploads.find(query, {"_id": 0}).sort([("created", -1), ("filepath", -1)])
        return await cursor.limit(limit).to_list(limit)

    async def delete(self, filepath: str) -> bool:
        return (await self.uploads.delete_one({"filepath": filepath})).deleted_count == 1

    async def delete_for_owner(self, owner_id: int) -> None:
        await self.uploads.delete_many({"owner_id": owner_id})
        await self.tus.delete_many({"owner_id": owner_id})

    async def usage(self, owner_ids: list[int]) -> dict[int, int]:
        """Bytes of stored files per owner (the storage quota's measure)."""
        cursor = self.uploads.aggregate([
            {"$match": {"owner_id": {"$in": owner_ids}}},
            {"$group": {"_id": "$owner_id", "n": {"$sum": "$size"}}}])
        return {int(row["_id"]): int(row["n"]) async for row in cursor}

    async def tus_open_bytes(self, owner_id: int, exclude: str | None = None) -> int:
        """Declared bytes of the owner's unfinished resumable uploads: reserved against
        the quota from their creation on."""
        query: dict[str, Any] = {"owner_id": owner_id, "filepath": None}
        if exclude is not None:
            query["_id"] = {"$ne": exclude}
        return sum([int(doc["length"]) async for doc in self.tus.find(query, {"length": 1})])

    async def tus_for_owner(self, owner_id: int) -> list[dict[str, Any]]:
        return await self.tus.find({"owner_id": owner_id}, {"_id": 1}).to_list(None)

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
