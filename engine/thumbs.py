"""Small JPEG previews of uploads and results, for the file list.

Run inside the bounded probe child (:mod:`engine.probe`): the first frame of a video or
the photo itself is already decoded there, so a thumbnail costs one resize and one
JPEG encode, under the same memory and time limits as the probe.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

#: Longest side of a thumbnail, in pixels: enough for a list row or a card on a phone.
THUMB_SIDE = 256
JPEG_QUALITY = 80


def write_thumbnail(bgr: np.ndarray, dst: str) -> None:
    """Scale ``bgr`` to fit :data:`THUMB_SIDE` and write it to ``dst`` as a JPEG.

    Written to a temp name first and renamed, so a reader never sees half a file.
    """
    h, w = bgr.shape[:2]
    scale = min(1.0, THUMB_SIDE / max(h, w, 1))
    if scale < 1.0:
        bgr = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))),
                         interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("could not encode the thumbnail")
    tmp = f"{dst}.part"
    with open(tmp, "wb") as f:
        f.write(data.tobytes())
    os.replace(tmp, dst)


def frame_to_bgr(frame, rotation: int) -> np.ndarray:
    """A decoded video frame as BGR in its display orientation."""
    bgr = frame.to_ndarray(format="bgr24")
    code = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180,
            270: cv2.ROTATE_90_CLOCKWISE}.get(rotation)
    return cv2.rotate(bgr, code) if code is not None else bgr


def thumbnail_of(path: str, dst: str) -> None:
    """The thumbnail of a file the service made itself (a result): its first frame,
    or the picture itself if it is a photo."""
    from .probe import open_video, stream_rotation
    from .source import read_image

    ext = os.path.splitext(path)[1].lower()
    if ext in (".jpg", ".jpeg", ".png", ".webp", ".bmp"):
        write_thumbnail(read_image(path), dst)
        return
    container, stream = open_video(path)
    try:
        for frame in container.decode(stream):
            write_thumbnail(frame_to_bgr(frame, stream_rotation(stream)), dst)
            return
    finally:
        container.close()
    raise ValueError("the video has no frame")
