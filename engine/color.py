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
#: Bounds of the luma's light ratio (target over photo). Up to 4x, a photo's dark
#: lids and eyeliner were lifted toward the target's bright skin into glowing
#: patches over the eyes (the brightest lid pixels 50-68 grey levels above the
#: target's own with face_woman; now within 10). Reading the light from skin
#: only (brows and eyes left out of the blur) was tried as well: it did not
#: remove the glow by itself and cost identity (id_win 0.875 -> 0.725 on
#: talk_480sq with face_woman, 40 sampled frames).
LIGHT_RATIO = (0.7, 1.4)
#: The skin's own shading (``match_colour``'s ``skin``): blur width in face widths,
#: the bounds of its light ratio, the share of the photo's fine skin colour taken
#: out, and the face widths (pixels) over which it comes in. The photo's shadows
#: beside the nose and under the cheekbones and its blush are narrower than the
#: luma's blur: they stayed as grey bands and a dark cheek (L* 62 against the
#: target's 71 on talk_720p frame 97 with face_woman; now 70). It only brightens
#: (the photo's dark features reaching into the skin are left alone), and not on
#: small faces, where that shading is identity (stage_multi id_win 0.55 -> 0.35).
SKIN_SIGMA = 0.035
SKIN_RATIO = (0.5, 2.0)
SKIN_CHROMA = 0.7
SKIN_FACE_PX = (100.0, 160.0)
#: The chroma offset's share by a pixel's luma relative to the photo's smoothed
#: skin around it: none at 0.35 of it and below, all from 0.85 up. Scaled by the
#: plain ratio (all from 1.0), the midtones of a black-and-white photo stayed grey
#: on the target's pink skin (face_bw_man on talk_720p).
DARK_OFFSET = (0.35, 0.85)
#: A photo whose face is at most this far from neutral chroma on average
#: (|mean(U, V) - 128| inside its landmarks' hull) has no colour of its own to keep
#: (see ``match_colour``'s ``colourless``); from twice as far it is a colour photo.
#: The shared colour photos measure 24-34, face_bw_man 0.
COLOURLESS = 8.0


def skin_reach(face_px: float) -> float:
    """How much of the skin's own shading and colour a face ``face_px`` wide takes (0..1,
    see ``SKIN_FACE_PX``); at 0, ``match_colour`` needs no ``skin`` maps."""
    lo, hi = SKIN_FACE_PX
    return min(1.0, max(0.0, (face_px - lo) / (hi - lo)))


