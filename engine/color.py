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

#: Chroma blur width relative to the luma's (0.11 of the face width): 0.035
#: of the face width took the cheeks' chroma spread ("blotch") on talk_480sq
#: with the blushed photo from 1.8x the input's to 1.1x; the luma's 0.14 ->
#: 0.11 took the photo's darker eye sockets out with identity unchanged.
CHROMA_SIGMA = 0.3
#: Luma blur width, in face widths.
LUMA_SIGMA = 0.11


def match_colour(src_y: np.ndarray, src_uv: np.ndarray, tgt_y: np.ndarray, tgt_uv: np.ndarray,
                 mask_half: np.ndarray, face_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Return float32 (Y, UV) of the source face relit to match the target.

    ``mask_half`` (float32 0..1, chroma resolution) marks where both faces are
    valid; ``face_px`` is the face width in luma pixels (sets the blur width).
    """
    hh, hw = mask_half.shape
    # Work at ~32 px across the face: the correction is smooth by construction.
    # The chroma-resolution planes shrink by a whole factor k (INTER_AREA is a
    # plain k x k box average then, twice as fast as at a fractional factor);
    # the last rows/columns beyond a multiple of k only take the edge value.
    k = max(1, min(int(round(face_px / 64.0)), hh, hw))
    ch, cw = hh // k * k, hw // k * k
    small = (cw // k, ch // k)
    sigma = max(0.8, face_px * LUMA_SIGMA / (2.0 * k))  # in pixels of the small planes
    area = cv2.INTER_AREA
    # Masked (normalised) blurs: blur(img*mask)/blur(mask), at the small size;
    # the mask rides as the target's fourth channel, so one blur does the
    # target and one the source. Luma is decimated 2x by striding first: it
    # is blurred heavily anyway.
    m = cv2.resize(mask_half[:ch, :cw], small, interpolation=area)
    t3 = cv2.resize(cv2.merge([tgt_y[:2 * ch:2, :2 * cw:2], tgt_uv[:ch, :cw]]), small,
                    interpolation=area)
    s3 = cv2.resize(cv2.merge([src_y[:2 * ch:2, :2 * cw:2], src_uv[:ch, :cw]]), small,
                    interpolation=area)
    mm = m[..., None]
    tm, sm = t3.astype(np.float32) * mm, s3.astype(np.float32) * mm
    lt4 = cv2.GaussianBlur(cv2.merge([tm, m]), (0, 0), sigma)
    ls = cv2.GaussianBlur(sm[..., 0], (0, 0), sigma) / np.maximum(lt4[..., 3], 1e-3)
    lt = lt4[..., 0] / np.maximum(lt4[..., 3], 1e-3)
    # Chroma by offset over a narrower blur: the skin colour of the scene,
    # and the photo's blush, make-up and coloured light left out (they are
    # broader than this); only the photo's fine colour detail stays.
    sc = sigma * CHROMA_SIGMA
    ltc = cv2.GaussianBlur(cv2.merge([tm[..., 1:], m]), (0, 0), sc)
    den = np.maximum(ltc[..., 2:], 1e-3)
    off = ltc[..., :2] / den - cv2.GaussianBlur(sm[..., 1:], (0, 0), sc) / den
    ratio = np.clip((lt - 16.0) / np.maximum(ls - 16.0, 4.0), 0.25, 4.0)
    ratio = _grow(cv2.resize(ratio, (cw * 2, ch * 2), interpolation=cv2.INTER_LINEAR),
                  hh * 2, hw * 2)
    y = cv2.subtract(src_y, 16, dtype=cv2.CV_32F)
    y = cv2.multiply(y, ratio)
    y += 16.0
    uv = src_uv.astype(np.float32)
    uv += _grow(cv2.resize(off, (cw, ch), interpolation=cv2.INTER_LINEAR), hh, hw)
    return y, uv


def _grow(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """``a`` extended to h x w by repeating its last row and column."""
    dh, dw = h - a.shape[0], w - a.shape[1]
    if dh == 0 and dw == 0:
        return a
    return cv2.copyMakeBorder(a, 0, dh, 0, dw, cv2.BORDER_REPLICATE)
