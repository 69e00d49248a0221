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


# sRGB -> linear, for each 8-bit value (the sRGB transfer curve).
_c = np.arange(256, dtype=np.float64) / 255.0
_LINEAR = np.where(_c > 0.04045, ((_c + 0.055) / 1.055) ** 2.4, _c / 12.92).astype(np.float32)
# Linear BGR -> XYZ scaled by the D65 white point (rows X/Xn, Y, Z/Zn), as OpenCV.
_XYZ = (np.array([[0.180423, 0.357580, 0.412453],
                  [0.072169, 0.715160, 0.212671],
                  [0.950227, 0.119193, 0.019334]])
        / np.array([[0.950456], [1.0], [1.088754]])).astype(np.float32)


def bgr_to_lab8(bgr: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) of a BGR uint8 image, float32 in OpenCV's 8-bit scale
    (L * 255 / 100, a + 128, b + 128).

    Same formulas as ``cv2.cvtColor(bgr, COLOR_BGR2LAB)``, without its
    one-time table set-up (about 90 ms on the first call in a process, which
    is on the path to a task's first frame).
    """
    xyz = cv2.transform(_LINEAR[bgr], _XYZ)
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    lab = np.empty_like(xyz)
    lab[..., 0] = np.where(xyz[..., 1] > 0.008856, 116.0 * fy - 16.0,
                           903.3 * xyz[..., 1]) * (255.0 / 100.0)
    lab[..., 1] = 500.0 * (fx - fy) + 128.0
    lab[..., 2] = 200.0 * (fy - fz) + 128.0
    return lab
