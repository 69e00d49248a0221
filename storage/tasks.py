"""Swap tasks (``tasks``): their state as last written by the task service."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pymongo
from motor.motor_asyncio import AsyncIOMotorDatabase

ACTIVE = ("queued", "running")


class OutputTaken(Exception):
    """Another task already produces (or produced) this output file."""


class TaskRepository:
    def __init__(self, db: AsyncIOMotorDatabase) -> None:
        self.tasks = db.tasks

    async def create(self, doc: dict[str, Any]) -> None:
        """Insert a task claiming its output path; :class:`OutputTaken` if one already does.

        The unique index on ``output_claim`` decides races between parallel creations.
        """
        try:
            await self.tasks.insert_one({**doc, "output_claim": doc["filepath"],
                                         "created": dt.datetime.now(dt.UTC)})
        except pymongo.errors.DuplicateKeyError:
            raise OutputTaken(doc["filepath"]) from None

    async def release_output(self, task_id: str) -> None:
        """The task will not (or no longer) produce its output: the name is free again."""
        await self.tasks.update_one({"task_id": task_id}, {"$unset": {"output_claim": ""}})

    async def get(self, task_id: str) -> dict[str, Any] | None:
        return await self.tasks.find_one({"task_id": task_id}, {"_id": 0})

    async def update(self, task_id: str, fields: dict[str, Any]) -> None:
        await self.tasks.update_one({"task_id": task_id}, {"$set": fields})

    async def for_owner(self, owner_id: int, limit: int = 200,
                        before: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The owner's tasks, newest first; ``before``: only those older than that task
        (``created`` then ``task_id`` order, so tasks made in one millisecond page too)."""
        query: dict[str, Any] = {"owner_id": owner_id}
        if before is not None:
            query["$or"] = [{"created": {"$lt": before["created"]}},
                            {"created": before["created"],
                             "task_id": {"$lt": before["task_id"]}}]
        cursor = self.tasks.find(query, {"_id": 0}).sort([("created", -1), ("task_id", -1)])
        return await cursor.limit(limit).to_list(limit)

    async def delete(self, task_id: str) -> None:
        await self.tasks.delete_one({"task_id": task_id})

    async def delete_for_owner(self, owner_id: int) -> None:
        await self.tasks.delete_many({"owner_id": owner_id})

    async def using(self, filepath: str) -> list[dict[str, Any]]:
        """Queued or running tasks that read ``filepath`` (it may not be deleted)."""
        return await self.tasks.find(
            {"state": {"$in": list(ACTIVE)},
             "$or": [{"imagepath": filepath}, {"videopath": filepath}]},
            {"_id": 0, "task_id": 1}).to_list(None)

    async def counts(self, owner_ids: list[int]) -> dict[int, dict[str, int]]:
        """Per owner: ``{"total", "active"}`` task counts (the admin listing)."""
        cursor = self.tasks.aggregate([
            {"$match": {"owner_id": {"$in": owner_ids}}},
            {"$group": {"_id": "$owner_id", "total": {"$sum": 1},
                        "active": {"$sum": {"$cond": [{"$in": ["$state", list(ACTIVE)]},
                                                      1, 0]}}}}])
        return {int(r["_id"]): {"total": int(r["total"]), "active": int(r["active"])}
                async for r in cursor}

    async def active_for_owner(self, owner_id: int) -> list[dict[str, Any]]:
        return await self.tasks.find({"owner_id": owner_id, "state": {"$in": list(ACTIVE)}},
                                     {"_id": 0}).to_list(None)

    async def output_taken(self, filepath: str) -> bool:
        """Whether an unfinished or finished task already produces ``filepath``."""
        return await self.tasks.find_one(
            {"$or": [{"output_claim": filepath},
                     {"filepath": filepath, "state": {"$in": [*ACTIVE, "finished"]}}]},
            {"_id": 1}) is not None

    async def finished_before(self, cutoff: dt.datetime) -> list[dict[str, Any]]:
        return await self.tasks.find({"state": "finished", "finished": {"$lt": cutoff}},
                                     {"_id": 0}).to_list(None)

    async def count_by_state(self) -> dict[str, int]:
        """How many tasks are in each state (for the metrics)."""
        cursor = self.tasks.aggregate([{"$group": {"_id": "$state", "n": {"$sum": 1}}}])
        return {row["_id"]: row["n"] async for row in cursor}

    async def unfinished(self) -> list[dict[str, Any]]:
        """Tasks a previous run left queued or running, oldest first (restart recovery)."""
        cursor = self.tasks.find({"state": {"$in": list(ACTIVE)}}, {"_id": 0}).sort("created", 1)
        return await cursor.to_list(None)
