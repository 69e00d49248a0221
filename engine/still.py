"""Photo targets: the video's swap stages on one still image.

The same stages as a video frame (detection, landmarks, ``swap.swap_faces`` with its
warp, relight, mask and blend, colour matching), so a photo result looks like a frame
of a video result. Differences, and why:

* detection is the still-photo one (``source.find_faces``: HOG with upsampling, the
  CNN detector as fallback) and landmarks run the whole cascade: there is one frame,
  so there is no tracking to lean on and the extra milliseconds do not matter;
* the swap stages work on 4:2:0 YUV planes (a video's layout). Only the faces' region
  is converted, and only the pixels the swap changed (plus a feathered two-pixel rim)
  are taken back from it: every other pixel is the target's own, exactly, also its
  full-resolution colour (a round trip through 4:2:0 would blur it);
* the result is written atomically (a hidden temporary name in the destination
  folder, then a rename), as JPEG (quality 95) or PNG by ``out_path``'s extension,
  labelled AI-generated like the video outputs (a JPEG comment, a PNG text chunk).
"""

from __future__ import annotations

import os
import struct
import tempfile
import time
import zlib
from collections.abc import Callable

import cv2
import numpy as np

from .colorspace import bgr_to_yuv, yuv_to_bgr
from .encode import LABEL
from .errors import Cancelled, EngineError
from .landmarks import predict_landmarks
from .library import FaceLibrary, ViewChooser, target_features
from .pipeline import QUALITIES
from .source import SourceFace, find_faces, read_image
from .swap import face_region, swap_faces

#: JPEG quality of photo results: visually lossless, about 3x smaller than PNG.
JPEG_QUALITY = 95
#: Faces narrower than this (detector box, pixels) are left alone in many-faces mode.
MIN_FACE_PX = 24
#: The YUV matrix of the internal round trip (any works: only changed pixels come back).
MATRIX = "bt709"
_FORMATS = {".jpg": ".jpg", ".jpeg": ".jpg", ".png": ".png"}


def output_format(out_path: str) -> str:
    """``".jpg"`` or ``".png"`` from the output's extension; EngineError otherwise."""
    ext = os.path.splitext(out_path)[1].lower()
    if ext not in _FORMATS:
        raise EngineError("a photo result must be a .jpg or .png file")
    return _FORMATS[ext]


def swap_image(image_path: str | list[str], target_path: str, out_path: str, *,
               many_faces: bool = False, keep_mouth: bool = False, quality: str = "balanced",
               face_video: str | None = None,
               progress: Callable[[int, int, float], None] | None = None,
               should_cancel: Callable[[], bool] | None = None,
               target: list[float] | None = None,
               source_box: list[int] | None = None) -> dict:
    """Swap the source photo's face into the target photo; see the module docstring.

    ``target``: the descriptor of the only person of the target photo to swap,
    ``source_box`` the box of the source photo's face to use (``engine.people``).

    Returns ``{"frames": 1, "swapped_frames", "faces", "width", "height", "seconds",
    "fps", "warnings"}``. A target without a face is written unchanged
    (``swapped_frames`` 0), as a faceless video is.
    """
    if quality not in QUALITIES:
        raise EngineError(f"unknown quality {quality!r} (use fast, balanced or high)")
    fmt = output_format(out_path)
    folder = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(folder):
        raise EngineError("the output folder does not exist")
    opts = QUALITIES[quality]
    started = time.monotonic()

    def check_cancel() -> None:
        if should_cancel is not None and should_cancel():
            raise Cancelled()

    if progress is not None:
        progress(0, 1, 0.0)
    from .library import load_face

    source = load_face(image_path, face_video, levels=opts["levels"], face_box=source_box)
    check_cancel()
    picture = read_image(target_path)
    out, faces = swap_into(picture, source, many_faces=many_faces, keep_mouth=keep_mouth,
                           morph=opts["morph"], levels=opts["levels"], target=target)
    check_cancel()
    write_image(out, out_path, fmt)
    seconds = time.monotonic() - started
    if progress is not None:
        progress(1, 1, 1.0 / max(seconds, 1e-6))
    h, w = out.shape[:2]
    return {"frames": 1, "swapped_frames": 1 if faces else 0, "faces": faces, "width": w,
            "height": h, "seconds": round(seconds, 3),
            "fps": round(1.0 / seconds, 2) if seconds > 0 else 0.0,
            "warnings": list(source.warnings)}


