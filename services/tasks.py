"""Swap tasks: validation, a fair queue in front of the dispatcher, live state, subscribers.

State lives in memory while a task is queued or running (the source of truth for
view_task and the WebSocket) and is written to MongoDB on every state change and at
most every :data:`DB_WRITE_INTERVAL` seconds in between. On start-up, tasks that an
earlier run left queued or running are queued again and their partial outputs removed.

Every event of a task (created, requeued, started, cancel_requested, finished, failed,
cancelled, expired; save_failed and internal_error when something goes wrong) is one log
line with its ``task_id`` (:func:`services.metrics.event_line`). Progress is not logged:
it goes to subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import engine
from conf import Limits, limits_for
from engine.dispatch import Dispatcher, Job, JobFailed
from engine.probe import probe_isolated
from services import ServiceError
from services.accounts import User
from services.faces import FaceService
from services.metrics import Metrics, event_line
from services.uploads import UploadService, own_upload
from storage import DatabaseError, MediaStore, OutputTaken, PathRefused, Repositories

log = logging.getLogger(__name__)

DB_WRITE_INTERVAL = 2.0
QUALITIES = ("fast", "balanced", "high")
MAX_FACE_PHOTOS = 10  #: photos of one person a face may be made of (engine.library)
MAX_FACE_VIDEO_SECONDS = 30.0  #: length of a face video (engine.library)
#: The output's stem: no leading or trailing dot and no ``..`` (``abc.`` would make
#: ``abc..mp4``, which the media store rightly refuses as a path).
SWAPNAME_RE = re.compile(r"(?!.*\.\.)[A-Za-z0-9_\-\u3400-\u4dbf\u4e00-\u9fff]"
                         r"(?:[A-Za-z0-9_.\-\u3400-\u4dbf\u4e00-\u9fff]{0,62}"
                         r"[A-Za-z0-9_\-\u3400-\u4dbf\u4e00-\u9fff])?")
FINISHED_TEXT = "转换结束"  # the seed's "conversion finished", which old clients look for
#: States after which a task may be run again with the same inputs (retry_task).
RETRYABLE = ("finished", "failed", "cancelled", "expired", "deleted")
#: What a retry copies from the task besides its inputs: every option of faceswap, and
#: the chosen people as the task keeps them (face ids, descriptor, box).
RETRY_OPTIONS = ("many_faces", "keep_mouth", "quality", "start_s", "end_s")
RETRY_CHOSEN = ("target_face", "target", "source_face", "source_box")
#: Longest page of GET /video/tasks (also the length of the old, unpaged list).
PAGE_MAX = 200

Subscriber = Callable[[dict[str, Any]], None]


def public_view(task: dict[str, Any]) -> dict[str, Any]:
    """The view_task / WebSocket object for one task, in the contract's codes."""
    view = {key: task.get(key) for key in
            ("task_id", "swapname", "state", "frames_done", "frames_total", "fps", "eta_s",
             "reported_at")}
    view["warnings"] = task.get("warnings") or []  # the photo's findings (engine.photo)
    view["kind"] = task.get("kind") or "video"  # what the result is: a video or a photo
    state = task["state"]
    if state == "finished":
        view.update(status=1, progress=FINISHED_TEXT, filepath=task["filepath"])
    elif state in ("failed", "cancelled", "expired", "deleted"):
        view.update(status=2, progress=task.get("error") or f"the task was {state}")
        if task.get("error_code"):  # the engine's refusal, e.g. faces_not_same_person
            view["code"] = task["error_code"]
    else:
        view.update(status=0, progress=task.get("percent", 0.0))
    return view


def listing_view(task: dict[str, Any]) -> dict[str, Any]:
    view = public_view(task)
    view.update({key: task.get(key) for key in ("imagepath", "videopath", "many_faces",
                                                "keep_mouth", "quality", "error", "start_s",
                                                "end_s", "target_face",
                                                "source_face")})
    view["progress_percent"] = 100.0 if task["state"] == "finished" else task.get("percent", 0.0)
    created = task.get("created")
    view["created"] = created.isoformat() if isinstance(created, dt.datetime) else created
    if task["state"] != "finished":
        view.pop("filepath", None)
    return view


def _frame_budget(video: dict[str, Any], seconds: float,
                  segment: tuple[float, float] | None = None) -> int | None:
    """Frames of ``video`` within ``seconds`` (of the segment, when one is swapped), from
    what the upload probe counted.

    The worker stops there, so a length limit holds in the worker too, whatever the
    container says (the probe measured packets and their timestamps' span). A segment's
    budget is its share of the frames at the video's mean rate, rounded up, plus one: the
    reader stops at ``end_s`` itself, the budget only bounds the work.
    """
    frames, duration = video.get("frames"), video.get("duration")
    if not frames or not duration:
        return None
    if segment is not None:
        span = min(segment[1] - segment[0], seconds)
        return max(1, math.ceil(frames * span / duration - 1e-9) + 1)
    if duration <= seconds:
        return int(frames)
    return max(1, int(frames * seconds / duration))


