"""Persistence: MongoDB repositories (motor) and, later, the media folder layout.

No other package issues MongoDB queries; switching drivers is a change here only.
"""

from __future__ import annotations

from dataclasses import dataclass

from motor.motor_asyncio import AsyncIOMotorDatabase

from storage.faces import FaceRepository
from storage.media import MediaStore, PathRefused
from storage.sessions import SessionRepository
from storage.tasks import OutputTaken, TaskRepository
from storage.uploads import UploadRepository
from storage.users import DuplicateUser, UserRepository

__all__ = ["DuplicateUser", "FaceRepository", "MediaStore", "OutputTaken", "PathRefused",
           "Repositories", "SessionRepository", "TaskRepository", "UploadRepository",
           "UserRepository"]


@dataclass
class Repositories:
    """All repositories over one database, built once at start-up."""

    db: AsyncIOMotorDatabase
    users: UserRepository
    sessions: SessionRepository
    uploads: UploadRepository
    tasks: TaskRepository
    faces: FaceRepository

    @classmethod
    def over(cls, db: AsyncIOMotorDatabase) -> Repositories:
        return cls(db=db, users=UserRepository(db), sessions=SessionRepository(db),
                   uploads=UploadRepository(db), tasks=TaskRepository(db),
                   faces=FaceRepository(db))

#: Raised by the driver when the database cannot answer; handlers map it to 503.
from pymongo.errors import PyMongoError as DatabaseError  # noqa: E402

__all__ += ["DatabaseError"]
