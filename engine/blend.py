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

from .landmarks import INNER_MOUTH, OUTER_MOUTH
from .small import centre, median
from .warp import geometry

#: The target's inner mouth polygon grown by this factor about its centre.
MOUTH_GROW = 1.15
#: Eye closure (1 - opening / usual opening) where the target's eye starts
#: to show, and over how much more it takes over.
BLINK = (0.12, 0.38)
#: Face widths (pixels) under which the target's eyeballs need a wider opening to
#: show, and how much wider at the smallest (see :func:`eyes_wider`).
SMALL_EYES = (80.0, 160.0, 0.3)


def face_mask(box: tuple[int, int, int, int], pts: np.ndarray, poly: np.ndarray, io: float, *,
              keep_mouth: float, eyes: tuple[float, float] = (0.0, 0.0),
              eyeballs: tuple[float, float] = (0.0, 0.0),
              eye_open: tuple[float, float] | None = None,
              feather: float = 0.12, shrink: float = 0.05) -> np.ndarray:
    """Feathered alpha (float32 0..1: 1 is the photo's face) at half resolution of ``box``.

    ``poly`` is the face outline, ``io`` the eye distance (both in frame pixels).
    The target's own inner mouth always shows (its teeth and tongue follow its
    speech; the photo's open mouth is painted shut in :mod:`engine.source`);
    ``keep_mouth`` (0..1) shows the target's lips too. ``eyes`` (0..1 each)
    shows the target's own left/right eye region: a blink or squint of the
    target (see :func:`eye_closure`), at least as tall as the eye opened to
    ``eye_open`` (its usual eye aspect ratios, ``FaceTrack.eye_ref``).

    Drawn at quarter resolution (a feathered edge has no fine detail) and
    upsampled once; the holes for mouth and eyes have a narrower feather.
    """
    x0, y0, x1, y1 = box
    hw, hh = (x1 - x0) // 2, (y1 - y0) // 2
    qw, qh = max(1, hw // 2), max(1, hh // 2)
    fx, fy = qw / (x1 - x0), qh / (y1 - y0)
    scale = np.array([fx, fy], np.float32)
    off = np.array([x0, y0], np.float32)
    shift = 3
    mask = np.zeros((qh, qw), np.uint8)
    ipoly = ((poly - off) * scale * (1 << shift)).round().astype(np.int32)
    cv2.fillPoly(mask, [ipoly], 255, lineType=cv2.LINE_AA, shift=shift)
    k = int(round(io * fx * shrink * 2)) | 1
    if k > 1:
        mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    mask = cv2.GaussianBlur(mask, (0, 0), max(0.6, io * fx * feather))
    # Holes, with their own narrower feather: 255 keeps the photo, 0 shows the target.
    hole = np.full((qh, qw), 255, np.uint8)
    sc = scale * (1 << shift)

    def fill(points: np.ndarray, weight: float) -> None:
        p = ((points - off) * sc).round().astype(np.int32)
        cv2.fillPoly(hole, [p], int(round(255 * (1.0 - min(1.0, weight)))),
                     lineType=cv2.LINE_AA, shift=shift)

    if keep_mouth > 0:
        fill(pts[OUTER_MOUTH], keep_mouth)
    # The inner mouth grown a little: the lip line of a closed mouth, where
    # the photo's (shut) lips meet, stays the target's own crease.
    fill(_grown(pts[INNER_MOUTH], MOUTH_GROW), 1.0)
    # The target's eye region shows during a blink. Its eyeballs always
    # showing (its gaze) was tried: ear_corr 0.33 -> 0.46 on talk_480sq with
    # the woman's photo, but identity on the stage clip fell from 0.6 to 0.3.
    # Only while the target opens an eye much wider than the photo's (see
    # ``eyes_wider``) do its eyeballs show: the photo's lids and lashes
    # stretched over a wide-open eye smeared into dark sockets.
    for (lo, hi), w, b, usual in zip(((36, 42), (42, 48)), eyes, eyeballs,
                                     eye_open or (0.0, 0.0), strict=True):
        if w > 0.02:
            fill(_eye_region(pts, lo, hi, usual), w)
        if b > 0.02:
            fill(_grown(pts[lo:hi], 1.1), b)
    if hole.min() < 255:
        hole = cv2.GaussianBlur(hole, (0, 0), max(0.5, io * fx * 0.05))
        mask = cv2.multiply(mask, hole, scale=1.0 / 255.0)
    mask = cv2.resize(mask, (hw, hh), interpolation=cv2.INTER_LINEAR)
    return mask.astype(np.float32) * (1.0 / 255.0)


def _grown(points: np.ndarray, k: float) -> np.ndarray:
    """A polygon's points moved ``k`` times as far from their centre (mean)."""
    c = centre(points)
    return c + (points - c) * k


def _eye_region(pts: np.ndarray, lo: int, hi: int, usual: float = 0.0) -> np.ndarray:
    """Polygon around one eye and its lids: the eye outline grown about its centre
    (1.5x along the eye, 2.6x across it, the upper lid up to near the brow).

    ``usual``: the eye's usual aspect ratio; the polygon is at least as tall as the
    eye opened that wide. A blinking eye's own outline is a slit, and the
    photo's open eye, squeezed into it, left its lashes and liner smeared over the
    target's closed lids above and below it.
    """
    e = pts[lo:hi].astype(np.float32)
    c = centre(e)
    axis = e[3] - e[0]
    axis = axis / (float(np.hypot(*axis)) + 1e-6)
    normal = np.array([-axis[1], axis[0]], np.float32)
    rel = e - c
    along, across = rel @ axis, rel @ normal
    width = float(along.max() - along.min())
    across = np.sign(across) * np.maximum(np.abs(across) * 2.6,
                                          max(0.22, 1.3 * usual) * width)
    return (c + np.outer(along * 1.5, axis) + np.outer(across, normal)).astype(np.float32)


def eye_closure(pts: np.ndarray, ref: tuple[float, float] | None) -> tuple[float, float]:
    """How much of the target's own left/right eye to show (0..1).

    ``ref`` is the target face's usual left/right eye opening (running eye
    aspect ratios, see ``track.FaceTrack.eye_ref``; None: unknown): an eye that opens less than its
    own usual (a blink, a squint) shows the target's eye, smoothly; compared
    with the photo's opening instead, a wide-eyed target would lose the
    photo's eyes for good (identity dropped to 33 % on the 480 clip).
    """
    if ref is None:
        return 0.0, 0.0
    out = []
    for lo, r in zip((36, 42), ref, strict=True):
        closure = 1.0 - eye_aspect(pts[lo:lo + 6]) / max(r, 1e-3)
        t = min(1.0, max(0.0, (closure - BLINK[0]) / BLINK[1]))
        out.append(t * t * (3.0 - 2.0 * t))
    return out[0], out[1]


def eyes_wider(pts: np.ndarray, photo: tuple[float, float], face_px: float = 1e9
               ) -> tuple[float, float]:
    """How much of the target's own eyeballs to show (0..1 per eye): by how much
    wider than the photo's eye (``photo``: its eye aspect ratios) the target opens it.

    From 1.2x the photo's opening on faces at least ``SMALL_EYES[1]`` pixels wide
    (``face_px``), from 1.2x + ``SMALL_EYES[2]`` at ``SMALL_EYES[0]`` and less:
    on a small face an eye is a dozen pixels wide, one pixel of landmark noise is
    0.08 of its aspect ratio, and its eyeballs are most of what is left of the
    photo's identity (stage_multi with face_woman: id_win 0.55 -> 0.83, ear_corr
    0.87 -> 0.85 on 40 frames).
    """
    lo_px, hi_px, extra = SMALL_EYES
    start = 1.2 + extra * (1.0 - min(1.0, max(0.0, (face_px - lo_px) / (hi_px - lo_px))))
    out = []
    for lo, r in zip((36, 42), photo, strict=True):
        t = min(1.0, max(0.0, (eye_aspect(pts[lo:lo + 6]) / max(r, 1e-3) - start) / 0.4))
        out.append(t * t * (3.0 - 2.0 * t))
    return out[0], out[1]


def eye_aspect(e: np.ndarray) -> float:
    """Eye aspect ratio of one eye's six points (lid gap over eye width)."""
    gap = float(np.hypot(*(e[1] - e[5])) + np.hypot(*(e[2] - e[4])))
    return gap / (2.0 * float(np.hypot(*(e[0] - e[3]))) + 1e-6)


_DISC3 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
#: Skin samples (two cheeks and the nose) and the face's non-skin features
#: (brows, eyes, outer mouth, nostrils), as landmark index groups.
_CHEEKS = ([1, 2, 3, 31, 40, 41], [15, 14, 13, 35, 47, 46], [31, 32, 33, 34, 35, 29])
_FEATURES = ((17, 22), (22, 27), (36, 42), (42, 48), (48, 60), (31, 36))


def occluders(base_y: np.ndarray, base_uv: np.ndarray, box: tuple[int, int, int, int],
              pts: np.ndarray, io: float) -> np.ndarray | None:
    """Where something that is not skin covers the target's face: float32 0..1, chroma res.

    A microphone, a lock of hair or a dark sleeve in front of the face stays
    in front of the swapped face (thin glasses frames are below its
    resolution; a hand, being skin-coloured, is not found). The target's own skin is
    learnt from its mid-face in this frame (median and spread of Y, U, V
    over the cheeks and the nose); a pixel far from it in colour, or much
    darker than it, is an occluder, except in the zones where a face is not
    skin-coloured anyway (eyes, brows, lips, nostrils). Scores are smooth
    (no hard threshold) and the map is opened and blurred, so it does not
    flicker. None when nothing is found (the common case costs no blend).
    """
    x0, y0 = box[:2]
    hh, hw = base_uv.shape[:2]
    # Worked out at quarter resolution (a quarter of the pixels: 0.78 ->
    # 0.3 ms at 480x480) and upsampled: the map is blurred anyway.
    qh, qw = max(1, hh // 2), max(1, hw // 2)
    yq = base_y[: 4 * qh: 4, : 4 * qw: 4].astype(np.float32)
    uv = base_uv[: 2 * qh: 2, : 2 * qw: 2].astype(np.float32)
    p = (pts - np.array([x0, y0], np.float32)) * 0.25
    cheeks = np.zeros((qh, qw), np.uint8)
    for idx in _CHEEKS:
        cv2.fillConvexPoly(cheeks, np.round(p[idx]).astype(np.int32), 1)
    sel = cheeks.astype(bool)
    if sel.sum() < 12:
        return None
    su, sv = uv[..., 0][sel], uv[..., 1][sel]
    my, mu, mv = median(yq[sel]), median(su), median(sv)
    spread_u = max(2.5, 1.4826 * float(median(np.abs(su - mu))))
    spread_v = max(2.5, 1.4826 * float(median(np.abs(sv - mv))))
    d2 = ((uv[..., 0] - mu) * (1.0 / spread_u)) ** 2 + ((uv[..., 1] - mv) * (1.0 / spread_v)) ** 2
    score = np.clip((np.sqrt(d2) - 4.0) * (1.0 / 3.0), 0.0, 1.0)
    rel = (yq - 16.0) * (1.0 / max(my - 16.0, 8.0))
    # Above the brows, darker than 0.55 of the skin is hair (a fringe);
    # below them only near-black counts (a microphone, a sleeve): a dark
    # patch there is as often the target's own moustache, beard or shadow,
    # and keeping those kept the original person (id_win 0.15 on the stage
    # clip with the woman's photo).
    limit = np.full((qh, 1), 0.35, np.float32)
    limit[: int(max(0.0, float(p[17:27, 1].max())))] = 0.55
    np.maximum(score, np.clip((limit - rel) * (1.0 / 0.15), 0.0, 1.0), out=score)
    # The face's own non-skin features are never occluders.
    zones = np.zeros((qh, qw), np.uint8)
    for lo, hi in _FEATURES:
        cv2.fillConvexPoly(zones, cv2.convexHull(np.round(p[lo:hi]).astype(np.int32)), 1)
    grow = int(round(0.06 * io * 0.5)) | 1
    zones = cv2.dilate(zones, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow)))
    score[zones.astype(bool)] = 0.0
    if float(score.max()) < 0.3:
        return None
    score = cv2.morphologyEx(score, cv2.MORPH_OPEN, _DISC3)  # specks go
    score = cv2.GaussianBlur(score, (0, 0), max(0.6, 0.01 * io))
    return cv2.resize(score, (hw, hh), interpolation=cv2.INTER_LINEAR)


