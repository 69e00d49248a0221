"""Piecewise-affine warping over a fixed triangulation, vectorised with OpenCV.

The mesh is the 68 landmarks plus a ring of points around the head. Triangles
are chosen once per task (Delaunay on the source face) and reused for every
frame, so a frame costs: one vectorised 3x3 inverse per triangle, a triangle
index raster at half resolution (one ``fillConvexPoly`` per triangle) and two
``cv2.remap`` calls per plane. No per-pixel Python.

The ring lets the same mesh also *liquify* the target frame: ring points stay
fixed while the face points move toward the source's proportions, so the
target's own head outline follows the new face shape without a seam.
"""

from __future__ import annotations

import cv2
import numpy as np

from .small import centre, median

N_LANDMARKS = 68


def _interocular(pts: np.ndarray) -> float:
    d = centre(pts[36:42]) - centre(pts[42:48])
    return float(np.hypot(d[0], d[1])) + 1e-3


def geometry(pts: np.ndarray, lift: float = 0.12,
             grow: float = 0.18) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(forehead, outline, ring) of a face, computed together (called per frame).

    forehead: eyebrow points raised toward the hairline, so the swap covers
    the lower forehead; outline: the swapped region's polygon (jaw, then the
    raised brows reversed); ring: the outline pushed outward from the face
    centre by ``grow``, the fixed boundary of the liquify. The ring's box is
    the box every per-pixel step of the swap works in: 0.18 instead of 0.25
    made the swap 11 % cheaper with no visible change to the liquify.
    """
    brow = pts[17:27]
    up = pts[27] - pts[8]
    up = up * (lift * 2.0 * _interocular(pts) / (float(np.hypot(up[0], up[1])) + 1e-6))
    forehead = brow + up
    poly = np.concatenate([pts[0:17], forehead[::-1]])
    middle = centre(pts[[27, 28, 29, 30, 33]])
    ring = middle + (poly - middle) * (1.0 + grow)
    return forehead.astype(np.float32), poly.astype(np.float32), ring.astype(np.float32)


def outline(pts: np.ndarray) -> np.ndarray:
    """Closed polygon of the swapped region: jaw line then raised eyebrows (reversed)."""
    return geometry(pts)[1]


def mesh_points(pts: np.ndarray) -> np.ndarray:
    """All mesh vertices: 68 landmarks, raised brows, ring."""
    forehead, _, ring = geometry(pts)
    return np.concatenate([pts, forehead, ring]).astype(np.float32)


def triangulate(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles as (T, 3) vertex indices into ``points``."""
    x0, y0 = points.min(0) - 10
    x1, y1 = points.max(0) + 10
    sub = cv2.Subdiv2D((int(x0), int(y0), int(x1 - x0) + 1, int(y1 - y0) + 1))
    for p in points:
        sub.insert((float(p[0]), float(p[1])))
    tris = []
    for t in sub.getTriangleList().reshape(-1, 3, 2):
        idx = []
        for v in t:
            d = np.abs(points - v).sum(1)
            j = int(d.argmin())
            if d[j] > 1.0:
                break
            idx.append(j)
        if len(idx) == 3 and len(set(idx)) == 3:
            tris.append(idx)
    return np.array(tris, dtype=np.int32)


def _affines(dst: np.ndarray, srcs: list[np.ndarray], tris: np.ndarray) -> np.ndarray:
    """(T, 2 * len(srcs), 3): per triangle, the affine maps taking it from ``dst``
    onto each of ``srcs`` (rows 2i, 2i+1 for ``srcs[i]``).

    Closed form (2x2 inverse of the edge vectors), vectorised over triangles;
    the inverse is shared by all ``srcs``.
    """
    d = dst[tris].astype(np.float64)  # T,3,2
    de = np.stack([d[:, 1] - d[:, 0], d[:, 2] - d[:, 0]], axis=2)  # T,2,2 columns = edges
    det = de[:, 0, 0] * de[:, 1, 1] - de[:, 0, 1] * de[:, 1, 0]
    bad = np.abs(det) < 1e-6
    det[bad] = 1.0
    inv = np.empty_like(de)
    inv[:, 0, 0] = de[:, 1, 1] / det
    inv[:, 0, 1] = -de[:, 0, 1] / det
    inv[:, 1, 0] = -de[:, 1, 0] / det
    inv[:, 1, 1] = de[:, 0, 0] / det
    s = np.concatenate([src[tris].astype(np.float64) for src in srcs], axis=2)  # T,3,2K
    se = np.stack([s[:, 1] - s[:, 0], s[:, 2] - s[:, 0]], axis=2)  # T,2K,2
    lin = se @ inv  # T,2K,2
    a = np.empty((len(tris), 2 * len(srcs), 3))
    a[:, :, :2] = lin
    a[:, :, 2] = s[:, 0] - np.einsum("tij,tj->ti", lin, d[:, 0])
    _tame_slivers(a, d, s, bad)
    return a


