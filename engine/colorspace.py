"""RGB <-> limited-range Y'CbCr, matching what H.264 videos carry.

The pipeline works directly on the decoded YUV 4:2:0 planes (no full-frame
colour conversion per frame, and faceless pixels are never touched), so the
source photo is converted once into the same colour space as the video.
"""

from __future__ import annotations

import cv2
import numpy as np

_KR_KB = {"bt709": (0.2126, 0.0722), "bt601": (0.299, 0.114)}


def matrix_for(colorspace: int | None, height: int) -> str:
    """Pick the YUV matrix of a video: its tag when set, else the HD/SD convention."""
    if colorspace == 1:
        return "bt709"
    if colorspace in (5, 6):
        return "bt601"
    return "bt709" if height >= 720 else "bt601"


def bgr_to_yuv(bgr: np.ndarray, matrix: str) -> tuple[np.ndarray, np.ndarray]:
    """BGR uint8 image (even size) -> (Y full-res uint8, UV half-res uint8 with 2 channels)."""
    kr, kb = _KR_KB[matrix]
    kg = 1.0 - kr - kb
    f = bgr.astype(np.float32)
    b, g, r = f[..., 0], f[..., 1], f[..., 2]
    yp = kr * r + kg * g + kb * b
    y = 16.0 + yp * (219.0 / 255.0)
    cb = 128.0 + (b - yp) / (2.0 * (1.0 - kb)) * (224.0 / 255.0)
    cr = 128.0 + (r - yp) / (2.0 * (1.0 - kr)) * (224.0 / 255.0)
    h, w = y.shape
    uv = cv2.resize(np.dstack([cb, cr]), (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    return (
        np.clip(y + 0.5, 0, 255).astype(np.uint8),
        np.clip(uv + 0.5, 0, 255).astype(np.uint8),
    )


def yuv_to_bgr(y: np.ndarray, u: np.ndarray, v: np.ndarray, matrix: str) -> np.ndarray:
    """Planes of a 4:2:0 picture (or region) -> BGR uint8 (for descriptors and contact sheets)."""
    kr, kb = _KR_KB[matrix]
    kg = 1.0 - kr - kb
    h, w = y.shape
    uu = cv2.resize(u, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32) - 128.0
    vv = cv2.resize(v, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32) - 128.0
    yp = (y.astype(np.float32) - 16.0) * (255.0 / 219.0)
    cb = uu * (255.0 / 224.0) * 2.0 * (1.0 - kb)
    cr = vv * (255.0 / 224.0) * 2.0 * (1.0 - kr)
    r = yp + cr
    b = yp + cb
    g = (yp - kr * r - kb * b) / kg
    return np.clip(np.dstack([b, g, r]) + 0.5, 0, 255).astype(np.uint8)
