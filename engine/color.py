"""Colour correction: give the warped source face the target's lighting.

A global mean/std transfer leaves directional light wrong (one cheek lit, the
other not). Instead the low-frequency part of the target face replaces that of
the source face: masked (normalised) Gaussian blurs of both, computed at low
resolution for speed. Luma is corrected by ratio (keeps the source's local
contrast, i.e. its features), chroma by offset (skin tone of the target).
Blurs this wide change smoothly from frame to frame, so no flicker is added.
"""

from __future__ import annotations

import cv2
import numpy as np


def match_colour(src_y: np.ndarray, src_uv: np.ndarray, tgt_y: np.ndarray, tgt_uv: np.ndarray,
                 mask_half: np.ndarray, face_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Return float32 (Y, UV) of the source face relit to match the target.

    ``mask_half`` (float32 0..1, chroma resolution) marks where both faces are
    valid; ``face_px`` is the face width in luma pixels (sets the blur width).
    """
    hh, hw = mask_half.shape
    # Work at ~32 px across the face: the correction is smooth by construction.
    f = max(1.0, face_px / 32.0)
    small = (max(4, int(round(hw * 2 / f))), max(4, int(round(hh * 2 / f))))
    sigma = 32.0 / 7.0
    area = cv2.INTER_AREA
    m = cv2.resize(mask_half, small, interpolation=area)
    # Masked (normalised) blurs: blur(img*mask)/blur(mask); target and source
    # stacked as 3+3 channels so each blur is one call.
    # Luma is decimated 2x by striding first: it is blurred heavily anyway.
    t3 = np.dstack([cv2.resize(tgt_y[::2, ::2], small, interpolation=area),
                    cv2.resize(tgt_uv, small, interpolation=area)]).astype(np.float32)
    s3 = np.dstack([cv2.resize(src_y[::2, ::2], small, interpolation=area),
                    cv2.resize(src_uv, small, interpolation=area)]).astype(np.float32)
    both = np.dstack([t3, s3]) * m[..., None]
    den = np.maximum(cv2.GaussianBlur(m, (0, 0), sigma), 1e-3)[..., None]
    low = np.dstack([cv2.GaussianBlur(both[..., :3], (0, 0), sigma),
                     cv2.GaussianBlur(both[..., 3:], (0, 0), sigma)]) / den
    lt, ls = low[..., 0], low[..., 3]
    ltu, lsu = low[..., 1:3], low[..., 4:6]
    ratio = np.clip((lt - 16.0) / np.maximum(ls - 16.0, 4.0), 0.25, 4.0)
    ratio = cv2.resize(ratio, (hw * 2, hh * 2), interpolation=cv2.INTER_LINEAR)
    y = cv2.subtract(src_y, 16, dtype=cv2.CV_32F)
    y = cv2.multiply(y, ratio)
    y += 16.0
    uv = src_uv.astype(np.float32)
    uv += cv2.resize(ltu - lsu, (hw, hh), interpolation=cv2.INTER_LINEAR)
    return y, uv