def downscale_warning(width: int | None, height: int | None, out_width: int | None,
                      out_height: int | None, max_height: int) -> dict[str, Any] | None:
    """``output_downscaled`` when the output is smaller than the input, with both sizes
    and the reason (the usertype's ``output_height``)."""
    if not (width and height and out_height) or out_height >= height:
        return None
    return {"code": "output_downscaled",
            "msg": f"the output is {out_width}x{out_height} instead of {width}x{height}: "
                   f"your account's output limit is {max_height} pixels high",
            "width": out_width, "height": out_height, "input_width": width,
            "input_height": height, "reason": "usertype_output_height",
            "max_height": max_height}


def expected_size(width: int | None, height: int | None, max_height: int
                  ) -> tuple[int | None, int | None]:
    """The output size the engine's reader scales to (engine.decode: even sizes)."""
    if not (width and height) or height <= max_height:
        return width, height
    out_h = max(2, max_height // 2 * 2)
    return max(2, int(round(width * out_h / height / 2.0)) * 2), out_h


NO_FACE_WARNING = {"code": "no_face_in_video",
                   "msg": "no face was found in the video: the output is the input unchanged"}


#: How far past the probed duration ``end_s`` may be (the page rounds times it shows).
SEGMENT_SLACK_S = 0.001


def check_segment(video: dict[str, Any], start_s: float | None, end_s: float | None
                  ) -> tuple[float, float] | None:
    """``(start, end)`` in seconds of the part of ``video`` to swap, None for all of it.

    0 <= start < end <= the video's duration (as the upload probe measured it), and
    at least one frame long; otherwise 400 ``bad_segment`` / ``segment_too_short``.
    """
    if start_s is None and end_s is None:
        return None
    duration = float(video.get("duration") or 0.0)
    start = 0.0 if start_s is None else float(start_s)
    end = (duration or math.inf) if end_s is None else float(end_s)
    if start < 0:
        raise ServiceError("start_s must be 0 or more", 400, "bad_segment")
    if duration and start >= duration:
        raise ServiceError(f"start_s must be before the video's end ({duration:.3f} s)", 400,
                           "bad_segment")
    if end <= start:
        raise ServiceError("end_s must be after start_s", 400, "bad_segment")
    if duration and end > duration + SEGMENT_SLACK_S:
        raise ServiceError(f"end_s is past the video's end ({duration:.3f} s)", 400,
                           "bad_segment")
    frames = video.get("frames")
    if frames and duration and end - start < duration / frames - 1e-6:
        raise ServiceError(f"the segment is shorter than one frame "
                           f"({duration / frames:.3f} s)", 400, "segment_too_short")
    return start, min(end, duration) if duration else end


def result_extension(kind: str, target: Path) -> str:
    """The result's extension: ``.mp4`` for a video; for a photo ``.png`` when the
    target is a PNG (by its content), else ``.jpg``."""
    if kind == "video":
        return ".mp4"
    with open(target, "rb") as f:
        return ".png" if f.read(8) == b"\x89PNG\r\n\x1a\n" else ".jpg"
def _event(event: str, task: dict[str, Any], level: int = logging.INFO,
           **fields: object) -> None:
    log.log(level, event_line(event, task["task_id"], owner=task.get("username"), **fields))


class TaskService:
    def __init__(self, repos: Repositories, media: MediaStore, dispatcher: Dispatcher,
                 uploads: UploadService | None = None, metrics: Metrics | None = None,
                 faces: FaceService | None = None,
                 limits: Callable[[int], Limits] = limits_for) -> None:
        self.repos = repos
        self.limits = limits  #: usertype → its conf/ limits (from the context)
        #: The kept people of files (``target_face`` / ``source_face``); None: refused.
        self.faces = faces
        self.uploads = uploads or UploadService(repos, media)
        self.media = media
        self.dispatcher = dispatcher
        self.metrics = metrics or self.uploads.metrics
        self.live: dict[str, dict[str, Any]] = {}  # queued and running tasks
        self.queue: list[str] = []  # task ids in arrival order
        self.running: dict[str, asyncio.Task] = {}
        self.subscribers: dict[int, set[Subscriber]] = {}
        self._last_write: dict[str, float] = {}

    # -- lifecycle --------------------------------------------------------------------
    async def recover(self) -> int:
        """Queue again what an earlier run left unfinished; remove partial outputs."""
        tasks = await self.repos.tasks.unfinished()
        for task in tasks:
            self._remove_partial(task["task_id"])
            task.update(state="queued", percent=0.0, frames_done=0, fps=None, eta_s=None)
            task.pop("started", None)  # the earlier run's; this run sets its own
            await self.repos.tasks.update(task["task_id"], {"state": "queued", "percent": 0.0,
                                                            "frames_done": 0})
            self.live[task["task_id"]] = task
            self.queue.append(task["task_id"])
            _event("requeued", task)
        if tasks:
            log.info("re-queued %d unfinished task(s) from the last run", len(tasks))
        self._pump()
        return len(tasks)

    async def expire_results(self, retention_days: float) -> int:
        """Delete results older than ``retention_days`` (0: keep forever); the task stays
        listed as ``expired`` so its owner learns what happened."""
        if retention_days <= 0:
            return 0
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=retention_days)
        tasks = await self.repos.tasks.finished_before(cutoff)
        for task in tasks:
            await self._remove_result(task)
            await self._release(task)
            await self.repos.tasks.update(task["task_id"], {
                "state": "expired", "error": "the result was deleted after the retention period"})
            _event("expired", task)
        return len(tasks)

    async def close(self) -> None:
        for task in list(self.running.values()):
            task.cancel()
        await self.dispatcher.close()

    # -- requests ---------------------------------------------------------------------
    async def create(self, user: User, imagepath: str | list[str], videopath: str,
                     swapname: str, *, many_faces: bool = False, keep_mouth: bool = False,
                     quality: str = "balanced", start_s: float | None = None,
                     end_s: float | None = None, target_face: str | None = None,
                     source_face: str | None = None,
                     chosen: dict[str, Any] | None = None) -> str:
        """Queue a swap; ``imagepath`` is one photo, a list of up to
        :data:`MAX_FACE_PHOTOS` photos of one person, or one face video (see
        :meth:`_own_face`); ``videopath`` may name a video or a photo (the result is then
        a photo), ``start_s``/``end_s`` a segment of the video (the length limit applies
        to the segment); ``target_face`` / ``source_face`` a person of each, from
        ``/video/faces`` (``source_face`` only with one photo)."""
        if not SWAPNAME_RE.fullmatch(swapname):
            raise ServiceError("swapname must be 1-64 letters, digits, CJK or _ - . characters, "
                               "not starting or ending with a dot", 400, "bad_swapname")
        if quality not in QUALITIES:
            raise ServiceError(f"quality must be one of {', '.join(QUALITIES)}")
        photos, face_video = await self._own_face(user, imagepath)
        video = await self._own_upload(user, videopath, "video", ("video", "image"))
        kind = video["kind"]
        limits = self.limits(user.usertype)
        segment = None
        if kind == "image":
            if start_s is not None or end_s is not None:
                raise ServiceError("start_s and end_s apply to a video, not to a photo", 400,
                                   "bad_segment")
            if video.get("faces") == 0:  # counted at upload (older records: not known)
                raise ServiceError("no face found in the target photo", 400,
                                   "no_face_in_target")
        else:
            segment = check_segment(video, start_s, end_s)
            length = (segment[1] - segment[0]) if segment else (video.get("duration") or 0)
            if length > limits.video_seconds:
                what = "the segment" if segment else "the video"
                raise ServiceError(f"{what} is {length:.0f} s long, longer than your limit of "
                                   f"{limits.video_seconds:.0f} s: choose a part of it with "
                                   f"start_s and end_s", 413, "too_long")
        # uploads are checked on arrival; this holds for files recorded before those checks
        # and for a user whose tier went down since
        target_limit = (limits.video_pixels, "video") if kind == "video" \
            else (limits.photo_pixels, "photo")
        sized = [(p, limits.photo_pixels, "photo") for p in photos]
        if face_video is not None:
            sized.append((face_video, limits.video_pixels, "video"))
        for record, limit, what in (*sized, (video, *target_limit)):
            if (record.get("width") or 0) * (record.get("height") or 0) > limit:
                raise ServiceError(f"the {what} has more pixels than your limit of "
                                   f"{limit / 1e6:.1f} megapixels", 413, f"{what}_too_large")
        ext = result_extension(kind, video["path"])
        filepath = f"{user.username}/{swapname}{ext}"
        if self.media.exists(filepath) or await self.repos.tasks.output_taken(filepath):
            raise ServiceError(f"an output named {swapname}{ext} already exists", 409,
                               "name_taken")
        if len(await self.repos.tasks.active_for_owner(user.id)) >= limits.unfinished_tasks:
            raise ServiceError("too many unfinished tasks; wait for some to finish", 429,
                               "too_many_tasks")
        if await self.uploads.usage(user.id) >= self.uploads.quota(user):
            raise ServiceError("your storage quota is full; delete some files first", 413,
                               "over_quota")
        if source_face is not None and (face_video is not None or len(photos) != 1):
            raise ServiceError("source_face chooses a person of one photo; give imagepath as "
                               "that photo", 400, "bad_face_id")
        checks = []
        for image in photos:
            check = image.get("photo_check")
            if check is None:  # an upload recorded before photos were checked at upload
                check = await self._check_photo(user, image["path"])
            checks.append(check)
        # ``chosen``: a retry's people, as its task stored them (the faces may be forgotten)
        chosen = dict(chosen) if chosen is not None else \
            await self.chosen_faces(user, imagepath, videopath, target_face, source_face)
        # Judged by the bounded probe process, never in the server. Of several photos,
        # a hopeless one is left out by the engine (and said so); all hopeless: refused.
        # A chosen person of a group photo is judged by the engine itself.
        if checks and "source_face" not in chosen and not any(c["ok"] for c in checks):
            raise ServiceError(checks[0]["msg"], 400, checks[0]["code"])
        check = checks[0] if len(checks) == 1 else {"warnings": []}
        task = {"task_id": secrets.token_hex(8), "owner_id": user.id,
                "username": user.username, "usertype": user.usertype,
                "imagepath": imagepath, "videopath": videopath, "swapname": swapname,
                "face_video": face_video is not None,
                "filepath": filepath, "many_faces": many_faces, "keep_mouth": keep_mouth,
                "quality": quality, "state": "queued", "percent": 0.0, "frames_done": 0,
                "frames_total": None, "fps": None, "eta_s": None, "error": None,
                "max_frames": _frame_budget(video, limits.video_seconds, segment)
                if kind == "video" else None,
                "kind": kind, "start_s": start_s, "end_s": end_s,
                "input_width": video.get("width"), "input_height": video.get("height"),
                "input_duration": (segment[1] - segment[0]) if segment else
                (min(video.get("duration") or 0, limits.video_seconds) or None),
                "warnings": list(check.get("warnings") or []), **chosen}
        # known now, from the upload's probe: said at once, confirmed when it is done
        # (a photo target keeps its size)
        scaled = downscale_warning(video.get("width"), video.get("height"),
                                   *expected_size(video.get("width"), video.get("height"),
                                                  limits.output_height), limits.output_height
                                   ) if kind == "video" else None
        if scaled is not None:
            task["warnings"].append(scaled)
        try:
            await self.repos.tasks.create(dict(task))
        except OutputTaken:
            raise ServiceError(f"an output named {swapname}{ext} already exists", 409,
                               "name_taken") from None
        owner = await self.repos.users.by_id(user.id)
        if owner is None or owner.get("disabled"):  # deleted or disabled meanwhile: the
            await self.repos.tasks.delete(task["task_id"])  # account's purge ran before us
            raise ServiceError("this account is disabled", 403, "account_disabled")
        task["created"] = dt.datetime.now(dt.UTC)
        self.live[task["task_id"]] = task
        self.queue.append(task["task_id"])
        _event("created", task, swapname=swapname, quality=quality, many_faces=many_faces,
               keep_mouth=keep_mouth, kind=kind, start_s=start_s, end_s=end_s,
               queue_length=len(self.queue))
        self._notify(task)
        self._pump()
        return task["task_id"]

    async def chosen_faces(self, user: User, imagepath: str, videopath: str,
                           target_face: Any = None, source_face: Any = None
                           ) -> dict[str, Any]:
        """The task fields of a chosen person: ``target_face`` of the video (its descriptor
        goes to the engine as ``target``) and ``source_face`` of the photo (its box goes
        as ``source_box``). Kept in the task, so it runs (and is retried) as created
        even if the file's faces are forgotten meanwhile."""
        out: dict[str, Any] = {}
        if target_face is None and source_face is None:
            return out
        if self.faces is None:
            raise ServiceError("choosing a face is not available", 400, "bad_request")
        if target_face is not None:
            face = await self.faces.choice(user, videopath, target_face, "target_face")
            out.update(target_face=face["face_id"], target=face["descriptor"])
        if source_face is not None:
            face = await self.faces.choice(user, imagepath, source_face, "source_face")
            out.update(source_face=face["face_id"], source_box=face["box"])
        return out

    async def own_upload(self, user: User, filepath: str, field: str,
                         kinds: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The caller's upload record behind ``<field>path`` (of one of ``kinds``, default
        ``field``) with its ``path``: 404/403/400 otherwise (the preview's checks)."""
        return await self._own_upload(user, filepath, field, kinds)

    async def own_face(self, user: User, imagepath: str | list[str]
                       ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """The face's upload records, checked as faceswap checks them (the preview's)."""
        return await self._own_face(user, imagepath)

    async def _check_photo(self, user: User, path: Path) -> dict[str, Any]:
        """The engine's verdict on a source photo, from the bounded probe process:
        dlib's detector on the server's threads crashed it when several faceswap calls
        came at once."""
        try:
            info = await self.uploads.run_io(probe_isolated, "image", str(path),
                                             self.uploads.probe_limits(user), True)
        except engine.EngineError as exc:
            raise ServiceError(str(exc), 415, "not_an_image") from None
        return info["photo_check"]

    async def _own_face(self, user: User, imagepath: str | list[str]
                        ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """The face's uploads, each the caller's own: ``(photos, None)`` for one photo or a
        list of up to :data:`MAX_FACE_PHOTOS` (no repeats), ``([], video)`` for one face
        video of at most :data:`MAX_FACE_VIDEO_SECONDS`."""
        if isinstance(imagepath, list):
            if not imagepath:
                raise ServiceError("imagepath: give at least one photo")
            if len(imagepath) > MAX_FACE_PHOTOS:
                raise ServiceError(f"imagepath: at most {MAX_FACE_PHOTOS} photos of the face",
                                   400, "too_many_photos")
            if len(set(imagepath)) != len(imagepath):
                raise ServiceError("imagepath: the same photo is given twice")
            return [await self._own_upload(user, p, "image") for p in imagepath], None
        record = await self._own_upload(user, imagepath, "image", ("image", "video"))
        if record["kind"] == "image":
            return [record], None
        if (record.get("duration") or 0) > MAX_FACE_VIDEO_SECONDS:
            raise ServiceError(f"the face video is longer than {MAX_FACE_VIDEO_SECONDS:.0f} s",
                               413, "face_video_too_long")
        return [], record

    async def _own_upload(self, user: User, filepath: str, field: str,
                          kinds: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The caller's upload record behind ``<field>path``, of one of ``kinds``
        (default: ``field`` itself), with its resolved ``path``."""
        return await own_upload(self.repos, self.media, user, filepath, field,
                                kinds or (field,))

    async def get(self, user: User, task_id: str) -> dict[str, Any]:
        task = self.live.get(task_id) or await self.repos.tasks.get(task_id)
        if task is None or (task["owner_id"] != user.id and not user.is_admin):
            raise ServiceError("no such task", 404)  # someone else's task does not exist
        return task

    async def view(self, user: User, task_id: str) -> dict[str, Any]:
        return public_view(await self.get(user, task_id))

    async def list(self, user: User, limit: int | None = None, before: str | None = None
                   ) -> list[dict[str, Any]]:
        """Newest first: ``limit`` of them (at most :data:`PAGE_MAX`, the default), older
        than the task ``before`` (one of the caller's: else 404)."""
        after = None
        if before is not None:
            after = await self.repos.tasks.get(before)
            if after is None or after["owner_id"] != user.id:
                raise ServiceError("before: no such task", 404)
        tasks = await self.repos.tasks.for_owner(user.id, min(limit or PAGE_MAX, PAGE_MAX),
                                                 after)
        return [listing_view(self.live.get(t["task_id"], t)) for t in tasks]

    async def retry(self, user: User, task_id: str, swapname: str | None = None) -> str:
        """The same inputs and options again, as a new task. Without ``swapname`` the old
        name is used if it is free, else the first free ``<name>-2``, ``-3``, ..."""
        task = await self.get(user, task_id)
        if task["state"] not in RETRYABLE:
            raise ServiceError(f"the task is {task['state']}; only an ended task can be "
                               f"retried", 409, "task_active")
        owner = await self._owner(task)
        if swapname is None:
            swapname = await self._free_name(owner, task["swapname"],
                                             os.path.splitext(task["filepath"])[1] or ".mp4")
        return await self.create(owner, task["imagepath"], task["videopath"], swapname,
                                 **{k: task[k] for k in RETRY_OPTIONS if k in task},
                                 chosen={k: task[k] for k in RETRY_CHOSEN
                                         if task.get(k) is not None})

    async def _owner(self, task: dict[str, Any]) -> User:
        doc = await self.repos.users.by_id(task["owner_id"])
        if doc is None:
            raise ServiceError("no such task", 404)
        return User.from_doc(doc)

    async def _free_name(self, user: User, stem: str, ext: str) -> str:
        for n in range(1, 100):
            name = stem if n == 1 else f"{stem[:60]}-{n}"
            filepath = f"{user.username}/{name}{ext}"
            if not self.media.exists(filepath) and \
                    not await self.repos.tasks.output_taken(filepath):
                return name
        raise ServiceError("no free output name; give a swapname", 409, "name_taken")

    async def delete(self, user: User, task_id: str) -> None:
        """Cancel the task if it has not ended, then remove it and its result (file,
        thumbnail and record)."""
        task = await self.get(user, task_id)
        await self._stop(task)
        task = await self.repos.tasks.get(task_id) or task
        await self._remove_result(task)
        await self.repos.tasks.delete(task_id)
        _event("deleted", task, by=user.username)
        self._notify({**task, "state": "deleted", "error": "the task was deleted"})

    async def _stop(self, task: dict[str, Any], timeout: float = 15.0) -> None:
        """Cancel a queued or running task and wait until it has ended."""
        task_id = task["task_id"]
        if task_id in self.queue:
            self.queue.remove(task_id)
            await self._finish(task, "cancelled", error="the task was cancelled")
            return
        running = self.running.get(task_id)
        if running is None:
            return
        if task["state"] in ("queued", "running"):
            self.dispatcher.cancel(task_id)
        # also when it is just finishing (its result being recorded): wait for the end
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(running), timeout)

    async def _remove_result(self, task: dict[str, Any]) -> None:
        filepath = task.get("filepath")
        if not filepath:
            return
        record = await self.repos.uploads.get(filepath)
        if record is not None and (record.get("origin") != "result"
                                   or record.get("task_id") != task["task_id"]):
            return  # the name is another file now (a later task's result)
        if record is not None or task.get("state") == "finished":
            await self.repos.uploads.delete(filepath)
            self.media.remove(filepath)
            self.media.remove_thumb(filepath)

    async def result_deleted(self, task_id: str) -> None:
        """The result of ``task_id`` was deleted by its owner: the task says so, and its
        output name is free again."""
        task = await self.repos.tasks.get(task_id)
        if task is None or task["state"] != "finished":
            return
        await self._release(task)
        await self.repos.tasks.update(task_id, {"state": "deleted",
                                                "error": "the result was deleted"})
        task.update(state="deleted", error="the result was deleted")
        _event("result_deleted", task)
        self._notify(task)

    async def purge_owner(self, owner_id: int) -> None:
        """Account deletion: stop the owner's tasks, then remove them all (their result
        files go with the owner's folders)."""
        for task in [t for t in self.live.values() if t["owner_id"] == owner_id]:
            await self._stop(task)
        await self.repos.tasks.delete_for_owner(owner_id)

    async def backfill_results(self) -> int:
        """Results made before the file list had no record: record them (once, at start)
        so that they are listed, counted against the quota and can be deleted."""
        added = 0
        for task in await self.repos.tasks.finished_before(dt.datetime.now(dt.UTC)):
            filepath = task["filepath"]
            if await self.repos.uploads.get(filepath) is not None:
                continue
            try:
                size = (self.media.root / filepath).stat().st_size
            except (OSError, PathRefused):
                continue
            with contextlib.suppress(Exception):
                await self.repos.uploads.record(task["owner_id"], filepath,
                                                task.get("kind") or "video", size, {},
                                                origin="result", task_id=task["task_id"])
                added += 1
        return added

    def snapshot(self, owner_id: int) -> list[dict[str, Any]]:
        return [public_view(t) for t in self.live.values() if t["owner_id"] == owner_id]

    async def cancel(self, user: User, task_id: str) -> None:
        task = await self.get(user, task_id)
        if task["state"] not in ("queued", "running"):
            raise ServiceError(f"the task is already {task['state']}", 409, "task_done")
        _event("cancel_requested", task, state=task["state"], by=user.username)
        if task_id in self.queue:
            self.queue.remove(task_id)
            await self._finish(task, "cancelled", error="the task was cancelled")
        else:
            self.dispatcher.cancel(task_id)

    # -- subscribers ------------------------------------------------------------------
    def subscribe(self, owner_id: int, callback: Subscriber) -> None:
        self.subscribers.setdefault(owner_id, set()).add(callback)

    def unsubscribe(self, owner_id: int, callback: Subscriber) -> None:
        callbacks = self.subscribers.get(owner_id)
        if callbacks is not None:
            callbacks.discard(callback)
            if not callbacks:
                del self.subscribers[owner_id]

    def subscriber_count(self) -> int:
        """Live-feed subscribers: one per open /ws/tasks connection."""
        return sum(len(callbacks) for callbacks in self.subscribers.values())

    def _notify(self, task: dict[str, Any]) -> None:
        view = public_view(task)
        for callback in list(self.subscribers.get(task["owner_id"], ())):
            callback(view)

    # -- running ----------------------------------------------------------------------
    def _pump(self) -> None:
        """Start queued tasks, in order, while slots are free and owners under their limit."""
        per_owner: dict[int, int] = {}
        for task_id in self.running:
            owner = self.live[task_id]["owner_id"]
            per_owner[owner] = per_owner.get(owner, 0) + 1
        for task_id in list(self.queue):
            if len(self.running) >= self.dispatcher.slots:
                return
            task = self.live[task_id]
            owner = task["owner_id"]
            if per_owner.get(owner, 0) >= self.limits(task["usertype"]).concurrent_tasks:
                continue
            per_owner[owner] = per_owner.get(owner, 0) + 1
            self.queue.remove(task_id)
            self.running[task_id] = asyncio.create_task(self._execute(task))

    def _temp_output(self, task_id: str, ext: str = ".mp4") -> Path:
        """Each task writes inside its own folder under tmp/, whatever temp names the
        engine picks, so one rmtree removes every partial file of the task. ``ext``:
        the result's (the engine writes the format the name says)."""
        folder = self.media.tmp / f"task-{task_id}"
        folder.mkdir(exist_ok=True)
        return folder / f"out{ext}"

    def _remove_partial(self, task_id: str) -> None:
        shutil.rmtree(self.media.tmp / f"task-{task_id}", ignore_errors=True)

    async def _execute(self, task: dict[str, Any]) -> None:
        task_id = task["task_id"]
        try:
            task.update(state="running", started=dt.datetime.now(dt.UTC))
            await self._save(task, {"state": "running", "started": task["started"]})
            queued = (task["started"] - task["created"]).total_seconds() \
                if isinstance(task.get("created"), dt.datetime) else None
            _event("started", task, queued_s=queued)
            self._notify(task)
            owner = task["username"]
            face = task["imagepath"]
            face_video = task.get("face_video")
            kind = task.get("kind") or "video"
            out = self._temp_output(task_id, Path(task["filepath"]).suffix)
            job = Job(task_id=task_id,
                      image_path="" if face_video else (
                          str(self.media.resolve(face, owner)) if isinstance(face, str)
                          else tuple(str(self.media.resolve(p, owner)) for p in face)),
                      face_video=str(self.media.resolve(face, owner)) if face_video else None,
                      video_path=str(self.media.resolve(task["videopath"], owner)),
                      out_path=str(out),
                      many_faces=task["many_faces"], keep_mouth=task["keep_mouth"],
                      quality=task["quality"],
                      # a photo keeps its size (its pixels were bounded at upload)
                      max_height=self.limits(task["usertype"]).output_height
                      if kind == "video" else None,
                      max_frames=task.get("max_frames"), target_kind=kind,
                      start_s=task.get("start_s"), end_s=task.get("end_s"),
                      target=tuple(task["target"]) if task.get("target") else None,
                      source_box=tuple(task["source_box"]) if task.get("source_box") else None)
            result = await self.dispatcher.run(job, lambda *p: self._progress(task, *p))
            self.media.place(out, task["filepath"])
            self._remove_partial(task_id)
            await self._finish(task, "finished", result=result)
        except engine.Cancelled:
            await self._finish(task, "cancelled", error="the task was cancelled")
        except (engine.EngineError, JobFailed) as exc:
            task["error_code"] = getattr(exc, "code", None)  # e.g. faces_not_same_person
            await self._finish(task, "failed", error=str(exc))
        except PathRefused as exc:
            await self._finish(task, "failed", error=f"input file unavailable: {exc.msg}")
        except asyncio.CancelledError:  # server shutdown: leave it queued for the next start
            raise
        except Exception:
            log.exception(event_line("internal_error", task_id))
            await self._finish(task, "failed", error="internal error while running the task")
        finally:
            self.running.pop(task_id, None)
            self._pump()

    def _progress(self, task: dict[str, Any], done: int, total: int, fps: float,
                  sent_at: float) -> None:
        if task["state"] != "running":
            return
        task.update(frames_done=done, frames_total=total, fps=round(fps, 2), reported_at=sent_at,
                    percent=round(min(99.9, 100.0 * done / total), 1) if total else 0.0,
                    eta_s=round((total - done) / fps, 1) if fps and total else None)
        self._notify(task)
        if time.monotonic() - self._last_write.get(task["task_id"], 0.0) >= DB_WRITE_INTERVAL:
            asyncio.ensure_future(self._save(task, {
                key: task[key] for key in ("frames_done", "frames_total", "fps", "percent",
                                           "eta_s")}))

    async def _finish(self, task: dict[str, Any], state: str, *, error: str | None = None,
                      result: dict[str, Any] | None = None) -> None:
        if state == "finished":  # the result is one of the owner's files before it is done
            task.update(output_width=result.get("width"), output_height=result.get("height"),
                        frames_done=result.get("frames"))
            task["warnings"] = self._result_warnings(task, result)
            await self._record_result(task)
        task.update(state=state, error=error, finished=dt.datetime.now(dt.UTC), eta_s=None)
        ran = (task["finished"] - task["started"]).total_seconds() \
            if isinstance(task.get("started"), dt.datetime) else None
        if ran is not None:
            self.metrics.task_seconds.labels(state).observe(ran)
        if state == "finished":
            known = {w.get("code") for w in task.get("warnings") or []}
            # The engine's findings on the face as a whole (a face library's, engine.library).
            task["warnings"] = list(task.get("warnings") or []) + [
                w for w in result.get("warnings") or [] if w.get("code") not in known]
            task.update(percent=100.0, frames_done=result.get("frames"),
                        frames_total=result.get("frames"),
                        swapped_frames=result.get("swapped_frames"))
            if result.get("fps"):
                self.metrics.task_fps.observe(result["fps"])
            _event(state, task, seconds=ran, frames=result.get("frames"),
                   swapped_frames=result.get("swapped_frames"), fps=result.get("fps"))
        else:  # logged before the first await: a reader who sees the state sees the line
            _event(state, task, logging.WARNING if state == "failed" else logging.INFO,
                   seconds=ran, frames_done=task.get("frames_done"), error=error)
            self._remove_partial(task["task_id"])
            await self._release(task)
        self.live.pop(task["task_id"], None)
        fields = {key: task.get(key) for key in ("state", "error", "error_code", "warnings",
                                                 "finished", "percent",
                                                 "frames_done", "frames_total", "fps",
                                                 "eta_s", "swapped_frames",
                                                 "output_width", "output_height")}
        await self._save(task, fields, final=True)
        self._last_write.pop(task["task_id"], None)
        self._notify(task)

    def _result_warnings(self, task: dict[str, Any], result: dict[str, Any]
                         ) -> list[dict[str, Any]]:
        """The task's warnings once the engine has reported: the photo's, then
        ``no_face_in_video`` (no frame swapped) and ``output_downscaled`` as measured."""
        warnings = [w for w in task.get("warnings") or []
                    if w.get("code") not in ("output_downscaled", NO_FACE_WARNING["code"])]
        if (task.get("kind") or "video") != "video":
            return warnings  # a photo target: refused without a face, kept at its size
        if result.get("frames") and result.get("swapped_frames") == 0:
            warnings.append(dict(NO_FACE_WARNING))
        scaled = downscale_warning(task.get("input_width"), task.get("input_height"),
                                   result.get("width"), result.get("height"),
                                   self.limits(task["usertype"]).output_height)
        if scaled is not None:
            warnings.append(scaled)
        return warnings

    async def _record_result(self, task: dict[str, Any]) -> None:
        """The result joins the owner's files: record, size and thumbnail (made in the
        bounded probe child). A failure here leaves the result without a thumbnail, never
        the task failed."""
        filepath = task["filepath"]
        try:
            size = self.media.resolve(filepath, task["username"]).stat().st_size
            owner = User(id=task["owner_id"], username=task["username"],
                         usertype=task["usertype"])
            thumbed = await self.uploads.run_io(self.uploads.make_thumbnail, owner, filepath)
            await self.repos.uploads.record(
                task["owner_id"], filepath, task.get("kind") or "video", size,
                {"width": task.get("output_width") or task.get("input_width"),
                 "height": task.get("output_height") or task.get("input_height"),
                 "frames": task.get("frames_done"), "duration": task.get("input_duration")},
                origin="result", task_id=task["task_id"], thumbnail=thumbed,
                warnings=task.get("warnings") or [])
        except (OSError, PathRefused, DatabaseError):
            log.warning("could not record the result of task %s", task["task_id"])

    async def _release(self, task: dict[str, Any]) -> None:
        """Free the task's output name (it failed, was cancelled, or its result is gone)."""
        try:
            await self.repos.tasks.release_output(task["task_id"])
        except DatabaseError:
            log.warning("could not release the output name of task %s", task["task_id"])

    async def _save(self, task: dict[str, Any], fields: dict[str, Any], final: bool = False
                    ) -> None:
        self._last_write[task["task_id"]] = time.monotonic()
        for attempt in range(5 if final else 1):
            try:
                await self.repos.tasks.update(task["task_id"], fields)
                return
            except DatabaseError:
                _event("save_failed", task, logging.WARNING, attempt=attempt + 1)
                await asyncio.sleep(1.0)
