"""Masks and compositing of the warped, relit face into the frame.

The mask is the face outline (jaw + raised brows), pulled in a little and
feathered so the edge of the swap falls on the target's own skin gradient;
with colour correction that hides the seam without Poisson blending (which
costs tens of milliseconds a face). Everything is drawn at chroma resolution
and upsampled, since a feathered mask has no fine detail.
"""

from __future__ import annotations

import cv2
import numpy as np

from .landmarks import INNER_MOUTH


def face_mask(box: tuple[int, int, int, int], pts: np.ndarray, poly: np.ndarray, io: float, *,
              keep_mouth: float, feather: float = 0.12, shrink: float = 0.05) -> np.ndarray:
    """Feathered alpha (float32 0..1) at half resolution of ``box``.

    ``poly`` is the face outline, ``io`` the eye distance (both in frame pixels);
    ``keep_mouth`` (0..1) is how much of the target's own inner mouth shows.

    Drawn at quarter resolution (a feathered edge has no fine detail) and
    upsampled once.
    """
    x0, y0, x1, y1 = box
    hw, hh = (x1 - x0) // 2, (y1 - y0) // 2
    qw, qh = max(1, hw // 2), max(1, hh // 2)
    fx, fy = qw / (x1 - x0), qh / (y1 - y0)
    io = io * fx  # in quarter-res pixels
    scale = np.array([fx, fy], np.float32)
    off = np.array([x0, y0], np.float32)
    shift = 3
    mask = np.zeros((qh, qw), np.uint8)
    ipoly = ((poly - off) * scale * (1 << shift)).round().astype(np.int32)
    cv2.fillPoly(mask, [ipoly], 255, lineType=cv2.LINE_AA, shift=shift)
    k = int(round(io * shrink * 2)) | 1
    if k > 1:
        mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    if keep_mouth > 0:
        mouth = ((pts[INNER_MOUTH] - off) * scale * (1 << shift)).round().astype(np.int32)
        value = int(round(255 * (1.0 - min(1.0, keep_mouth))))
        cv2.fillPoly(mask, [mouth], value, lineType=cv2.LINE_AA, shift=shift)
    mask = cv2.GaussianBlur(mask, (0, 0), max(0.6, io * feather))
    mask = cv2.resize(mask, (hw, hh), interpolation=cv2.INTER_LINEAR)
    return mask.astype(np.float32) * (1.0 / 255.0)


def composite(base: np.ndarray, face: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``base * (1 - alpha) + face * alpha`` as uint8 (one OpenCV pass per channel group)."""
    face8 = cv2.convertScaleAbs(face) if face.dtype != np.uint8 else face
    base8 = np.ascontiguousarray(base)
    return cv2.blendLinear(base8, face8, 1.0 - alpha, alpha)
