"""Swapping one face into one frame: morph, warp, relight, mask, blend.

Works in place on the YUV planes of the frame, inside the box around the face
only (a few hundred pixels square), with whole-array OpenCV/numpy operations.
"""

from __future__ import annotations

import cv2
import numpy as np

from . import blend, color, warp
from .small import centre
from .source import SourceFace, match_sharpness


def swap_face(y: np.ndarray, u: np.ndarray, v: np.ndarray, target: np.ndarray,
              src: SourceFace, *, morph: float, keep_mouth: bool,
              eye_ref: tuple[float, float] | None = None,
              cover: tuple[np.ndarray, np.ndarray] | None = None,
              liquify: int = cv2.INTER_LINEAR) -> None:
    """Replace the face at landmarks ``target`` in planes (y, u, v) with the source face.

    ``eye_ref``: the target face's usual eye openings (``FaceTrack.eye_ref``;
    None when unknown), so that its blinks show (see ``blend.eye_closure``).
    ``cover``: what covers the target face in this frame (``FaceTrack.cover``:
    a hand; None: nothing), kept in front of the swapped face. ``liquify``: the
    interpolation of the frame's luma in the liquify (:func:`liquify_for`).
    """
    h, w = y.shape
    fh_t, _, ring = warp.geometry(target)
    box = _region(ring, target, w, h)
    if box is None:
        return
    x0, y0, x1, y1 = box
    grid = _grid(target)
    dst = warp.morph_shape(target, src.pts, morph)
    fh_d, poly_d, _ = warp.geometry(dst)
    dst_mesh = np.concatenate([dst, fh_d, ring])
    moved = morph > 0 and float(np.abs(dst - target).max()) > 0.25
    tgt_mesh = np.concatenate([target, fh_t, ring]) if moved else None
    maps = warp.compute_maps(box, dst_mesh, src.mesh, tgt_mesh, src.tris, grid,
                             src.mirror_mesh)
    cx0, cy0, cx1, cy1 = x0 // 2, y0 // 2, x1 // 2, y1 // 2
    base_uv = cv2.merge([u[cy0:cy1, cx0:cx1], v[cy0:cy1, cx0:cx1]])
    if moved:
        # The liquify only moves points inside the ring, which lies inside the
        # box, so the chroma can be sampled from the box crop alone. (U and V
        # one plane at a time would be 0.1 ms cheaper, see _chroma, but the
        # occluders' threshold then flipped on 140 of 300 frames of talk_480sq.)
        base_y = warp.remap_relative(y, maps.tgt_full, liquify)
        base_uv = warp.remap_relative(base_uv, maps.tgt_half)
    else:
        base_y = y[y0:y1, x0:x1]
    hidden = _hidden_weights(box, dst, src.hidden_side) if src.hidden_side else None
    face_y = _sample(src.y, src.y_m, maps.src_full, maps.mir_full, hidden, 0)
    face_px = float(np.hypot(*(dst[16] - dst[0])))
    io = float(np.hypot(*(centre(dst[36:42]) - centre(dst[42:48]))))
    # The photo's U, V and forehead cut in one four-channel remap (see _chroma).
    face_c = _sample(*_chroma(src), maps.src_half, maps.mir_half, hidden, 1)
    keep = _keep(face_c) if src.has_cut else None
    alpha = blend.face_mask(box, dst, poly_d, io, keep_mouth=1.0 if keep_mouth else 0.0,
                            eyes=blend.eye_closure(target, eye_ref), eye_open=eye_ref,
                            eyeballs=blend.eyes_wider(target, src.eye_ratios, face_px))
    if keep is not None:
        alpha *= keep
    occ = blend.occluders(base_y, base_uv, box, target, io)
    if cover is not None:
        # Drawn on the liquified face (dst), where the frame's hand now is.
        hand = blend.cover_map(cover, box, dst, alpha.shape)
        occ = hand if occ is None else np.maximum(occ, hand)
    if occ is not None:
        alpha *= 1.0 - occ
    if not src.sharpness_matched:
        src.scale_to_frame = face_px / (float(np.hypot(*(src.pts[16] - src.pts[0]))) + 1e-6)
        if match_sharpness(src, face_y, base_y, alpha):
            face_y = _sample(src.y, src.y_m, maps.src_full, maps.mir_full, hidden, 0)
            face_c = _sample(*_chroma(src), maps.src_half, maps.mir_half, hidden, 1)
    eyes = blend.eye_zones(alpha.shape, box, dst)
    skin = blend.skin_zones(eyes, box, dst, poly_d, io) if color.skin_reach(face_px) else None
    cy, cuv = color.match_colour(face_y, _uv(face_c), base_y, base_uv, alpha, face_px, skin,
                                 src.colourless)
    alpha_full = cv2.resize(alpha, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    cy = blend.frame_grain(cy, base_y, eyes, face_px, io)
    y[y0:y1, x0:x1] = blend.composite(base_y, cy, alpha_full)
    out_uv = blend.composite(base_uv, cuv, alpha)
    u[cy0:cy1, cx0:cx1] = out_uv[..., 0]
    v[cy0:cy1, cx0:cx1] = out_uv[..., 1]


def _grid(target: np.ndarray) -> int:
    """Warp-map grid step: 4 pixels for large faces (see warp.compute_maps), else 2."""
    return 4 if float(np.hypot(*(target[16] - target[0]))) > 160 else 2


def face_region(target: np.ndarray, w: int, h: int) -> tuple[int, int, int, int] | None:
    """The box (x0, y0, x1, y1) that :func:`swap_face` changes for landmarks ``target``.

    Even-aligned and a multiple of the warp grid in size, clipped to the
    w x h frame; None when too little of the face is inside the frame.
    It depends only on the target landmarks, so a crop of exactly this box
    (or any even-aligned crop containing it) swaps the same as the frame.
    """
    return _region(warp.geometry(target)[2], target, w, h)


def _region(ring: np.ndarray, target: np.ndarray, w: int, h: int
            ) -> tuple[int, int, int, int] | None:
    """:func:`face_region` from the face's ring (see ``warp.geometry``)."""
    x0, y0 = ring.min(0) - 2
    x1, y1 = ring.max(0) + 2
    x0, y0 = max(0, int(x0) // 2 * 2), max(0, int(y0) // 2 * 2)
    x1, y1 = min(w, (int(x1) + 2) // 2 * 2), min(h, (int(y1) + 2) // 2 * 2)
    if x1 - x0 < 16 or y1 - y0 < 16:
        return None
    grid = _grid(target)
    return x0, y0, x1 - (x1 - x0) % grid, y1 - (y1 - y0) % grid


def faces_crop(y: np.ndarray, u: np.ndarray, v: np.ndarray, faces: list[np.ndarray]
               ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], list[np.ndarray]] | None:
    """Views of the planes over the union of the faces' regions, and the landmarks in it.

    None when no face reaches into the frame. Swapping in these views (or in
    copies of them) gives exactly the same pixels, wherever it runs.
    """
    h, w = y.shape
    boxes = [b for b in (face_region(p, w, h) for p in faces) if b is not None]
    if not boxes:
        return None
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    off = np.array([x0, y0], np.float32)
    return ((y[y0:y1, x0:x1], u[y0 // 2:y1 // 2, x0 // 2:x1 // 2],
             v[y0 // 2:y1 // 2, x0 // 2:x1 // 2]), [p - off for p in faces])


def liquify_for(y: np.ndarray, faces: list[np.ndarray]) -> int | None:
    """The liquify's interpolation for a video whose frame ``y`` has these faces: judged
    on the first face with enough of itself in the frame (``warp.liquify_interpolation``),
    None when none has. A task decides once, so every face and view is sampled alike."""
    h, w = y.shape
    for pts in faces:
        box = face_region(pts, w, h)
        if box is not None:
            x0, y0, x1, y1 = box
            chosen = warp.liquify_interpolation(y[y0:y1, x0:x1], pts - np.array([x0, y0]))
            if chosen is not None:
                return chosen
    return None


def swap_faces(y: np.ndarray, u: np.ndarray, v: np.ndarray, faces: list[np.ndarray],
               src, *, morph: float, keep_mouth: bool,
               eye_refs: list | None = None, views: list | None = None,
               covers: list | None = None, liquify: int | None = None) -> None:
    """:func:`swap_face` for every face, inside the crop :func:`faces_crop` chooses.

    ``eye_refs``, ``covers``: per face, its ``eye_ref`` and ``cover`` (see
    :func:`swap_face`). ``src`` is a SourceFace, or a ``library.FaceLibrary``
    with ``views`` the choice per face. ``liquify``: the task's (see
    :func:`liquify_for`); None: judged on this frame.
    """
    if liquify is None:
        liquify = liquify_for(y, faces) or cv2.INTER_LINEAR
    found = faces_crop(y, u, v, faces)
    if found is not None:
        none = [None] * len(faces)
        for pts, ref, view, cover in zip(found[1], eye_refs or none, views or none,
                                         covers or none, strict=True):
            swap_one(*found[0], pts, src, view, morph=morph, keep_mouth=keep_mouth, eye_ref=ref,
                     cover=cover, liquify=liquify)


def swap_one(y: np.ndarray, u: np.ndarray, v: np.ndarray, target: np.ndarray, src,
             view, *, morph: float, keep_mouth: bool,
             eye_ref: tuple[float, float] | None = None,
             cover: tuple[np.ndarray, np.ndarray] | None = None,
             liquify: int = cv2.INTER_LINEAR) -> None:
    """:func:`swap_face` of a photo (``view`` None) or of a library's chosen views."""
    if view is None:
        swap_face(y, u, v, target, src, morph=morph, keep_mouth=keep_mouth, eye_ref=eye_ref,
                  cover=cover, liquify=liquify)
    else:
        from .library import swap_views

        swap_views(y, u, v, target, src, view, morph=morph, keep_mouth=keep_mouth,
                   eye_ref=eye_ref, cover=cover, liquify=liquify)


def _keep(face_c: np.ndarray) -> np.ndarray:
    """The photo's forehead-hair cut (see ``forehead_keep``) warped into the box, 0..1,
    from the sampled :func:`_chroma` planes."""
    return cv2.multiply(face_c[..., 2], 1.0 / 255.0, dtype=cv2.CV_32F)


def _uv(face_c: np.ndarray) -> np.ndarray:
    """Channels 0 and 1 (U, V) of a four-channel uint8 plane, as a contiguous (H, W, 2) array.

    Copied as one 16-bit value a pixel: numpy converts a strided two-of-four
    channel view to float32 twenty times slower than a contiguous one (0.15
    against 0.007 ms a 136x168 box; this copy 0.01 ms).
    """
    h, w = face_c.shape[:2]
    return np.ascontiguousarray(face_c.view(np.uint16)[..., 0]).view(np.uint8).reshape(h, w, 2)


def _chroma(src: SourceFace) -> tuple[np.ndarray, np.ndarray | None]:
    """The photo's U, V and forehead cut (``keep``) as one four-channel plane, and its
    mirror image's (None without one), made once and again whenever the planes change.

    OpenCV remaps one- and four-channel planes with SIMD and two-channel ones
    without: U+V and the cut took 0.26 + 0.08 ms a 136x168 box, the four
    channels together 0.10 ms (the same values as one plane at a time; the
    two-channel remap rounds differently by 1 on about 1 % of them).
    """
    key = (src.uv, src.keep, src.uv_m, src.keep_m)
    cached = src.chroma4
    if cached is None or any(a is not b for a, b in zip(cached[0], key, strict=True)):
        def four(uv: np.ndarray | None, keep: np.ndarray | None) -> np.ndarray | None:
            if uv is None:
                return None
            k = keep if keep is not None else uv[..., 0]
            return cv2.merge([uv, k, k])
        cached = src.chroma4 = (key, four(src.uv, src.keep), four(src.uv_m, src.keep_m))
    return cached[1], cached[2]


def _sample(plane: np.ndarray, mirrored: np.ndarray | None, m: np.ndarray,
            m_mirror: np.ndarray | None, hidden, level: int) -> np.ndarray:
    """The source plane warped into the box; a turned photo's hidden side from the mirror.

    ``hidden`` is None or (full, half) resolution weights of the mirror
    image (see :func:`_hidden_weights`); ``level`` 0 for luma, 1 for chroma.
    """
    out = warp.remap(plane, m)
    if hidden is None:
        return out
    w = hidden[level]
    return cv2.blendLinear(out, warp.remap(mirrored, m_mirror), 1.0 - w, w)


def _hidden_weights(box: tuple[int, int, int, int], dst: np.ndarray, side: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Weights (luma and chroma resolution) of the mirror image across the face's midline.

    0 on the photo's better-seen half, 1 on the hidden one (``side``: the
    half of landmark 16 when +1, of landmark 0 when -1). The ramp runs from
    0.1 to 0.4 eye distances into the hidden side of the line from the
    nose bridge to the chin: the nose, seen well enough in a turned photo,
    stays the photo's own (mixed at the midline, two nose ridges showed).
    """
    x0, y0, x1, y1 = box
    top, chin = dst[27].astype(np.float64), dst[8].astype(np.float64)
    d = chin - top
    n = np.array([-d[1], d[0]]) / (float(np.hypot(*d)) + 1e-6)
    if float((dst[16] - top) @ n) < 0:
        n = -n  # the normal points to landmark 16's half
    io = float(np.hypot(*(dst[36:42].mean(0) - dst[42:48].mean(0)))) + 1e-3
    k = side * n / (0.3 * io)
    c = -float(k @ top) - 0.1 / 0.3
    xs = np.arange(x0, x1, dtype=np.float32)
    ys = np.arange(y0, y1, dtype=np.float32)
    full = np.clip(c + k[0] * xs[None, :] + k[1] * ys[:, None], 0.0, 1.0).astype(np.float32)
    half = np.ascontiguousarray(full[::2, ::2])
    return full, half
