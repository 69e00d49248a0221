"""The people found in an uploaded file (``faces``) and the preview frames made (``previews``).

``faces``: one document per analysed file, keyed by its ``filepath``: the answer of
``/video/faces`` with each person's mean descriptor (the engine follows that person)
and the derived thumbnail files, so whoever removes the file removes these too.
``previews``: one document per preview answer, with its files and when they expire.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from motor.motor_asyncio import AsyncIOMotorDatabase


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class FaceRepository:
    def __init__(self, db: AsyncIOMotorDatabase) -> None:
        self.faces = db.faces
        self.previews = db.previews

    async def get(self, filepath: str) -> dict[str, Any] | None:
        return await self.faces.find_one({"filepath": filepath}, {"_id": 0})

    async def put(self, filepath: str, owner_id: int, people: list[dict[str, Any]],
                  files: list[str]) -> bool:
        """Store the answer for ``filepath``; False if one is stored already (a race)."""
        import pymongo

        try:
            await self.faces.insert_one({"filepath": filepath, "owner_id": owner_id,
                                         "faces": people, "files": files,
                                         "created": _now()})
        except pymongo.errors.DuplicateKeyError:
            return False
        return True

    async def remove(self, filepath: str) -> dict[str, Any] | None:
        """Remove and return the answer for ``filepath`` (None if there was none)."""
        return await self.faces.find_one_and_delete({"filepath": filepath}, {"_id": 0})

    async def for_owner(self, owner_id: int) -> list[dict[str, Any]]:
        return await self.faces.find({"owner_id": owner_id}, {"_id": 0}).to_list(None)

    async def filepaths(self) -> list[str]:
        """Every analysed file's path (housekeeping)."""
        return [doc["filepath"] async for doc in self.faces.find({}, {"filepath": 1})]

    # -- previews ---------------------------------------------------------------------
    async def add_preview(self, owner_id: int, files: list[str], expires: dt.datetime) -> str:
        result = await self.previews.insert_one({"owner_id": owner_id, "files": files,
                                                 "created": _now(), "expires": expires})
        return str(result.inserted_id)

    async def previews_of(self, owner_id: int) -> list[dict[str, Any]]:
        """The owner's previews, oldest first."""
        return await self.previews.find({"owner_id": owner_id}).sort("created", 1).to_list(None)

    async def expired_previews(self, now: dt.datetime) -> list[dict[str, Any]]:
        return await self.previews.find({"expires": {"$lt": now}}).to_list(None)

    async def remove_preview(self, preview_id: Any) -> None:
        await self.previews.delete_one({"_id": preview_id})
