"""One swapped frame before the task (``/video/preview``): same inputs, options, engine.

The inputs are checked exactly as ``/video/faceswap`` checks them (the task service's
own checks: ownership, kinds, the photo's verdict, the chosen faces), and the frame
is made by :func:`engine.preview_frame` with the task's options and output height,
in a dedicated warm engine process that never waits behind queued swaps
(:class:`engine.interactive.InteractiveWorker`, normal priority while swap workers
run niced). Bounded: a per-user rate (``preview_per_minute``), one preview in flight
per user, and a timeout after which the process is replaced.

The two JPEGs land in the owner's media folder (served by the media routes, which
check ownership) and are recorded with an expiry: at most ``previews_kept`` per user
stay, none longer than ``preview_keep_minutes`` (housekeeping).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
from typing import Any

from conf import Settings, limits_for
from engine.errors import EngineError
from engine.interactive import InteractiveWorker, WorkerCrashed, WorkerTimeout
from services import ServiceError
from services.accounts import User
from services.faces import RateLimit, media_url
from services.tasks import QUALITIES, TaskService
from storage import MediaStore, Repositories


class PreviewService:
    def __init__(self, repos: Repositories, media: MediaStore, settings: Settings,
                 tasks: TaskService, worker: InteractiveWorker | None = None) -> None:
        self.repos = repos
        self.media = media
        self.settings = settings
        self.tasks = tasks
        self.worker = worker or InteractiveWorker("preview",
                                                  memory_mb=settings.interactive_memory_mb)
        self.rate = RateLimit(settings.preview_per_minute)
        self._busy: set[int] = set()

    async def make(self, user: User, imagepath: str | list[str], videopath: str, at_s: float, *,
                   many_faces: bool = False, keep_mouth: bool = False,
                   quality: str = "balanced", target_face: Any = None,
                   source_face: Any = None) -> dict[str, Any]:
        """``{"preview", "original", "at_s", "faces", "warnings"}`` for the frame at ``at_s``."""
        if quality not in QUALITIES:
            raise ServiceError(f"quality must be one of {', '.join(QUALITIES)}")
        photos, face_video = await self.tasks.own_face(user, imagepath)
        if source_face is not None and (face_video is not None or len(photos) != 1):
            raise ServiceError("source_face chooses a person of one photo; give imagepath as "
                               "that photo", 400, "bad_face_id")
        video = await self.tasks.own_upload(user, videopath, "video", ("video", "image"))
        duration = video.get("duration") or 0.0
        if video["kind"] == "image":  # a photo target: its one picture, whatever at_s
            at_s = 0.0
        elif at_s < 0 or (duration and at_s > duration):
            raise ServiceError(f"at_s must be between 0 and the video's length ({duration:.2f} "
                               "s)", 400, "bad_time")
        checks = [p["photo_check"] for p in photos if p.get("photo_check") is not None]
        chosen = await self.tasks.chosen_faces(user, imagepath, videopath, target_face,
                                               source_face)
        if checks and source_face is None and not any(c["ok"] for c in checks):
            raise ServiceError(checks[0]["msg"], 400, checks[0]["code"])
        face: str | list[str] = [str(p["path"]) for p in photos]
        if len(face) == 1:
            face = face[0]
        if user.id in self._busy:
            raise ServiceError("a preview of yours is being made; wait for it", 429,
                               "too_many_previews")
        if not self.rate.take(user.id):
            raise ServiceError("too many previews in the last minute; try again shortly", 429,
                               "too_many_previews")
        self._busy.add(user.id)
        temps = [self.media.temp_path(".jpg.part"), self.media.temp_path(".jpg.part")]
        try:
            try:
                info = await self.worker.call(
                    "engine:preview_frame", face, str(video["path"]), at_s,
                    timeout=self.settings.preview_timeout_s, preview_path=str(temps[0]),
                    original_path=str(temps[1]), many_faces=many_faces, keep_mouth=keep_mouth,
                    quality=quality, max_height=limits_for(user.usertype).output_height
                    if video["kind"] == "video" else None,
                    target=chosen.get("target"), source_box=chosen.get("source_box"),
                    warmup_s=self.settings.preview_warmup_s,
                    face_video=None if face_video is None else str(face_video["path"]))
            except WorkerTimeout:
                raise ServiceError("the preview took too long", 503, "preview_timeout") from None
            except WorkerCrashed:
                raise ServiceError("the preview failed (out of memory?)", 500,
                                   "preview_failed") from None
            except EngineError as exc:
                raise ServiceError(str(exc), 422, getattr(exc, "code", None)
                                   or "preview_failed") from None
            names = await self._keep(user, temps)
        finally:
            self._busy.discard(user.id)
            for temp in temps:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
        warnings = list(info.get("warnings") or [])
        if info.get("faces") == 0:
            warnings.append({"code": "no_face_in_frame",
                             "msg": "no face to swap was found in this frame"
                                    + (" (the chosen person is not in it)"
                                       if target_face is not None else "")})
        return {"preview": media_url(names[0]), "original": media_url(names[1]),
                "at_s": info["at_s"], "faces": info["faces"], "warnings": warnings}

    async def _keep(self, user: User, temps: list) -> list[str]:
        """Move the files into the user's folder, then record them with their expiry; the
        oldest previews beyond ``previews_kept`` are deleted.

        Linked under fresh names first (``os.link`` never replaces a file): the record
        then only ever names files made here, so expiry cannot delete a user's own."""
        self.media.user_dir(user.username)
        names: list[str] = []
        try:
            for temp, suffix in zip(temps, ("", "-original"), strict=True):
                for _ in range(5):
                    name = f"{user.username}/preview-{secrets.token_hex(6)}{suffix}.jpg"
                    try:
                        os.link(temp, self.media.root / name)
                    except FileExistsError:
                        continue
                    names.append(name)
                    break
                else:
                    raise ServiceError("could not name the preview", 500, "internal_error")
            expires = dt.datetime.now(dt.UTC) + dt.timedelta(
                minutes=self.settings.preview_keep_minutes)
            await self.repos.faces.add_preview(user.id, names, expires)
        except BaseException:
            for name in names:
                self.media.remove(name)
            raise
        previews = await self.repos.faces.previews_of(user.id)
        for old in previews[:max(0, len(previews) - self.settings.previews_kept)]:
            await self._drop(old)
        return names

    async def _drop(self, preview: dict[str, Any]) -> None:
        for name in preview["files"]:
            with contextlib.suppress(Exception):
                self.media.remove(name)
        await self.repos.faces.remove_preview(preview["_id"])

    async def expire(self) -> int:
        """Delete previews past ``preview_keep_minutes`` (housekeeping)."""
        old = await self.repos.faces.expired_previews(dt.datetime.now(dt.UTC))
        for preview in old:
            await self._drop(preview)
        return len(old)

    async def forget_owner(self, owner_id: int) -> None:
        """Every preview of one user (the account is deleted)."""
        for preview in await self.repos.faces.previews_of(owner_id):
            await self._drop(preview)

    async def close(self) -> None:
        await self.worker.close()
