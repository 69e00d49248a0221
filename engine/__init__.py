"""Face-swap engine: PyAV decode -> dlib detect/landmarks -> track -> warp -> blend -> x264.

No web-framework or database imports: the service calls :func:`swap_video` in a
worker process. Heavy modules (OpenCV, dlib, PyAV) are imported on first use so
that importing ``engine`` for :class:`EngineError` is free.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

# The engine's matrix products are tiny (2x2 to 68x2): OpenBLAS's worker
# threads only spin on the other core (measured: 0.2-0.4 s of CPU per run of a
# 33 s clip). Set before numpy is imported, so also in processes spawned from
# here (the service's workers, the swap helper); an explicit setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .errors import Cancelled, EngineError

__all__ = ["Cancelled", "EngineError", "TARGET_KINDS", "check_source_face", "find_people",
           "preview_frame", "probe_image", "probe_video", "run_swap", "swap_image", "swap_video"]

#: What a swap may target: a video (MP4 out) or a photo (JPEG or PNG out).
TARGET_KINDS = ("video", "image")


def swap_video(image_path: str | list[str], video_path: str, out_path: str, *,
               many_faces: bool = False, keep_mouth: bool = False, quality: str = "balanced",
               max_height: int | None = None, max_frames: int | None = None,
               start_s: float | None = None, end_s: float | None = None,
               face_video: str | None = None,
               progress: Callable[[int, int, float], None] | None = None,
               should_cancel: Callable[[], bool] | None = None,
               target: list[float] | None = None,
               source_box: list[int] | None = None) -> dict:
    """Swap the largest face of the image into the video; see :mod:`engine.pipeline`.

    ``image_path``: one photo, or a list of photos of one person; ``face_video``: a
    short video of the person instead (:mod:`engine.library`). ``target``: the
    descriptor of the only person to swap, ``source_box`` the box of the photo's face
    to use (both from :func:`find_people`).

    Returns ``{"frames", "swapped_frames", "seconds", "fps", "width", "height"}``;
    raises :class:`EngineError` / :class:`Cancelled`. ``out_path`` is written
    atomically. ``progress(frames_done, frames_total, fps)`` and
    ``should_cancel()`` are called from the calling thread only. ``start_s`` /
    ``end_s``: only that segment is swapped and written (audio cut with it).
    """
    from .pipeline import swap_video as run

    return run(image_path, video_path, out_path, many_faces=many_faces, keep_mouth=keep_mouth,
               quality=quality, max_height=max_height, max_frames=max_frames,
               start_s=start_s, end_s=end_s, face_video=face_video, progress=progress,
               should_cancel=should_cancel,
               target=None if target is None else list(target),
               source_box=None if source_box is None else list(source_box))


def swap_image(image_path: str | list[str], target_path: str, out_path: str, *,
               many_faces: bool = False, keep_mouth: bool = False, quality: str = "balanced",
               face_video: str | None = None,
               progress: Callable[[int, int, float], None] | None = None,
               should_cancel: Callable[[], bool] | None = None,
               target: list[float] | None = None,
               source_box: list[int] | None = None) -> dict:
    """Swap the face of ``image_path`` into the photo ``target_path``; see :mod:`engine.still`.

    ``out_path`` ends in ``.jpg``/``.jpeg`` or ``.png`` (the format written) and is
    written atomically. Returns ``{"frames": 1, "swapped_frames", "faces", "width",
    "height", "seconds", "fps", "warnings"}``; pixels away from the swapped faces are
    the target's own.
    """
    from .still import swap_image as run

    return run(image_path, target_path, out_path, many_faces=many_faces, keep_mouth=keep_mouth,
               quality=quality, face_video=face_video, progress=progress,
               should_cancel=should_cancel,
               target=None if target is None else list(target),
               source_box=None if source_box is None else list(source_box))


def run_swap(job: Mapping[str, Any], *, progress: Callable[[int, int, float], None] | None = None,
             should_cancel: Callable[[], bool] | None = None) -> dict:
    """Run one job described by plain fields (``engine.dispatch.Job`` as a dict).

    One entry point for every dispatcher (local processes, Dask workers), so a new job
    field reaches the engine the same way wherever the job runs. ``target_kind``
    ``"image"`` goes to :func:`swap_image` (the video-only fields do not apply).
    """
    fields = dict(job)
    fields.pop("task_id", None)
    kind = fields.pop("target_kind", "video") or "video"
    image, target, out = fields.pop("image_path"), fields.pop("video_path"), fields.pop("out_path")
    if kind == "image":
        return swap_image(image, target, out, many_faces=fields.get("many_faces", False),
                          keep_mouth=fields.get("keep_mouth", False),
                          quality=fields.get("quality", "balanced"),
                          face_video=fields.get("face_video"), progress=progress,
                          should_cancel=should_cancel, target=fields.get("target"),
                          source_box=fields.get("source_box"))
    if kind != "video":
        raise EngineError(f"unknown target kind {kind!r} (use video or image)")
    return swap_video(image, target, out, **fields, progress=progress,
                      should_cancel=should_cancel)

def find_people(path: str, **options) -> list[dict]:
    """The distinct people of a photo or video (see :mod:`engine.people`), as dicts:
    ``share, first_s, last_s, box, descriptor, thumbnail`` (JPEG bytes), ``seen``."""
    from .people import find_people as run

    return [p.as_dict() for p in run(path, **options)]


def preview_frame(image_path: str, video_path: str, at_s: float, **options) -> dict:
    """One frame of the swap at ``at_s`` (see :mod:`engine.preview`)."""
    from .preview import preview_frame as run

    return run(image_path, video_path, at_s, **options)


def probe_video(path: str) -> dict:
    """``{"width","height","duration","frames","fps","has_audio","codec","rotation"}``."""
    from .probe import probe_video as run

    return run(path)


def probe_image(path: str) -> dict:
    """``{"width","height"}`` of a decodable image; EngineError otherwise."""
    from .probe import probe_image as run

    return run(path)


def check_source_face(path: str) -> list[dict]:
    """The photo's warnings (``{"code", "msg"}``); EngineError (with ``code``) when the
    image cannot give a face (none found, too small, turned too far)."""
    from .source import check_source_face as run

    return run(path)
