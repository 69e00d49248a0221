"""The MongoDB connection and the collections' indexes.

Everything that talks to MongoDB lives in this package; other packages get
repositories, never a collection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pymongo
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase

log = logging.getLogger(__name__)


def connect(url: str, db_name: str, timeout_ms: int = 3000) -> AsyncIOMotorDatabase:
    """A motor database handle whose operations fail after ``timeout_ms`` instead of hanging."""
    client = AsyncIOMotorClient(
        url, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms,
        socketTimeoutMS=max(timeout_ms * 4, 10000), tz_aware=True)
    return client[db_name]


async def ensure_indexes(db: AsyncIOMotorDatabase,
                         username_key: Callable[[str], str] | None = None) -> None:
    """Create the indexes the data model relies on (idempotent; run at every start).

    ``username_key`` (the accounts service's comparison form of a name) fills in the
    key of users stored before names compared case-insensitively; two old names that
    now collide keep working, unkeyed, and are logged.
    """
    await db.users.create_index("username", unique=True)
    await db.users.create_index("username_key", unique=True, sparse=True)
    if username_key is not None:
        async for doc in db.users.find({"username_key": {"$exists": False}},
                                       {"_id": 1, "username": 1}):
            try:
                await db.users.update_one({"_id": doc["_id"]},
                                          {"$set": {"username_key": username_key(
                                              doc["username"])}})
            except pymongo.errors.DuplicateKeyError:
                log.warning("user %r differs from another only by case; left unkeyed",
                            doc["username"])
    await db.users.create_index("id", unique=True)
    await db.sessions.create_index("token_hash", unique=True)
    await db.sessions.create_index("user_id")
    await db.uploads.create_index("filepath", unique=True)
    await db.uploads.create_index("owner_id")
    await db.uploads.create_index([("owner_id", 1), ("created", -1)])
    await db.tasks.create_index("task_id", unique=True)
    await db.tasks.create_index([("owner_id", 1), ("created", -1)])
    await db.tasks.create_index("state")
    # One task per output name: set while a task is queued, running or finished, unset
    # when it fails, is cancelled or its result expires; parallel creations with one
    # swapname cannot both insert.
    await db.tasks.create_index("output_claim", unique=True, sparse=True)
    await db.faces.create_index("filepath", unique=True)
    await db.faces.create_index("owner_id")
    await db.previews.create_index([("owner_id", 1), ("created", 1)])
    await db.previews.create_index("expires")
    await db.tus_uploads.create_index("owner_id")
    await db.tus_uploads.create_index("expires")
    for counter in ("users",):  # create counters up front: no upsert race later
        await db.counters.update_one({"_id": counter}, {"$setOnInsert": {"seq": 0}},
                                     upsert=True)


async def ping(db: AsyncIOMotorDatabase) -> bool:
    try:
        await db.client.admin.command("ping")
        return True
    except pymongo.errors.PyMongoError:
        return False


async def next_id(db: AsyncIOMotorDatabase, name: str) -> int:
    """The next value of the integer sequence ``name``: atomic, positive, never reused.

    Concurrent upserts of a missing counter can collide (a duplicate ``_id`` on MongoDB,
    no document returned on some servers); the loser simply tries again, and then
    finds the document and increments it.
    """
    for _ in range(5):
        try:
            doc = await db.counters.find_one_and_update(
                {"_id": name}, {"$inc": {"seq": 1}}, upsert=True,
                return_document=pymongo.ReturnDocument.AFTER)
        except pymongo.errors.DuplicateKeyError:
            continue
        if doc is not None:
            return int(doc["seq"])
    raise pymongo.errors.OperationFailure(f"could not advance counter {name!r}")