#: A triangle whose map stretches more than this many times the mesh's median
#: stretch is a sliver (see :func:`_tame_slivers`).
SLIVER = 4.0


def _tame_slivers(a: np.ndarray, d: np.ndarray, s: np.ndarray, flat: np.ndarray) -> None:
    """Give sliver triangles a bounded map, in place: the median stretch, centroid to centroid.

    A closed mouth in ``dst`` against the photo's open one makes the inner lips'
    triangles a line of zero height: their exact map stretches by hundreds of
    times (the median frame of talk_720p + face_obama: 440x the mesh's median),
    and the grid cells that the raster still gives them sampled the photo far
    outside the triangle: a white fleck and a dark dot in the target's closed
    lip corner. Such a triangle covers a line of pixels; it now samples about its
    own centroid in the source, at the mesh's usual scale. ``flat``: triangles of
    no area at all (lips whose points meet), which had sampled the photo at the
    frame's own coordinates.
    """
    cd = d.mean(1)  # T,2
    for k in range(a.shape[1] // 2):
        lin = a[:, 2 * k:2 * k + 2, :2]
        stretch = np.sqrt((lin ** 2).sum((1, 2)) * 0.5)
        usual = float(median(stretch[~flat])) if not flat.all() else 1.0
        wild = flat | (stretch > SLIVER * usual)
        if not wild.any():
            continue
        cs = s[wild][:, :, 2 * k:2 * k + 2].mean(1)
        lin[wild] = np.eye(2) * usual
        a[wild, 2 * k:2 * k + 2, 2] = cs - usual * cd[wild]


class Maps:
    """Warp maps for one region of interest (even-aligned box in frame coordinates).

    ``src_full``/``src_half`` sample the source image (luma / chroma planes),
    ``tgt_full`` samples the frame itself (the liquify) and ``tgt_half`` the
    chroma crop of the box (its coordinates start at the box corner); both
    are None without a liquify, and both are displacements from the output
    pixel's own position (sample them with :func:`remap_relative`).
    ``mir_full``/``mir_half`` sample the source's mirror image (None unless
    asked for, see ``compute_maps``).
    """

    __slots__ = ("box", "src_full", "src_half", "tgt_full", "tgt_half", "mir_full", "mir_half")


def compute_maps(box: tuple[int, int, int, int], dst: np.ndarray, src: np.ndarray,
                 tgt: np.ndarray | None, tris: np.ndarray, grid: int = 2,
                 mirror: np.ndarray | None = None) -> Maps:
    """Build the remap tables for ``box`` = (x0, y0, x1, y1).

    ``dst`` are mesh vertices in the output frame, ``src`` the same vertices in
    the source image, ``tgt`` in the input frame (None: no liquify). The exact
    piecewise-affine map is evaluated on a grid every ``grid`` (2 or 4) luma
    pixels and interpolated bilinearly to chroma and luma resolution: the
    map is continuous and piecewise linear, so the error is a fraction of a
    pixel, at a quarter of the cost per step of grid. x0, y0 must be even and
    the box size a multiple of ``grid``. ``mirror``: the same vertices in the
    source's mirror image (a turned photo, see ``source.mirror_hidden_half``),
    for ``mir_full``/``mir_half``.
    """
    x0, y0, x1, y1 = box = tuple(int(v) for v in box)
    full = (x1 - x0, y1 - y0)
    halfsize = (full[0] // 2, full[1] // 2)
    gw, gh = full[0] // grid, full[1] // grid
    c = (grid - 1) / 2.0  # grid pixel j <-> luma x0 + grid*j + c
    # Triangle index raster on the grid (one fillConvexPoly per triangle).
    idx = np.full((gh, gw), len(tris), np.int32)
    shift = 4
    off = np.array([x0 + c, y0 + c], np.float32)
    verts = ((dst - off) / grid * (1 << shift)).round().astype(np.int32)
    fill = cv2.fillConvexPoly
    # One gather, not one per triangle; positional arguments: OpenCV's
    # keyword parsing was a third of each call (185 triangles: 0.36 -> 0.24 ms).
    for t, tri in enumerate(verts[tris]):
        fill(idx, tri, t, cv2.LINE_8, shift)
    gx = (np.arange(gw, dtype=np.float32) * grid + (x0 + c))[None, :]
    gy = (np.arange(gh, dtype=np.float32) * grid + (y0 + c))[:, None]

    def apply(a: np.ndarray) -> list[np.ndarray]:
        # a: (T+1, K, 3) rows of affine maps; one gather for all K rows, with
        # the coefficients first so that each one's grid is contiguous (the
        # same products on unstrided planes: 0.14 -> 0.10 ms a 68x84 grid).
        k = a.shape[1]
        coef = np.ascontiguousarray(a.astype(np.float32).transpose(1, 2, 0)).reshape(3 * k, -1)
        m = np.take(coef, idx, axis=1)  # 3K,gh,gw
        return [m[3 * i] * gx + m[3 * i + 1] * gy + m[3 * i + 2] for i in range(k)]

    def to_half(d: np.ndarray) -> np.ndarray:
        if grid == 2:
            return d
        return cv2.resize(d, halfsize, interpolation=cv2.INTER_LINEAR)

    def upsample(d: np.ndarray) -> np.ndarray:
        # Full-resolution map = upsampled displacement, which OpenCV adds to
        # the output pixel's position (WARP_RELATIVE_MAP), so it is exactly
        # the identity wherever nothing moves. The box offset is added on the
        # small grid (bilinear resizing keeps constants). Adding the pixel
        # grid here instead gave the same pixels at one more full-size pass.
        return cv2.resize(d + np.array([x0, y0], np.float32), full,
                          interpolation=cv2.INTER_LINEAR)

    out = Maps()
    out.box = box
    # Outside the mesh (the box corners) the frame stays put, and the source
    # map continues as the best similarity of the whole mesh: the feathered
    # mask's faint tail there, and map interpolation next to the mesh edge,
    # then sample the face's surroundings instead of arbitrary pixels.
    ident = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    srcs = [src] if mirror is None else [src, mirror]
    rows = [_affines(dst, srcs + ([] if tgt is None else [tgt]), tris)]
    last = np.concatenate([similarity(dst, v) for v in srcs] + ([] if tgt is None else [ident]))
    maps = apply(np.concatenate(rows + [last[None]]))
    sx, sy = maps[0], maps[1]
    # Source chroma coordinate of a luma position p is (p - 0.5) / 2.
    # Resizing the coordinates themselves is exact inside the grid; in the
    # outermost half grid step (mask alpha 0 there) they clamp instead of
    # extending: one pass fewer than the displacement route below.
    s = np.dstack([sx, sy])
    out.src_half = (to_half(s) - 0.5) * 0.5
    out.src_full = cv2.resize(s, full, interpolation=cv2.INTER_LINEAR)
    out.mir_full = out.mir_half = None
    if mirror is not None:
        m = np.dstack([maps[2], maps[3]])
        out.mir_half = (to_half(m) - 0.5) * 0.5
        out.mir_full = cv2.resize(m, full, interpolation=cv2.INTER_LINEAR)
    out.tgt_full = out.tgt_half = None
    if tgt is not None:
        d = np.dstack([maps[-2] - gx, maps[-1] - gy])
        out.tgt_half = to_half(d) * 0.5
        out.tgt_full = upsample(d)
    return out


def remap(plane: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Sample ``plane`` (1 or 2 channels) at the (H, W, 2) float32 map ``m``."""
    return cv2.remap(plane, m, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def remap_relative(plane: np.ndarray, d: np.ndarray,
                   interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Sample ``plane`` at each output pixel's own position plus the (H, W, 2)
    float32 displacement ``d`` (the liquify maps, see :class:`Maps`), with
    ``interpolation`` (see :func:`liquify_interpolation`)."""
    return cv2.remap(plane, d, None, interpolation | cv2.WARP_RELATIVE_MAP,
                     borderMode=cv2.BORDER_REPLICATE)


#: Fine detail (mean absolute Laplacian of the frame's luma inside the face) above
#: which the liquify samples the luma bicubically (see :func:`liquify_interpolation`).
FINE_DETAIL = 3.3
#: Face pixels (inside the landmarks' hull) needed to judge the frame's detail.
DETAIL_PIXELS = 400


def liquify_interpolation(y: np.ndarray, pts: np.ndarray) -> int | None:
    """The interpolation for the liquify of a video's luma (``cv2.INTER_*``), judged
    on one face: ``y`` the frame's luma around it, ``pts`` its landmarks in ``y``.

    The liquify moves the frame's pixels by fractions of a pixel almost
    everywhere, and bilinear sampling at a fraction is a blur: the liquified
    face kept 0.55 (the selfie) and 0.61 (stage) of the frame's Laplacian
    variance inside the face, and the grain ``blend.frame_grain`` takes from it,
    and the hair the ring moves, came out softer than the frame around them.
    Bicubic keeps 0.85-0.89 there, at three times the cost (0.5 ms more a
    360x288 box). Soft video has little such detail to lose: the mean |Laplacian|
    is 2.0-2.9 on talk_720p and talk_480sq, whose faces stayed within 0.73-0.92
    of the frame's sharpness, against 3.9-4.9 on the selfie and 5-26 on most of
    the stage clip's faces (its soft close-up: 2.3). Such a clip stays bilinear.
    None when too little of the face is in ``y`` to tell (``DETAIL_PIXELS``).
    """
    mask = np.zeros(y.shape, np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(pts).astype(np.int32)), 1)
    inside = mask.astype(bool)
    if int(inside.sum()) < DETAIL_PIXELS:
        return None
    fine = float(np.abs(cv2.Laplacian(y, cv2.CV_32F))[inside].mean())
    return cv2.INTER_CUBIC if fine > FINE_DETAIL else cv2.INTER_LINEAR


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (2x3) taking points ``src`` onto ``dst``.

    Closed form with complex numbers: z_dst ~ a * z_src + b.
    """
    zs = src[:, 0] + 1j * src[:, 1]
    zd = dst[:, 0] + 1j * dst[:, 1]
    ms, md = zs.mean(), zd.mean()
    zs, zd = zs - ms, zd - md
    a = (np.conj(zs) * zd).sum() / ((np.abs(zs) ** 2).sum() + 1e-9)
    b = md - a * ms
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])


#: Eye corners and mouth corners: the photo's shape is aligned on the features
#: that carry the expression, so its other proportions (jaw, chin, nose) move
#: in and the eyes, brows and mouth stay where the target has them.
_ANCHORS = [36, 39, 42, 45, 48, 54]
#: Groups that keep the target's own shape (its expression) and only shift.
_EXPRESSIVE = ((36, 42), (42, 48), (48, 68))
#: The brows keep the target's shape and move only a quarter of the way
#: toward the photo's position: how high they sit above the eyes is
#: expression (surprise); moved half-way, a raised brow showed twice (the
#: target's at the mask's edge); not moved at all, identity fell (id_win 0.92
#: -> 0.67 on talk_480sq with the woman's photo).
_BROWS = slice(17, 27)


def morph_shape(target: np.ndarray, source: np.ndarray, strength: float) -> np.ndarray:
    """Move the target landmarks toward the source face's proportions.

    The jaw outline and the nose take ``strength`` of the (similarity-aligned)
    source shape; eyes and mouth only shift as a whole and the brows a
    quarter of the way, so the target's expression (raised brows, blinks, mouth opening) is kept.
    Strength fades with head yaw, because a frontal photo's outline is wrong
    for a turned head.
    """
    if strength <= 0:
        return target.copy()
    t = target.astype(np.float64)
    a = similarity(source[_ANCHORS].astype(np.float64), t[_ANCHORS])
    aligned = source @ a[:, :2].T + a[:, 2]
    # Yaw proxy: nose tip offset from the jaw midpoint, relative to jaw width.
    axis = t[16] - t[0]
    jaw_w2 = float(axis @ axis) + 1e-6
    yaw = abs(float((t[30] - (t[0] + t[16]) / 2) @ axis)) / jaw_w2
    k = strength * min(1.0, max(0.0, 1.0 - yaw / 0.25))
    delta = aligned - t
    out = t + k * delta
    for lo, hi in _EXPRESSIVE:
        out[lo:hi] = t[lo:hi] + k * delta[lo:hi].mean(0)
    out[_BROWS] = t[_BROWS] + 0.5 * k * delta[_BROWS].mean(0)
    return out.astype(np.float32)
