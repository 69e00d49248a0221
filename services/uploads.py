"""Accepting uploaded files: check the content, enforce the user's limits, store, record.

Whatever goes wrong, the temp file is removed and no record is written: a failed
upload leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import engine
from conf import limits_for
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


class UploadService:
    def __init__(self, repos: Repositories, media: MediaStore, metrics: Metrics) -> None:
        self.repos = repos
        self.media = media
        self.metrics = metrics
        # Upload disk writes and content probes get threads of their own: on the loop's
        # default executor they would starve motor (which runs its I/O there) and bcrypt.
        self.io = ThreadPoolExecutor(4, thread_name_prefix="upload-io")

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
                raise ServiceError("the file is larger than your upload limit", 413)
            info = await self.run_io(self._probe, kind, temp)
            limit = limits_for(user.usertype).video_seconds
            if kind == "video" and (info.get("duration") or 0) > limit:
                raise ServiceError(
                    f"the video is {info['duration']:.0f} s long; your limit is {limit:.0f} s",
                    413)
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
    def _probe(kind: str, path: Path) -> dict[str, Any]:
        try:
            if kind == "image":
                return engine.probe_image(str(path))
            return engine.probe_video(str(path))
        except engine.EngineError as exc:
            raise ServiceError(str(exc), 415) from None

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