def match_colour(src_y: np.ndarray, src_uv: np.ndarray, tgt_y: np.ndarray, tgt_uv: np.ndarray,
                 mask_half: np.ndarray, face_px: float,
                 skin: tuple[np.ndarray, np.ndarray] | None = None, colourless: float = 0.0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Return float32 (Y, UV) of the source face relit to match the target.

    ``mask_half`` (float32 0..1, chroma resolution) marks where both faces are
    valid; ``face_px`` is the face width in luma pixels (sets the blur width);
    ``skin``: ``blend.skin_zones``'s two maps (float32 0..1, chroma resolution;
    None: not used), where the target's narrower shading is taken too
    (``SKIN_SIGMA``) and where the photo's fine colour goes (``SKIN_CHROMA``);
    ``colourless``: the photo's :func:`colourless`.
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
    # the mask rides as the target's second channel. Luma is decimated 2x by
    # striding first: it is blurred heavily anyway.
    m = cv2.resize(mask_half[:ch, :cw], small, interpolation=area)
    t1 = cv2.resize(tgt_y[:2 * ch:2, :2 * cw:2], small, interpolation=area).astype(np.float32)
    s1 = cv2.resize(src_y[:2 * ch:2, :2 * cw:2], small, interpolation=area).astype(np.float32)
    lt2 = cv2.GaussianBlur(cv2.merge([t1 * m, m]), (0, 0), sigma)
    den_y = np.maximum(lt2[..., 1], 1e-3)
    lt = lt2[..., 0] / den_y
    ls = cv2.GaussianBlur(s1 * m, (0, 0), sigma) / den_y
    # Chroma by offset over a narrower blur: the skin colour of the scene,
    # and the photo's blush, make-up and coloured light left out (they are
    # broader than this); only the photo's fine colour detail stays. Worked
    # out on planes twice as fine as the luma's (a blur this narrow needs them).
    kc = max(1, (k + 1) // 2)
    cch, ccw = hh // kc * kc, hw // kc * kc
    fine = (ccw // kc, cch // kc)
    ratio = np.clip((lt - 16.0) / np.maximum(ls - 16.0, 4.0), *LIGHT_RATIO)
    # The chroma is not scaled with the light ratio (intensity times
    # chromaticity): with the ratio up to 4x it saturated the photo's blue
    # eyeliner into a glow; the narrow chroma offset below takes the scene's.
    uv = src_uv.astype(np.float32)
    mc = cv2.resize(mask_half[:cch, :ccw], fine, interpolation=area)
    tc = cv2.resize(tgt_uv[:cch, :ccw], fine, interpolation=area).astype(np.float32)
    scr = cv2.resize(uv[:cch, :ccw], fine, interpolation=area)
    sc = max(0.8, face_px * LUMA_SIGMA * CHROMA_SIGMA / (2.0 * kc))
    ltc = cv2.GaussianBlur(cv2.merge([tc * mc[..., None], mc]), (0, 0), sc)
    den = np.maximum(ltc[..., 2:], 1e-3)
    src_s = cv2.GaussianBlur(scr * mc[..., None], (0, 0), sc) / den
    off = ltc[..., :2] / den - src_s
    reach = skin_reach(face_px)
    if skin is None or reach == 0:
        skin = None  # a small face: neither the skin's shading nor its colour below
        ratio = cv2.resize(ratio, (cw * 2, ch * 2), interpolation=cv2.INTER_LINEAR)
    else:
        sk = cv2.resize(skin[0][:cch, :ccw], fine, interpolation=area) * mc
        ty = cv2.resize(tgt_y[:2 * cch:2, :2 * ccw:2], fine, interpolation=area).astype(np.float32)
        sy = cv2.resize(src_y[:2 * cch:2, :2 * ccw:2], fine, interpolation=area).astype(np.float32)
        sn = max(0.8, face_px * SKIN_SIGMA / (2.0 * kc))
        b3 = cv2.GaussianBlur(cv2.merge([ty * sk, sy * sk, sk]), (0, 0), sn)
        dn = np.maximum(b3[..., 2], 1e-3)
        narrow = np.clip((b3[..., 0] - 16.0 * dn) / np.maximum(b3[..., 1] - 16.0 * dn, 4.0 * dn),
                         *SKIN_RATIO)
        ratio = cv2.resize(ratio, fine, interpolation=cv2.INTER_LINEAR)
        weight = cv2.GaussianBlur(sk, (0, 0), sn) * reach
        ratio += weight * np.maximum(narrow - ratio, 0.0)
        ratio = cv2.resize(ratio, (ccw * 2, cch * 2), interpolation=cv2.INTER_LINEAR)
    ratio = _grow(ratio, hh * 2, hw * 2)
    # In place, and numpy's uint8 -> float32 conversion: OpenCV's subtract
    # with a dtype change was 0.10 ms a 272x336 box, this 0.07 (same values).
    y = src_y.astype(np.float32)
    y -= 16.0
    cv2.multiply(y, ratio, dst=y)
    y += 16.0
    if skin is not None:
        # The photo's fine skin colour (freckles, the edges of its blush) mostly goes.
        detail = uv - _grow(cv2.resize(src_s, (ccw, cch), interpolation=cv2.INTER_LINEAR), hh, hw)
        uv -= detail * (cv2.GaussianBlur(skin[1], (0, 0), 2.0) * (SKIN_CHROMA * reach))[..., None]
    # A pixel much darker than the skin around it (a brow, lashes, a nostril)
    # takes less of the offset (``DARK_OFFSET``): chroma is intensity times
    # chromaticity, and the skin's full offset turned the photo's dark brows and
    # liner red-brown.
    off = _grow(cv2.resize(off, (ccw, cch), interpolation=cv2.INTER_LINEAR), hh, hw)
    lsc = _grow(cv2.resize(ls, (cw, ch), interpolation=cv2.INTER_LINEAR), hh, hw)
    rel = (src_y[::2, ::2].astype(np.float32) - 16.0) / np.maximum(lsc - 16.0, 4.0)
    dark = np.clip((rel - DARK_OFFSET[0]) / (DARK_OFFSET[1] - DARK_OFFSET[0]), 0.0, 1.0)
    if colourless > 0:
        # A black-and-white photo's dark pixels have no colour of their own either:
        # they take at least the square root of their light (relative to the skin
        # around them) of the skin's offset. With the ramp alone, face_bw_man's
        # nostrils, the shadows between nose and lip and under the lip and its
        # stubble stayed neutral grey on the target's pink skin (the darkest fifth of
        # the pixels there at CIELAB chroma 3-6 against the input's 21-28): the grey
        # smudges every blind reviewer named. With the square root 15-19; in
        # proportion to the light (chroma as colour times intensity) still greyish, 9-13.
        dark += colourless * np.maximum(np.sqrt(np.clip(rel, 0.0, 1.0)) - dark, 0.0)
    uv += off * dark[..., None]
    return y, uv


def colourless(uv: np.ndarray, pts: np.ndarray) -> float:
    """How colourless a photo is (0: a colour photo, 1: black and white; see
    ``COLOURLESS``): its half-resolution chroma planes ``uv`` (uint8, 128 neutral)
    inside the hull of its landmarks ``pts`` (full-resolution coordinates)."""
    face = np.zeros(uv.shape[:2], np.uint8)
    cv2.fillConvexPoly(face, cv2.convexHull(np.round(pts * 0.5).astype(np.int32)), 1)
    inside = face > 0
    if not inside.any():
        return 0.0
    u, v = (float(c[inside].mean()) - 128.0 for c in cv2.split(uv))
    return min(1.0, max(0.0, 2.0 - float(np.hypot(u, v)) / COLOURLESS))


def _grow(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """``a`` extended to h x w by repeating its last row and column."""
    dh, dw = h - a.shape[0], w - a.shape[1]
    if dh == 0 and dw == 0:
        return a
    return cv2.copyMakeBorder(a, 0, dh, 0, dw, cv2.BORDER_REPLICATE)