def swap_into(bgr: np.ndarray, source: SourceFace | FaceLibrary, *, many_faces: bool = False,
              keep_mouth: bool = False, morph: float = 0.5, levels: int | None = None,
              target: list[float] | None = None) -> tuple[np.ndarray, int]:
    """``(result, faces swapped)`` for a BGR image; ``bgr`` itself is not modified.

    ``source`` is converted here to the internal YUV matrix; ``levels``: the landmark
    cascade's (the quality's, as in a video task, so a worker keeps one predictor loaded).
    """
    h, w = bgr.shape[:2]
    # Even sizes, as the 4:2:0 planes need; the padding is cut off again at the end.
    ph, pw = h + h % 2, w + w % 2
    padded = cv2.copyMakeBorder(bgr, 0, ph - h, 0, pw - w, cv2.BORDER_REPLICATE) \
        if (ph, pw) != (h, w) else bgr
    rects = find_faces(padded)
    if target is not None:  # only the chosen person (the tracker's match threshold)
        from .people import describe_faces
        from .track import TARGET_MATCH

        dists = [float(np.linalg.norm(d - np.asarray(target)))
                 for d in describe_faces(padded, rects[:6], levels)]
        best = int(np.argmin(dists)) if dists else -1
        rects = [rects[best]] if best >= 0 and dists[best] < TARGET_MATCH else []
    elif not many_faces:
        rects = rects[:1]
    rects = [r for r in rects if r[2] - r[0] >= MIN_FACE_PX or not many_faces]
    if not rects:
        return bgr.copy(), 0
    grey = cv2.cvtColor(padded, cv2.COLOR_BGR2GRAY)
    targets = [predict_landmarks(grey, r, levels) for r in rects]
    boxes = [b for b in (face_region(p, pw, ph) for p in targets) if b is not None]
    if not boxes:
        return bgr.copy(), 0
    # The union of the faces' regions plus a margin for the feathered rim, even-aligned.
    m = 8
    x0 = max(0, (min(b[0] for b in boxes) - m) // 2 * 2)
    y0 = max(0, (min(b[1] for b in boxes) - m) // 2 * 2)
    x1 = min(pw, (max(b[2] for b in boxes) + m + 1) // 2 * 2)
    y1 = min(ph, (max(b[3] for b in boxes) + m + 1) // 2 * 2)
    crop = np.ascontiguousarray(padded[y0:y1, x0:x1])
    y, uv = bgr_to_yuv(crop, MATRIX)
    u, v = np.ascontiguousarray(uv[..., 0]), np.ascontiguousarray(uv[..., 1])
    y_in, u_in, v_in = y.copy(), u.copy(), v.copy()
    source.to_yuv(MATRIX)
    off = np.array([x0, y0], np.float32)
    views = None
    if isinstance(source, FaceLibrary):  # several photos or a face video: the nearest view
        views = [ViewChooser(source.feats).choose(target_features(p, (pw, ph), None))
                 for p in targets]
    swap_faces(y, u, v, [p - off for p in targets], source, morph=morph, keep_mouth=keep_mouth,
               views=views)
    changed = (y != y_in) | _up(((u != u_in) | (v != v_in)).astype(np.uint8), y.shape) > 0
    out = padded.copy() if padded is not bgr else bgr.copy()
    if changed.any():
        weight = cv2.dilate(changed.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2)
        weight = cv2.GaussianBlur(weight.astype(np.float32), (5, 5), 0)
        weight = np.clip(weight * 1.5, 0.0, 1.0)[..., None]
        swapped = yuv_to_bgr(y, u, v, MATRIX).astype(np.float32)
        region = out[y0:y1, x0:x1].astype(np.float32)
        mixed = region + weight * (swapped - region)
        out[y0:y1, x0:x1] = np.where(weight > 0, np.clip(mixed + 0.5, 0, 255),
                                     region).astype(np.uint8)
    return np.ascontiguousarray(out[:h, :w]), len(boxes)


def _up(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A half-resolution mask at full resolution (each chroma sample covers 2x2 pixels)."""
    return cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)


def encode_image(bgr: np.ndarray, fmt: str) -> bytes:
    """The image as JPEG or PNG bytes, labelled AI-generated."""
    if fmt == ".jpg":
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    else:
        ok, data = cv2.imencode(".png", bgr)
    if not ok:
        raise EngineError("the photo could not be encoded")
    return _label(data.tobytes(), fmt)


def _label(data: bytes, fmt: str) -> bytes:
    """Add the AI-generated label: a COM segment after SOI, or tEXt chunks after IHDR."""
    if fmt == ".jpg":
        text = "; ".join(f"{k}={v}" for k, v in LABEL.items()).encode("utf-8")
        return data[:2] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + data[2:]
    chunks = b""
    for key, value in LABEL.items():
        payload = key.encode("latin-1") + b"\x00" + value.encode("latin-1")
        chunks += (struct.pack(">I", len(payload)) + b"tEXt" + payload
                   + struct.pack(">I", zlib.crc32(b"tEXt" + payload) & 0xFFFFFFFF))
    ihdr_end = 8 + 8 + 13 + 4  # signature, IHDR length+type, IHDR data, CRC
    return data[:ihdr_end] + chunks + data[ihdr_end:]


def write_image(bgr: np.ndarray, out_path: str, fmt: str) -> None:
    """Encode and write ``out_path`` atomically: a temporary file, then a rename."""
    data = encode_image(bgr, fmt)
    folder = os.path.dirname(os.path.abspath(out_path))
    fd, temp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(out_path) + ".",
                                suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(temp, out_path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