def eye_zones(shape: tuple[int, int], box: tuple[int, int, int, int],
              pts: np.ndarray) -> np.ndarray:
    """The eyes with their lids (``_eye_region``): uint8 0/1 at ``shape``.

    ``shape`` is the half resolution of ``box`` (the masks' resolution); the
    map tells :func:`frame_grain` where the photo keeps its own fine detail.
    """
    p = (pts - np.array(box[:2], np.float32)) * 0.5
    eyes = np.zeros(shape, np.uint8)
    for lo in (36, 42):
        cv2.fillConvexPoly(eyes, np.round(_eye_region(p, lo, lo + 6)).astype(np.int32), 1)
    return eyes


def skin_zones(eyes: np.ndarray, box: tuple[int, int, int, int], pts: np.ndarray,
               poly: np.ndarray, io: float) -> tuple[np.ndarray, np.ndarray]:
    """Bare skin, and bare skin with the eyelids: float32 0/1 maps at the shape of
    ``eyes`` (:func:`eye_zones`' map, the half resolution of ``box``), for
    ``color.match_colour``.

    The first is the face outline (``poly``) without the eyes with their lids,
    the brows and the mouth: where the target's own shading is taken
    (``color.SKIN_SIGMA``). The nose counts as skin: left out, the photo's shadow
    beside it stayed as a grey band on talk_720p with face_woman. The second adds
    the lids (all but the eye itself): where the photo's fine colour goes, so its
    eye shadow and the blush on its lids do not stay as a red glow over the eyes.
    """
    off = np.array(box[:2], np.float32)
    p = (pts - off) * 0.5
    skin = np.zeros(eyes.shape, np.uint8)
    cv2.fillPoly(skin, [np.round((poly - off) * 0.5).astype(np.int32)], 1)
    cv2.fillConvexPoly(skin, np.round(_grown(p[OUTER_MOUTH], 1.15)).astype(np.int32), 0)
    colour = skin.copy()
    skin[eyes > 0] = 0
    for lo in (36, 42):
        cv2.fillConvexPoly(colour, np.round(_grown(p[lo:lo + 6], 1.3)).astype(np.int32), 0)
    t = max(1, int(round(0.12 * io)))
    for lo, hi in ((17, 22), (22, 27)):
        for a in (skin, colour):
            cv2.polylines(a, [np.round(p[lo:hi]).astype(np.int32)], False, 0, thickness=2 * t)
    return skin.astype(np.float32), colour.astype(np.float32)


