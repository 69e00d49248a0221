"""The people in a user's photo or video (``/video/faces``), and choosing one of them.

The analysis runs in its own engine process (:class:`engine.interactive.InteractiveWorker`),
never on the server's threads and never behind queued swaps. Its answer is kept in
the database per file (``storage.faces``) with each person's mean descriptor, so a
``face_id`` stays valid for that file and ``target_face`` / ``source_face`` hand the
engine the chosen person without analysing again. Thumbnails are JPEG files in the
owner's media folder, served by the media routes (which check ownership), listed in
the kept answer so that :meth:`FaceService.forget` removes them with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections import deque
from pathlib import Path
from typing import Any

from conf import Settings
from engine.errors import EngineError
from engine.interactive import InteractiveWorker, WorkerCrashed, WorkerTimeout
from services import ServiceError
from services.accounts import User
from services.uploads import own_upload
from storage import MediaStore, Repositories

log = logging.getLogger(__name__)

MEDIA_URL = "/static/media/"


def media_url(filepath: str) -> str:
    """The URL the media route serves ``<username>/<name>`` at."""
    return MEDIA_URL + filepath


def public_face(face: dict[str, Any]) -> dict[str, Any]:
    return {"face_id": face["face_id"], "thumbnail": media_url(face["thumbnail"])
            if face.get("thumbnail") else None, "share": face["share"],
            "first_s": face["first_s"], "last_s": face["last_s"], "box": face["box"]}


class RateLimit:
    """At most ``count`` events per ``window`` seconds per key (in memory: a restart
    forgets, which only ever lets a user do more, never less)."""

    def __init__(self, count: int, window: float = 60.0) -> None:
        self.count = count
        self.window = window
        self._events: dict[int, deque[float]] = {}

    def take(self, key: int) -> bool:
        now = time.monotonic()
        events = self._events.setdefault(key, deque())
        while events and now - events[0] >= self.window:
            events.popleft()
        if len(events) >= self.count:
            return False
        events.append(now)
        return True


class FaceService:
    def __init__(self, repos: Repositories, media: MediaStore, settings: Settings,
                 worker: InteractiveWorker | None = None) -> None:
        self.repos = repos
        self.media = media
        self.settings = settings
        self.worker = worker or InteractiveWorker("people finder",
                                                  memory_mb=settings.interactive_memory_mb)
        self.rate = RateLimit(settings.faces_per_minute)
        self._running: dict[str, asyncio.Future] = {}

    async def _own_file(self, user: User, filepath: str) -> tuple[dict[str, Any], Path]:
        """The caller's upload record of ``filepath`` and its path (404/403 otherwise)."""
        record = await own_upload(self.repos, self.media, user, filepath, "file")
        return record, record["path"]

    async def find(self, user: User, filepath: str) -> list[dict[str, Any]]:
        """The people of one of the caller's uploads, largest share first (kept)."""
        record, path = await self._own_file(user, filepath)
        kept = await self.repos.faces.get(filepath)
        if kept is None:
            running = self._running.get(filepath)
            if running is None:
                if not self.rate.take(user.id):
                    raise ServiceError("too many files analysed in the last minute; try again "
                                       "shortly", 429, "too_many_analyses")
                running = asyncio.ensure_future(self._analyse(user, record, path))
                self._running[filepath] = running
                running.add_done_callback(lambda _: self._running.pop(filepath, None))
            kept = await asyncio.shield(running)
        return [public_face(f) for f in kept["faces"]]

    async def _analyse(self, user: User, record: dict[str, Any], path: Path) -> dict[str, Any]:
        filepath = record["filepath"]
        try:
            people = await self.worker.call(
                "engine:find_people", str(path), timeout=self.settings.faces_timeout_s,
                sample_fps=self.settings.faces_sample_fps)
        except WorkerTimeout:
            raise ServiceError("finding the people in this file took too long", 503,
                               "analysis_timeout") from None
        except WorkerCrashed:
            raise ServiceError("the analysis failed (out of memory?)", 500,
                               "analysis_failed") from None
        except EngineError as exc:
            raise ServiceError(str(exc), 415, getattr(exc, "code", None) or "unreadable_file"
                               ) from None
        stem = os.path.splitext(filepath.split("/", 1)[1])[0]
        self.media.user_dir(user.username)
        faces, names = [], []
        temp = self.media.temp_path(".jpg.part")
        try:
            # Linked under free names first (os.link never replaces a file), recorded
            # after: the record only ever names files made here, so forgetting them
            # cannot delete a user's own file.
            for i, person in enumerate(people):
                temp.write_bytes(person["thumbnail"])
                name = self._link(temp, user.username, f"{stem}.face{i + 1}")
                os.unlink(temp)
                names.append(name)
                faces.append({"face_id": str(i + 1), "thumbnail": name,
                              "share": person["share"], "first_s": person["first_s"],
                              "last_s": person["last_s"], "box": person["box"],
                              "descriptor": person["descriptor"], "seen": person["seen"]})
            stored = await self.repos.faces.put(filepath, record["owner_id"], faces, names)
        except BaseException:
            for name in names:
                self.media.remove(name)
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        if not stored:  # another request stored its answer first: that one is kept
            for name in names:
                self.media.remove(name)
            kept = await self.repos.faces.get(filepath)
            if kept is not None:
                return kept
        return {"filepath": filepath, "faces": faces, "files": names}

    def _link(self, temp: Path, username: str, stem: str) -> str:
        """Link ``temp`` as ``<username>/<stem>.jpg``, or with a random suffix if taken."""
        for suffix in ("", *(f"-{secrets.token_hex(3)}" for _ in range(5))):
            name = f"{username}/{stem}{suffix}.jpg"
            try:
                os.link(temp, self.media.root / name)
            except FileExistsError:
                continue
            return name
        raise ServiceError("could not name the face thumbnails", 500, "internal_error")

    async def choice(self, user: User, filepath: str, face_id: Any, field: str
                     ) -> dict[str, Any]:
        """The kept person ``face_id`` of the caller's ``filepath`` (for ``target_face`` /
        ``source_face``): 404 ``unknown_face`` when the file was not analysed or has no
        such person, 400 ``bad_face_id`` for an id that is not a face id."""
        if isinstance(face_id, int) and not isinstance(face_id, bool):
            face_id = str(face_id)
        if not isinstance(face_id, str) or not face_id.isdigit() or len(face_id) > 6:
            raise ServiceError(f"field '{field}' must be a face_id from /video/faces", 400,
                               "bad_face_id")
        await self._own_file(user, filepath)
        kept = await self.repos.faces.get(filepath)
        face = next((f for f in (kept or {}).get("faces", []) if f["face_id"] == face_id), None)
        if kept is None or kept["owner_id"] != user.id or face is None:
            raise ServiceError(f"{field}: no face {face_id} in {filepath} (ask /video/faces "
                               "for its faces first)", 404, "unknown_face")
        return face

    async def forget(self, filepath: str) -> None:
        """Remove the kept answer of ``filepath`` and its thumbnails (the file is deleted)."""
        kept = await self.repos.faces.remove(filepath)
        for name in (kept or {}).get("files", []):
            with contextlib.suppress(Exception):
                self.media.remove(name)

    async def forget_owner(self, owner_id: int) -> None:
        """Everything kept for one user's files (the account is deleted)."""
        for kept in await self.repos.faces.for_owner(owner_id):
            await self.forget(kept["filepath"])

    async def sweep(self) -> int:
        """Forget answers whose file is no longer recorded (housekeeping): however the
        file went, its faces and thumbnails do not stay behind."""
        removed = 0
        for filepath in await self.repos.faces.filepaths():
            if await self.repos.uploads.get(filepath) is None:
                await self.forget(filepath)
                removed += 1
        return removed

    async def close(self) -> None:
        await self.worker.close()
