"""Users: the ``users`` collection behind a small repository."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pymongo
from motor.motor_asyncio import AsyncIOMotorDatabase

from storage.database import next_id

#: Fields that may leave the server; the password hash never does.
PUBLIC_FIELDS = {"_id": 0, "id": 1, "username": 1, "usertype": 1, "phonenumber": 1,
                 "address": 1, "disabled": 1}


class DuplicateUser(Exception):
    """The username is taken."""


class UserRepository:
    def __init__(self, db: AsyncIOMotorDatabase) -> None:
        self.users = db.users
        self.db = db

    async def create(self, username: str, password_hash: str, usertype: int,
                     phonenumber: str = "", address: str = "", key: str = "") -> int:
        """Insert a user and return its new id; :class:`DuplicateUser` if the name exists.

        ``key`` is the name's comparison form (services.accounts.username_key): the unique
        index on it decides races, and makes ``Alice`` and ``alice`` one name.
        """
        key = key or username
        if await self.users.find_one({"username_key": key}, {"_id": 1}):
            raise DuplicateUser(username)
        user_id = await next_id(self.db, "users")
        try:
            await self.users.insert_one({
                "id": user_id, "username": username, "username_key": key,
                "password_hash": password_hash,
                "usertype": usertype, "phonenumber": phonenumber, "address": address,
                "created": dt.datetime.now(dt.UTC)})
        except pymongo.errors.DuplicateKeyError:
            raise DuplicateUser(username) from None
        return user_id

    async def by_username(self, username: str) -> dict[str, Any] | None:
        return await self.users.find_one({"username": username})

    async def by_key(self, key: str) -> dict[str, Any] | None:
        """The user whose name compares equal to ``key`` (see ``username_key``)."""
        return await self.users.find_one({"username_key": key})

    async def set_disabled(self, user_id: int, disabled: bool) -> bool:
        result = await self.users.update_one({"id": user_id}, {"$set": {"disabled": disabled}})
        return result.matched_count == 1

    async def by_id(self, user_id: int) -> dict[str, Any] | None:
        return await self.users.find_one({"id": user_id})

    async def delete(self, user_id: int) -> bool:
        return (await self.users.delete_one({"id": user_id})).deleted_count == 1

    async def set_usertype(self, user_id: int, usertype: int) -> bool:
        result = await self.users.update_one({"id": user_id}, {"$set": {"usertype": usertype}})
        return result.matched_count == 1

    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        await self.users.update_one({"id": user_id}, {"$set": {"password_hash": password_hash}})

    async def page(self, pagenum: int, pagesize: int, keywords: str = ""
                   ) -> tuple[list[dict[str, Any]], int]:
        """One page of users ordered by id, filtered by a substring of name, phone or e-mail."""
        query: dict[str, Any] = {}
        if keywords:
            pattern = {"$regex": re.escape(keywords), "$options": "i"}
            query = {"$or": [{"username": pattern}, {"phonenumber": pattern},
                             {"address": pattern}]}
        total = await self.users.count_documents(query)
        cursor = (self.users.find(query, PUBLIC_FIELDS).sort("id", 1)
                  .skip((pagenum - 1) * pagesize).limit(pagesize))
        return await cursor.to_list(length=pagesize), total
