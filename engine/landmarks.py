"""68-point landmarks with dlib's shape predictor (about 1 ms a face).

The predictor reads only pixels near the rectangle, so it is given a small
contiguous crop instead of the (strided, padded) full decoded plane.
"""

from __future__ import annotations

import dlib
import numpy as np

from . import models
from .detect import Rect
from .small import centre

# Index groups of the iBUG 68-point scheme.
JAW = slice(0, 17)
BROWS = slice(17, 27)
NOSE = slice(27, 36)
LEFT_EYE = slice(36, 42)
RIGHT_EYE = slice(42, 48)
MOUTH = slice(48, 68)
INNER_MOUTH = slice(60, 68)
OUTER_MOUTH = slice(48, 60)


def predict_landmarks(grey: np.ndarray, rect: Rect, levels: int | None = None) -> np.ndarray:
    """Return a (68, 2) float32 array of landmark positions in ``grey``'s coordinates.

    ``levels``: cascade levels of the predictor to run (see ``models.shape_predictor``).
    """
    h, w = grey.shape[:2]
    left, t, r, b = rect
    m = 0.35 * max(r - left, b - t)
    x0, y0 = max(0, int(left - m)), max(0, int(t - m))
    x1, y1 = min(w, int(r + m) + 1), min(h, int(b + m) + 1)
    if x1 - x0 < 8 or y1 - y0 < 8:
        x0, y0, x1, y1 = 0, 0, w, h
    crop = np.ascontiguousarray(grey[y0:y1, x0:x1])
    drect = dlib.rectangle(int(round(left - x0)), int(round(t - y0)),
                           int(round(r - x0)) - 1, int(round(b - y0)) - 1)
    shape = models.shape_predictor(levels)(crop, drect)
    pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
    pts[:, 0] += x0
    pts[:, 1] += y0
    return pts


def interocular(pts: np.ndarray) -> float:
    """Distance between the eye centres: the face's scale for thresholds."""
    return float(np.linalg.norm(centre(pts[LEFT_EYE]) - centre(pts[RIGHT_EYE]))) + 1e-3