#: The frame's finest detail band that the face takes (see :func:`frame_grain`):
#: Gaussian sigma as a fraction of the face width, clipped to these pixels.
GRAIN_SIGMA = 0.004
GRAIN_SIGMA_PX = (0.6, 2.0)


def frame_grain(face_y: np.ndarray, base_y: np.ndarray, eyes: np.ndarray, face_px: float,
                io: float) -> np.ndarray:
    """The relit face (float32 luma) with its finest band replaced by the target frame's.

    The frame's grain, noise, pores, stubble and thin glasses frames belong to
    the scene, and the photo's finest band is either missing (a photo smaller
    than the face in the frame: the selfie's face was 0.13 as sharp as the frame
    around it) or of another camera. Taking the target's band below a sigma of
    0.004 face widths raised sharp_ratio on the selfie to 0.40 and on the stage
    clip from 0.31 to 0.38, and brought the target's glasses frames back. It
    moves as the video's own grain does, so it adds no flicker. The eyes keep
    the photo's band (``eyes``: uint8 map at half resolution): taken across them,
    the target's lids and lashes showed through on small faces (identity on
    the stage clip with face_obama fell from 0.9 to 0).
    """
    sigma = min(GRAIN_SIGMA_PX[1], max(GRAIN_SIGMA_PX[0], face_px * GRAIN_SIGMA))
    h, w = face_y.shape
    # blur(face) + (base - blur(base)) is base + blur(face - base): one blur, not two.
    base = base_y.astype(np.float32)
    swapped = cv2.add(base, cv2.GaussianBlur(cv2.subtract(face_y, base), (0, 0), sigma))
    ex, ey, ew, eh = cv2.boundingRect(eyes)
    if ew == 0:
        return swapped
    # The eyes' feathered map over their own box only (a tenth of the face's pixels).
    feather = max(0.6, 0.1 * io)
    m = int(3 * feather + 2)
    x0, y0 = max(0, ex - m), max(0, ey - m)
    x1, y1 = min(eyes.shape[1], ex + ew + m), min(eyes.shape[0], ey + eh + m)
    x1, y1 = min(x1, w // 2), min(y1, h // 2)
    crop = eyes[y0:y1, x0:x1].astype(np.float32)
    if feather >= 3.0 and min(crop.shape) >= 8:
        # A blur this wide at half the resolution again: a quarter of the
        # pixels and half the taps (0.10 -> 0.02 ms).
        ch, cw = crop.shape
        small = cv2.resize(crop, (cw // 2, ch // 2), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), feather / 2)
        keep = cv2.resize(small, (2 * cw, 2 * ch), interpolation=cv2.INTER_LINEAR)
    else:
        keep = cv2.GaussianBlur(crop, (0, 0), feather)
        keep = cv2.resize(keep, (2 * (x1 - x0), 2 * (y1 - y0)), interpolation=cv2.INTER_LINEAR)
    box = np.s_[2 * y0:2 * y1, 2 * x0:2 * x1]
    swapped[box] = cv2.blendLinear(swapped[box], np.ascontiguousarray(face_y[box]),
                                   1.0 - keep, keep)
    return swapped


def composite(base: np.ndarray, face: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``base * (1 - alpha) + face * alpha`` as uint8, the face rounded to uint8 first.

    Blended in float32 and rounded once: the same pixels as OpenCV's uint8
    ``blendLinear``, which has no fast path (0.12 -> 0.07 ms a 272x336 luma box).
    """
    face8 = cv2.convertScaleAbs(face) if face.dtype != np.uint8 else face
    out = cv2.blendLinear(base.astype(np.float32), face8.astype(np.float32), 1.0 - alpha, alpha)
    return cv2.convertScaleAbs(out)


# --- Skin-coloured occluders (a hand): the face against its own usual look --------------

#: Side, in cells, of the face-aligned patch in which a followed face's usual
#: look is kept (see :func:`look_sample`); a 300-pixel face has 6-pixel cells.
LOOK_SIZE = 48
#: Landmarks the patch is aligned on (least-squares affine): the upper jaw,
#: the nose and the eye corners, which an expression (a spoken word, a blink)
#: hardly moves.
_LOOK_FIT = [0, 1, 2, 3, 13, 14, 15, 16, 27, 28, 29, 30, 31, 33, 35, 36, 39, 42, 45]
#: Noise floors (grey levels) of luma and chroma differences from the usual look.
LOOK_NOISE = (4.0, 3.0, 3.0)
#: Difference (in noise-scaled units) where a cell starts to count as covered,
#: and over how much more it is fully covered.
LOOK_SCORE = (3.0, 2.0)
#: The shift (cells, a 3-cell square) the face's patch may be off by.
_LOOK_SHIFT = np.ones((3, 3), np.uint8)
_LOOK_EDGE = np.ones((5, 5), np.uint8)
_LOOK_GROW = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
#: Opened away: single cells (a 3x3 disc opening thinned the fingers away).
_LOOK_SPECK = np.ones((2, 2), np.uint8)
_LOOK_NOISE2 = np.square(np.array(LOOK_NOISE, np.float32))
_ONES3 = np.ones(3, np.float32)
#: The brows, as landmark index groups.
_LOOK_BROWS = ((17, 22), (22, 27))


def look_template(pts: np.ndarray) -> np.ndarray:
    """The face-aligned patch's own landmark positions: ``pts`` moved and scaled
    into a ``LOOK_SIZE`` square with room for the forehead (fixed per track)."""
    p = pts.astype(np.float64)
    lo, hi = p.min(0), p.max(0)
    c = 0.5 * (lo + hi)
    s = float(max(hi - lo)) + 1e-3
    c[1] -= 0.08 * s  # the forehead above the brows
    return ((p - c) * (0.78 * LOOK_SIZE / s) + 0.5 * LOOK_SIZE).astype(np.float32)


def look_affine(pts: np.ndarray, template: np.ndarray) -> np.ndarray:
    """The 2x3 affine taking frame coordinates of the face at ``pts`` into its patch."""
    src = pts[_LOOK_FIT].astype(np.float64)
    dst = template[_LOOK_FIT].astype(np.float64)
    a = np.hstack([src, np.ones((len(src), 1))])
    sol, *_ = np.linalg.lstsq(a, dst, rcond=None)
    return sol.T.astype(np.float64)


def look_sample(y: np.ndarray, u: np.ndarray, v: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The face's Y, U, V in its patch (float32, LOOK_SIZE square, 3 channels).

    Sampled at twice the patch size and averaged down, so that a cell is the
    mean of its pixels (a sparse sample aliased and flickered with the skin's pores).
    The cells' texture (mean luma gradient) was tried as a fourth channel: it
    found little more of the hand case's fingers and more of the stage clip's
    turning faces.
    """
    n = 2 * LOOK_SIZE
    full = cv2.warpAffine(y, affine * 2.0, (n, n), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    size = (LOOK_SIZE, LOOK_SIZE)
    yy = cv2.resize(full, size, interpolation=cv2.INTER_AREA)
    mh = affine.copy()
    mh[:, :2] *= 2.0  # chroma planes are at half resolution (already a mean of 4 pixels)
    uu = cv2.warpAffine(u, mh, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    vv = cv2.warpAffine(v, mh, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.merge([yy, uu, vv]).astype(np.float32)


def look_fixed_zones(template: np.ndarray) -> np.ndarray:
    """The eyes with their lids and the brows: a uint8 0/1 map in a track's patch
    (``template``: its landmarks there, see :func:`look_template`), drawn once.

    They change by themselves (blinks, frowns, raised brows: the zone reaches
    above the brows) and are judged from their surroundings only (see
    :func:`look_cover`); the patch follows the face, so they stay in place in it.
    """
    p = template.astype(np.float32)
    feats = np.zeros((LOOK_SIZE, LOOK_SIZE), np.uint8)
    for lo in (36, 42):
        cv2.fillConvexPoly(feats, np.round(_eye_region(p, lo, lo + 6)).astype(np.int32), 1)
    # A brow rises by a third of the eye distance (surprise, a sung note).
    lift = np.array([0.0, 0.35 * float(np.hypot(*(p[36:42].mean(0) - p[42:48].mean(0))))],
                    np.float32)
    for lo, hi in _LOOK_BROWS:
        brow = np.concatenate([p[lo:hi], p[lo:hi] - lift])
        cv2.fillConvexPoly(feats, cv2.convexHull(np.round(brow).astype(np.int32)), 1)
    # So is the forehead above them: a nod changes how much of it and of the
    # hairline shows (the stage clip's singer), which the patch cannot align.
    feats[: max(0, int(float(p[17:27, 1].min())))] = 1
    return cv2.dilate(feats, _DISC3)


def look_zones(pts: np.ndarray, affine: np.ndarray, fixed: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(face, features, edge)``: uint8 0/1 maps in the patch of the face at ``pts``.

    ``face`` is this frame's swapped outline less its ``edge`` (two cells: a
    turn shows more or less of the temple and the cheek's edge, which the patch
    cannot align); ``features`` the ``fixed`` ones (:func:`look_fixed_zones`,
    value 1) and this frame's lips (value 2), which move in the patch as the
    face speaks.
    """
    p = (pts.astype(np.float64) @ affine[:, :2].T + affine[:, 2]).astype(np.float32)
    face = np.zeros((LOOK_SIZE, LOOK_SIZE), np.uint8)
    cv2.fillPoly(face, [np.round(geometry(p)[1]).astype(np.int32)], 1)
    inner = cv2.erode(face, _DISC3, iterations=2)
    feats = fixed.copy()
    mouth = np.round(_grown(p[OUTER_MOUTH], 1.4)).astype(np.int32)
    cv2.fillConvexPoly(feats, cv2.convexHull(mouth), 2)
    return inner, feats, face - inner


def look_cover(sample: np.ndarray, mean: np.ndarray, var: np.ndarray, face: np.ndarray,
               feats: np.ndarray, edge: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(cover, z)``: where the face differs strongly from its usual look (float32
    0..1 in the patch), and the difference per cell in units of its usual spread.

    ``mean`` and ``var`` are the face's running per-cell mean and variance
    (``track.FaceTrack.observe_look``): a hand, even a skin-coloured one,
    hides the nose, the brows and the cheeks' shading, which the face's own
    reference has. A change of the whole face's light is taken out first
    (the mean difference, see below). Differences are scaled by each cell's own usual
    spread, so the cells that move by themselves (a jaw that talks, a
    moustache) need more to count. The eyes and lips (``feats``) change by
    themselves: they count as covered only when most of their surroundings are;
    the outline's ``edge`` is covered where the cells beside it are.
    """
    inside = face.astype(bool) & ~feats.astype(bool)
    mask = inside.astype(np.uint8)
    if cv2.countNonZero(mask) < 20:
        return np.zeros(face.shape, np.float32), np.zeros(face.shape, np.float32)
    # The light's change: the mean difference of the cells near it (a hand
    # covering a third of the face moved a plain mean by 7 grey levels).
    d = sample - mean
    m = np.array(cv2.mean(d, mask)[:3], np.float32)
    near = cv2.inRange(d[..., 0], float(m[0]) - 12.0, float(m[0]) + 12.0) & mask
    if cv2.countNonZero(near) >= 20:
        m = np.array(cv2.mean(d, near)[:3], np.float32)
    x = sample - m
    # Compared with the range of the usual look around each cell, not with the
    # cell alone: landmarks a little off (a turn, a frown) shift the patch,
    # which then differs beside every edge of the face (brows, nose, jaw).
    # Only the light is: the face's colour is nearly even outside its
    # features, and the colour is what tells a hand from the face best.
    k = _LOOK_SHIFT
    d = x - mean
    y = x[..., 0]
    d[..., 0] = cv2.max(y - cv2.dilate(mean[..., 0], k), 0.0) - \
        cv2.max(cv2.erode(mean[..., 0], k) - y, 0.0)
    z2 = d * d / (cv2.dilate(var, k) + _LOOK_NOISE2)
    z = np.sqrt(z2.reshape(-1, 3) @ _ONES3).reshape(face.shape)
    score = np.clip((z - LOOK_SCORE[0]) * (1.0 / LOOK_SCORE[1]), 0.0, 1.0)
    score *= inside
    score = cv2.morphologyEx(score, cv2.MORPH_OPEN, _LOOK_SPECK)  # single cells: noise
    if not score.any():  # the common case
        return score, z
    # A cell on the hand's edge is only partly different; the edge is drawn
    # one cell out, two around the surely covered cells, so the photo's face
    # does not show through it (two everywhere: the stage clip's identity fell
    # from 0.75 to 0.55 with the obama photo, the weakly covered cells grew too).
    sure = np.clip((score - 0.8) * 5.0, 0.0, 1.0)
    score = cv2.max(cv2.dilate(score, _DISC3), cv2.dilate(sure, _LOOK_GROW))
    # The features are covered as much as their surroundings are (compared
    # with their own usual look, with the two cells' leeway a blink or a frown
    # moves a lid or a brow by, the stage clip's raised brows were covered).
    sigma = 0.06 * LOOK_SIZE
    around = cv2.GaussianBlur(score, (0, 0), sigma)
    weight = cv2.GaussianBlur(inside.astype(np.float32), (0, 0), sigma)
    fill = np.clip((around / (weight + 1e-3) - 0.2) * (1.0 / 0.3), 0.0, 1.0)
    out = np.where(feats.astype(bool), fill, score).astype(np.float32) * face
    out = np.maximum(out, cv2.dilate(out, _LOOK_EDGE) * edge)
    return out, z


def cover_map(cover: tuple[np.ndarray, np.ndarray], box: tuple[int, int, int, int],
              pts: np.ndarray, shape: tuple[int, int]) -> np.ndarray | None:
    """A followed face's cover (``(template, patch map)``, see ``FaceTrack.cover``)
    drawn into ``box`` at ``shape`` (half resolution) for the face at ``pts``."""
    template, occ = cover
    a = look_affine(pts, template)
    x0, y0 = box[:2]
    m = np.empty((2, 3), np.float64)
    m[:, :2] = a[:, :2] * 2.0
    m[:, 2] = a[:, :2] @ np.array([x0, y0], np.float64) + a[:, 2]
    hh, hw = shape
    out = cv2.warpAffine(occ, m, (hw, hh), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out
