"""Accepting uploaded files: check the content, enforce the user's limits, store, record.

Whatever goes wrong, the temp file is removed and no record is written: a failed
upload leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import engine
from conf import Limits, Settings, limits_for
from engine.errors import ProbeRefused
from engine.probe import ProbeLimits, probe_isolated
from services import ServiceError
from services.accounts import User
from services.metrics import Metrics
from storage import MediaStore, Repositories

T = TypeVar("T")
KINDS = ("image", "video")
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
VIDEO_EXTENSIONS = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi"}
_MAGIC = ((b"\xff\xd8\xff", ".jpg"), (b"\x89PNG", ".png"), (b"BM", ".bmp"), (b"RIFF", ".webp"))


def _extension(kind: str, original_name: str, temp: Path) -> str:
    ext = os.path.splitext(original_name)[1].lower()
    if ext in (IMAGE_EXTENSIONS if kind == "image" else VIDEO_EXTENSIONS):
        return ".jpg" if ext == ".jpeg" else ext
    if kind == "video":
        return ".mp4"
    with open(temp, "rb") as f:
        head = f.read(4)
    return next((e for magic, e in _MAGIC if head.startswith(magic)), ".jpg")


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ServiceError("filetype must be 'image' or 'video'")
    return kind


class TusLock:
    """The one request that may work on a resumable upload right now.

    tusd's rule: one request per upload at a time. A DELETE that meets a PATCH still
    receiving wins: it sets ``terminated`` and the PATCH ends with 410 at its next chunk
    (or at its end) instead of writing into a file that is gone.
    """

    def __init__(self, method: str) -> None:
        self.method = method
        self.finishing = False  #: the last byte is in; the file is being probed and stored
        self.terminated = False


class UploadService:
    def __init__(self, repos: Repositories, media: MediaStore,
                 settings: Settings | None = None, metrics: Metrics | None = None) -> None:
        self.repos = repos
        self.media = media
        self.settings = settings or Settings()
        self.metrics = metrics or Metrics()
        # Upload disk writes and content probes get threads of their own: on the loop's
        # default executor they would starve motor (which runs its I/O there) and bcrypt.
        self.io = ThreadPoolExecutor(4, thread_name_prefix="upload-io")
        self.tus_locks: dict[str, TusLock] = {}
        self._creating: dict[int, asyncio.Lock] = {}

    def limits(self, user: User) -> Limits:
        return limits_for(user.usertype)

    def probe_limits(self, user: User) -> ProbeLimits:
        """What one probe of ``user``'s file may accept and spend (all from conf/)."""
        limits, s = self.limits(user), self.settings
        return ProbeLimits(
            max_photo_pixels=limits.photo_pixels, max_video_pixels=limits.video_pixels,
            max_samples=int(max(limits.upload_video_seconds, 1) * s.samples_per_second),
            max_frame_rate=s.max_frame_rate, memory_mb=s.probe_memory_mb,
            timeout_s=s.probe_timeout_s)

    # -- resumable uploads: one request at a time, a bounded number open ----------------
    def lock_tus(self, upload_id: str, method: str) -> TusLock:
        """Claim ``upload_id`` for one request, or refuse with 423 (``locked``)."""
        if upload_id in self.tus_locks:
            raise ServiceError("another request is working on this upload; retry when it "
                               "has ended", 423, "locked")
        lock = self.tus_locks[upload_id] = TusLock(method)
        return lock

    def unlock_tus(self, upload_id: str, lock: TusLock) -> None:
        if self.tus_locks.get(upload_id) is lock:
            del self.tus_locks[upload_id]

    async def create_tus(self, user: User, length: int, metadata: dict[str, str],
                         expires: dt.datetime) -> str:
        """Record a new resumable upload, within the user's number of open ones."""
        if length > self.max_bytes(user):
            raise ServiceError("the upload is larger than your limit", 413, "too_large")
        cap = self.limits(user).open_uploads
        # count and insert under one lock per user, so parallel creations cannot pass
        # the cap together (one server process owns the uploads)
        async with self._creating.setdefault(user.id, asyncio.Lock()):
            if await self.repos.uploads.tus_open_count(user.id) >= cap:
                raise ServiceError(f"you have {cap} unfinished uploads; finish or delete one "
                                   f"first", 429, "too_many_uploads")
            upload_id = secrets.token_hex(16)
            await self.repos.uploads.tus_create(upload_id, user.id, user.username, length,
                                                metadata, expires)
        self.tus_part(upload_id).touch()
        return upload_id

    async def delete_tus(self, upload_id: str) -> None:
        """Terminate a resumable upload: its bytes and its record; a PATCH in flight
        is told to stop (see :class:`TusLock`); one being stored is 423."""
        lock = self.tus_locks.get(upload_id)
        if lock is not None:
            if lock.finishing or lock.method != "PATCH":
                raise ServiceError("this upload is being stored; retry in a moment", 423,
                                   "locked")
            lock.terminated = True
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tus_part(upload_id))
        await self.repos.uploads.tus_delete(upload_id)

    async def run_io(self, func: Callable[..., T], *args: Any) -> T:
        """Run blocking file work for an upload on the upload threads."""
        return await asyncio.get_running_loop().run_in_executor(self.io, func, *args)

    def tus_part(self, upload_id: str) -> Path:
        """Where the bytes of a resumable upload collect until it is complete."""
        return self.media.tmp / f"tus-{upload_id}.part"

    def max_bytes(self, user: User) -> int:
        return limits_for(user.usertype).upload_bytes

    async def accept(self, user: User, kind: str, temp: Path, original_name: str,
                     transfer_seconds: float | None = None) -> dict[str, Any]:
        """Check ``temp`` and file it for ``user``; returns the upload record.

        ``transfer_seconds``: how long the bytes took to arrive, for the metrics (the
        handler knows when the upload began).
        """
        try:
            check_kind(kind)
            size = temp.stat().st_size
            if size == 0:
                raise ServiceError("the uploaded file is empty")
            if size > self.max_bytes(user):
                raise ServiceError("the file is larger than your upload limit", 413, "too_large")
            info = await self.run_io(self._probe, kind, temp, self.probe_limits(user))
            # the upload's own length limit: a task may swap a part of a longer video
            limit = self.limits(user).upload_video_seconds
            if kind == "video" and (info.get("duration") or 0) > limit:
                raise ServiceError(
                    f"the video is {info['duration']:.0f} s long; your limit is {limit:.0f} s",
                    413, "too_long")
            ext = _extension(kind, original_name, temp)
            filepath = self.media.store(temp, user.username, original_name, ext)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        try:
            record = await self.repos.uploads.record(user.id, filepath, kind, size, info)
        except BaseException:
            self.media.remove(filepath)
            raise
        self.metrics.upload_bytes.labels(kind).observe(size)
        if transfer_seconds is not None:
            self.metrics.upload_seconds.labels(kind).observe(max(0.0, transfer_seconds))
        return record

    @staticmethod
    def _probe(kind: str, path: Path, limits: ProbeLimits) -> dict[str, Any]:
        """Probe in a bounded child process (engine.probe): whatever the file claims,
        the server's own memory does not grow; refusals keep their reason."""
        try:
            return probe_isolated(kind, str(path), limits, faces=kind == "image")
        except ProbeRefused as exc:
            raise ServiceError(str(exc), 413 if exc.oversize else 415, exc.reason) from None
        except engine.EngineError as exc:
            raise ServiceError(str(exc), 415, f"not_{'an_image' if kind == 'image' else 'a_video'}"
                               ) from None

    def remove_stale_temp(self) -> int:
        """At start-up: one-shot uploads that were in flight when the server stopped."""
        stale = [p for p in self.media.tmp.glob("*.part") if not p.name.startswith("tus-")]
        for path in stale:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return len(stale)

    async def expire_partial(self) -> int:
        """Delete resumable uploads that were not finished in time (file and record)."""
        expired = await self.repos.uploads.tus_expired(dt.datetime.now(dt.UTC))
        for upload in expired:
            with contextlib.suppress(FileNotFoundError):
                self.tus_part(upload["_id"]).unlink()
            await self.repos.uploads.tus_delete(upload["_id"])
        return len(expired)
