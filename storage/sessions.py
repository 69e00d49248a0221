"""Login sessions. The bearer token and the cookie carry the same random token;
only its SHA-256 is stored, so a database leak does not leak live sessions."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

from motor.motor_asyncio import AsyncIOMotorDatabase


def digest(token: str) -> str:
    """The stored form of a token (also how live connections are keyed by session)."""
    return _digest(token)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionRepository:
    def __init__(self, db: AsyncIOMotorDatabase) -> None:
        self.sessions = db.sessions

    async def create(self, user_id: int, lifetime: dt.timedelta) -> str:
        token = secrets.token_urlsafe(32)
        now = dt.datetime.now(dt.UTC)
        await self.sessions.insert_one({"token_hash": _digest(token), "user_id": user_id,
                                        "created": now, "expires": now + lifetime})
        return token

    async def user_id(self, token: str) -> int | None:
        """The user of a live session, or None for unknown or expired tokens."""
        live = await self.live(token)
        return live[0] if live else None

    async def live(self, token: str) -> tuple[int, dt.datetime] | None:
        """``(user_id, expires)`` of a live session, or None (an expired one is deleted)."""
        doc: dict[str, Any] | None = await self.sessions.find_one({"token_hash": _digest(token)})
        if doc is None:
            return None
        if doc["expires"] <= dt.datetime.now(dt.UTC):
            await self.sessions.delete_one({"_id": doc["_id"]})
            return None
        return int(doc["user_id"]), doc["expires"]

    async def delete_for_user(self, user_id: int) -> None:
        await self.sessions.delete_many({"user_id": user_id})

    async def delete(self, token: str) -> None:
        await self.sessions.delete_one({"token_hash": _digest(token)})
