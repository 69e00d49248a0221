"""Face-swap engine: PyAV decode -> dlib detect/landmarks -> track -> warp -> blend -> x264.

No web-framework or database imports: the service calls :func:`swap_video` in a
worker process. Heavy modules (OpenCV, dlib, PyAV) are imported on first use so
that importing ``engine`` for :class:`EngineError` is free.
"""

from __future__ import annotations

import os
from collections.abc import Callable

# The engine's matrix products are tiny (2x2 to 68x2): OpenBLAS's worker
# threads only spin on the other core (measured: 0.2-0.4 s of CPU per run of a
# 33 s clip). Set before numpy is imported, so also in processes spawned from
# here (the service's workers, the swap helper); an explicit setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .errors import Cancelled, EngineError

__all__ = ["Cancelled", "EngineError", "check_source_face", "probe_image", "probe_video",
           "swap_video"]


def swap_video(image_path: str | list[str], video_path: str, out_path: str, *,
               many_faces: bool = False, keep_mouth: bool = False, quality: str = "balanced",
               max_height: int | None = None, max_frames: int | None = None,
               face_video: str | None = None,
               progress: Callable[[int, int, float], None] | None = None,
               should_cancel: Callable[[], bool] | None = None) -> dict:
    """Swap the largest face of the image into the video; see :mod:`engine.pipeline`.

    ``image_path``: one photo, or a list of photos of one person; ``face_video``: a
    short video of the person instead (:mod:`engine.library`).

    Returns ``{"frames", "swapped_frames", "seconds", "fps", "width", "height"}``;
    raises :class:`EngineError` / :class:`Cancelled`. ``out_path`` is written
    atomically. ``progress(frames_done, frames_total, fps)`` and
    ``should_cancel()`` are called from the calling thread only.
    """
    from .pipeline import swap_video as run

    return run(image_path, video_path, out_path, many_faces=many_faces, keep_mouth=keep_mouth,
               quality=quality, max_height=max_height, max_frames=max_frames,
               face_video=face_video, progress=progress, should_cancel=should_cancel)


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
