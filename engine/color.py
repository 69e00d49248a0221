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
    # Masked (normalised) blurs: blur(img*mask)/blur(mask), at the small size;
    # the mask rides as the target's fourth channel, so one blur does the
    # target and one the source. Luma is decimated 2x by striding first: it
    # is blurred heavily anyway.
    m = cv2.resize(mask_half, small, interpolation=area)
    t3 = cv2.resize(cv2.merge([tgt_y[::2, ::2], tgt_uv]), small, interpolation=area)
    s3 = cv2.resize(cv2.merge([src_y[::2, ::2], src_uv]), small, interpolation=area)
    mm = m[..., None]
    lt4 = cv2.GaussianBlur(cv2.merge([t3.astype(np.float32) * mm, m]), (0, 0), sigma)
    ls3 = cv2.GaussianBlur(s3.astype(np.float32) * mm, (0, 0), sigma)
    den = np.maximum(lt4[..., 3:], 1e-3)
    low = np.concatenate([lt4[..., :3], ls3], axis=2) / den
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
