"""Face detection: dlib's HOG detector on a downscaled grey frame.

Detection is the expensive stage (10-70 ms a call on this class of CPU), so the
tracker calls it only every N frames, after a scene cut, or when tracking is
lost; between detections faces are followed by optical flow + landmarks.
"""

from __future__ import annotations

import cv2
import numpy as np

from . import models

Rect = tuple[float, float, float, float]  # left, top, right, bottom in full-frame pixels


def detect_faces(grey: np.ndarray, max_side: int = 640, upsample: int = 0) -> list[Rect]:
    """Return face rectangles in ``grey``'s coordinates, largest first.

    ``max_side`` bounds the longest side of the image the detector sees; HOG
    finds faces down to ~80 px at that scale (40 px with ``upsample=1``).
    """
    h, w = grey.shape[:2]
    scale = max(1.0, max(h, w) / float(max_side))
    if scale > 1.0:
        small = cv2.resize(grey, (int(round(w / scale)), int(round(h / scale))),
                           interpolation=cv2.INTER_AREA)
    else:
        small = np.ascontiguousarray(grey)
    rects = models.face_detector()(small, upsample)
    out = [(r.left() * scale, r.top() * scale, (r.right() + 1) * scale, (r.bottom() + 1) * scale)
           for r in rects]
    out.sort(key=lambda r: (r[2] - r[0]) * (r[3] - r[1]), reverse=True)
    return out


def iou(a: Rect, b: Rect) -> float:
    """Intersection over union of two rectangles."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def detect_near(grey: np.ndarray, rect: Rect, face_px: float = 100.0) -> list[Rect]:
    """Detect faces only around ``rect``, at a scale where that face is ~``face_px`` wide.

    Used to confirm a tracked face: a crop twice the face size, scaled so the
    face is just above HOG's 80 px window, costs ~1-2 ms instead of 10-70 ms.
    """
    h, w = grey.shape[:2]
    left, t, r, b = rect
    size = max(r - left, b - t)
    x0, y0 = max(0, int(left - size)), max(0, int(t - size))
    x1, y1 = min(w, int(r + size)), min(h, int(b + size))
    if x1 - x0 < 16 or y1 - y0 < 16:
        return []
    scale = max(size / face_px, 0.5)
    crop = grey[y0:y1, x0:x1]
    sw, sh = max(1, int(round((x1 - x0) / scale))), max(1, int(round((y1 - y0) / scale)))
    interp = cv2.INTER_AREA if scale > 1 else cv2.INTER_LINEAR
    small = cv2.resize(crop, (sw, sh), interpolation=interp)
    rects = models.face_detector()(small, 0)
    out = [(x0 + r.left() * scale, y0 + r.top() * scale, x0 + (r.right() + 1) * scale,
            y0 + (r.bottom() + 1) * scale) for r in rects]
    out.sort(key=lambda r: (r[2] - r[0]) * (r[3] - r[1]), reverse=True)
    return out
