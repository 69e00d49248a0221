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
from conf import MB, Limits, Settings, limits_for
from engine.errors import ProbeRefused
from engine.probe import ProbeLimits, probe_isolated
from services import ServiceError
from services.accounts import User
from services.metrics import Metrics
from storage import MediaStore, PathRefused, Repositories

T = TypeVar("T")
KINDS = ("image", "video")
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
VIDEO_EXTENSIONS = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi"}
_MAGIC = ((b"\xff\xd8\xff", ".jpg"), (b"\x89PNG", ".png"), (b"BM", ".bmp"), (b"RIFF", ".webp"))


async def own_upload(repos: Repositories, media: MediaStore, user: User, filepath: str,
                     field: str, kinds: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The caller's upload record behind ``<field>path`` (of one of ``kinds``; any kind
    when None) with its resolved ``path``: 400/403/404 otherwise. The one ownership check
    of every route that names an upload (faceswap, preview, faces)."""
    try:
        path = media.resolve(filepath, user.username)
    except PathRefused as exc:
        raise ServiceError(f"{field}path: {exc.msg}", exc.code) from None
    record = await repos.uploads.get(filepath)
    if record is None or record["owner_id"] != user.id:
        raise ServiceError(f"{field}path is not one of your uploads", 404)
    if kinds is not None and record["kind"] not in kinds:
        raise ServiceError(f"{field}path is not an uploaded {' or '.join(kinds)}")
    return {**record, "path": path}


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


class Stream:
    """The bytes of one one-shot upload still arriving, counted against the quota while
    they stream, so that parallel uploads of one user see each other."""

    def __init__(self, user_id: int, base: int, quota: int) -> None:
        self.user_id = user_id
        self.base = base  #: stored + reserved bytes when the upload began
        self.quota = quota
        self.received = 0


#: Room left for the multipart framing around the file (its bytes are not stored).
FRAMING_SLACK = 64 * 1024


def over_quota(quota: int) -> ServiceError:
    return ServiceError(f"this upload would take you past your storage quota of "
                        f"{quota / MB:.0f} MB; delete some files first", 413, "over_quota")


class UploadService:
    def __init__(self, repos: Repositories, media: MediaStore,
                 settings: Settings | None = None, metrics: Metrics | None = None,
                 limits: Callable[[int], Limits] = limits_for) -> None:
        self.repos = repos
        self.limits_of = limits  #: usertype → its conf/ limits (from the context)
        self.media = media
        self.settings = settings or Settings()
        self.metrics = metrics or Metrics()
        # Upload disk writes and content probes get threads of their own: on the loop's
        # default executor they would starve motor (which runs its I/O there) and bcrypt.
        self.io = ThreadPoolExecutor(4, thread_name_prefix="upload-io")
        self.tus_locks: dict[str, TusLock] = {}
        # One lock per user around every step that counts and then adds to what the user
        # keeps (tus creation, storing a finished upload, deleting the account): one
        # server process owns the uploads, so parallel requests cannot pass a cap together.
        self._user_locks: dict[int, asyncio.Lock] = {}
        self._streams: dict[int, set[Stream]] = {}

    def user_lock(self, user_id: int) -> asyncio.Lock:
        return self._user_locks.setdefault(user_id, asyncio.Lock())

    # -- the storage quota ---------------------------------------------------------------
    def quota(self, user: User) -> int:
        return self.limits(user).storage_bytes

    async def usage(self, user_id: int) -> int:
        """Bytes the user's stored files take (uploads and results)."""
        return (await self.repos.uploads.usage([user_id])).get(user_id, 0)

    async def committed(self, user_id: int, exclude_tus: str | None = None) -> int:
        """Stored bytes plus the declared length of unfinished resumable uploads."""
        return await self.usage(user_id) + \
            await self.repos.uploads.tus_open_bytes(user_id, exclude_tus)

    def streaming(self, user_id: int) -> int:
        return sum(s.received for s in self._streams.get(user_id, ()))

    async def open_stream(self, user: User, declared: int | None) -> Stream:
        """Start counting a one-shot upload; refuses at once (413 ``over_quota``) when its
        declared length cannot fit."""
        quota = self.quota(user)
        stream = Stream(user.id, await self.committed(user.id), quota)
        if declared is not None and \
                stream.base + self.streaming(user.id) + declared - FRAMING_SLACK > quota:
            raise over_quota(quota)
        self._streams.setdefault(user.id, set()).add(stream)
        return stream

    def grow(self, stream: Stream, n: int) -> None:
        """``n`` more bytes arrived; 413 ``over_quota`` once this and the user's other
        streams together pass the quota (the final check at :meth:`accept` is exact)."""
        stream.received += n
        if stream.base + self.streaming(stream.user_id) - FRAMING_SLACK > stream.quota:
            raise over_quota(stream.quota)

    def close_stream(self, stream: Stream) -> None:
        streams = self._streams.get(stream.user_id)
        if streams is not None:
            streams.discard(stream)
            if not streams:
                del self._streams[stream.user_id]

    def limits(self, user: User) -> Limits:
        return self.limits_of(user.usertype)

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
        # the caps together; the declared length is reserved against the quota until the
        # upload ends (finished: it is stored; deleted or expired: it is free again)
        async with self.user_lock(user.id):
            if await self.repos.uploads.tus_open_count(user.id) >= cap:
                raise ServiceError(f"you have {cap} unfinished uploads; finish or delete one "
                                   f"first", 429, "too_many_uploads")
            if await self.committed(user.id) + self.streaming(user.id) + length > \
                    self.quota(user):
                raise over_quota(self.quota(user))
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
        return self.limits(user).upload_bytes

    async def accept(self, user: User, kind: str, temp: Path, original_name: str,
                     transfer_seconds: float | None = None, tus_id: str | None = None
                     ) -> dict[str, Any]:
        """Check ``temp`` and file it for ``user``; returns the upload record.

        ``transfer_seconds``: how long the bytes took to arrive, for the metrics (the
        handler knows when the upload began). ``tus_id``: the resumable upload these
        bytes finish (its reservation is this file, not another one against the quota).
        The thumbnail is made by the same bounded probe child.
        """
        thumb = self.media.temp_path(".thumb.part")
        filepath = None
        try:
            check_kind(kind)
            size = temp.stat().st_size
            if size == 0:
                raise ServiceError("the uploaded file is empty")
            if size > self.max_bytes(user):
                raise ServiceError("the file is larger than your upload limit", 413, "too_large")
            info = await self.run_io(self._probe, kind, temp, self.probe_limits(user), thumb)
            # the upload's own length limit: a task may swap a part of a longer video
            limit = self.limits(user).upload_video_seconds
            if kind == "video" and (info.get("duration") or 0) > limit:
                raise ServiceError(
                    f"the video is {info['duration']:.0f} s long; your limit is {limit:.0f} s",
                    413, "too_long")
            ext = _extension(kind, original_name, temp)
            async with self.user_lock(user.id):
                # exact: what is stored and reserved now, this file included
                if await self.committed(user.id, tus_id) + size > self.quota(user):
                    raise over_quota(self.quota(user))
                doc = await self.repos.users.by_id(user.id)
                if doc is None or doc.get("disabled"):  # deleted or disabled meanwhile
                    raise ServiceError("the account is no longer active", 401, "not_logged_in")
                filepath = self.media.store(temp, user.username, original_name, ext)
                thumbed = bool(info.get("thumbnail")) and thumb.exists()
                if thumbed:
                    os.replace(thumb, self.media.thumb_path(filepath))
                record = await self.repos.uploads.record(user.id, filepath, kind, size, info,
                                                         thumbnail=thumbed)
        except BaseException:
            if filepath is not None:
                self.media.remove(filepath)
                self.media.remove_thumb(filepath)
            raise
        finally:
            for leftover in (temp, thumb, Path(f"{thumb}.part")):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
        self.metrics.upload_bytes.labels(kind).observe(size)
        if transfer_seconds is not None:
            self.metrics.upload_seconds.labels(kind).observe(max(0.0, transfer_seconds))
        return record

    @staticmethod
    def _probe(kind: str, path: Path, limits: ProbeLimits, thumbnail: Path | None = None
               ) -> dict[str, Any]:
        """Probe in a bounded child process (engine.probe): whatever the file claims,
        the server's own memory does not grow; refusals keep their reason."""
        try:
            return probe_isolated(kind, str(path), limits, faces=kind == "image",
                                  thumbnail=str(thumbnail) if thumbnail else None)
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

    def make_thumbnail(self, user: User, filepath: str) -> bool:
        """A thumbnail for a file the service made (a result), in the bounded child;
        blocking (run it on :meth:`run_io`). False when none could be made."""
        path = self.media.resolve(filepath, user.username, user.is_admin)
        temp = self.media.temp_path(".thumb.part")
        try:
            probe_isolated("thumbnail", str(path), self.probe_limits(user), thumbnail=str(temp))
            os.replace(temp, self.media.thumb_path(filepath))
            return True
        except (engine.EngineError, OSError):
            return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()

    async def purge_owner(self, user_id: int, username: str) -> None:
        """Every file of a user that is being deleted: records, resumable uploads in
        flight, media and thumbnail folders. Holds the user's lock, so that no upload
        being stored meanwhile slips in after the folders are gone."""
        async with self.user_lock(user_id):
            for upload in await self.repos.uploads.tus_for_owner(user_id):
                lock = self.tus_locks.get(upload["_id"])
                if lock is not None:
                    lock.terminated = True  # a PATCH in flight ends with 410
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.tus_part(upload["_id"]))
            await self.repos.uploads.delete_for_owner(user_id)
            self.media.remove_user(username)
        self._user_locks.pop(user_id, None)

    async def expire_partial(self) -> int:
        """Delete resumable uploads that were not finished in time (file and record)."""
        expired = await self.repos.uploads.tus_expired(dt.datetime.now(dt.UTC))
        for upload in expired:
            with contextlib.suppress(FileNotFoundError):
                self.tus_part(upload["_id"]).unlink()
            await self.repos.uploads.tus_delete(upload["_id"])
        return len(expired)
