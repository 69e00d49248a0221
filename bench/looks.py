"""Looks figures of a swap: does the output keep the target's expression, light and detail?

Plain functions over decoded frames (BGR uint8), shared by ``engine_bench.py --quality``
and the engine tests. On every frame where the input has a face, the face the engine
changed is chosen (of the input's faces, the one whose box changed most), and dlib's
full 68-point model predicts landmarks on the input frame and on the output frame from
the box found in the input frame. Then:

* ``lm_err``: median over frames of the mean distance of brows + eyes + mouth points,
  output vs input, in inter-ocular distances (expression followed: target <= 0.05);
* ``ear_corr``: correlation over frames of the eye aspect ratio, output vs input, where
  the input's varies (std >= 0.02; blinks followed: target >= 0.85);
* ``mar_err``: median |mouth opening out - in|, inner-lip gap / mouth width (<= 0.04;
  ``engine.photo.mouth_ratio``);
* ``sharp_ratio``: median Laplacian variance inside the face hull, output / input
  (detail of the frame: 0.6 to 1.6);
* ``blotch``: median chroma spread (CIELAB a*, b* standard deviation) in the cheeks,
  output / input (the photo's blush and make-up not carried over: <= 1.15);
* ``id_win``: share of sampled frames whose output face is closer (dlib ResNet
  descriptor) to the photo's person than to the original person (>= 0.8);
* ``flicker``: mean frame-to-frame change inside the face box, output minus input,
  grey levels (<= 1.0).

These are proxies: contact sheets (:func:`contact_sheet`) are for the eye.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from engine import models
from engine.blend import eye_aspect
from engine.detect import detect_faces
from engine.landmarks import interocular, predict_landmarks
from engine.photo import mouth_ratio

EXPRESSION = np.r_[17:27, 36:48, 48:68]
CHEEKS = ([1, 2, 3, 4, 48, 31, 40, 41, 36], [15, 14, 13, 12, 54, 35, 47, 46, 45])


def eye_ratio(pts: np.ndarray) -> float:
    """Eye aspect ratio (lid gap over eye width), mean of both eyes."""
    return 0.5 * (eye_aspect(pts[36:42]) + eye_aspect(pts[42:48]))


def _hull_mask(shape: tuple[int, int], pts: np.ndarray) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(m, cv2.convexHull(np.round(pts).astype(np.int32)), 1)
    return m.astype(bool)


def laplacian_var(grey: np.ndarray, mask: np.ndarray) -> float:
    lap = cv2.Laplacian(grey.astype(np.float32), cv2.CV_32F)
    return float(lap[mask].var()) if mask.any() else float("nan")


def cheek_spread(bgr: np.ndarray, pts: np.ndarray) -> float:
    """Mean of the a* and b* standard deviations inside both cheeks (CIELAB)."""
    lab = cv2.cvtColor(bgr.astype(np.float32) / 255.0, cv2.COLOR_BGR2LAB)
    out = []
    for idx in CHEEKS:
        m = np.zeros(bgr.shape[:2], np.uint8)
        cv2.fillPoly(m, [np.round(pts[idx]).astype(np.int32)], 1)
        sel = m.astype(bool)
        if sel.sum() < 30:
            continue
        out.append(0.5 * (lab[..., 1][sel].std() + lab[..., 2][sel].std()))
    return float(np.mean(out)) if out else float("nan")


def _descriptor(bgr: np.ndarray, rect, pts: np.ndarray) -> np.ndarray:
    import dlib

    shape = dlib.full_object_detection(dlib.rectangle(*[int(v) for v in rect]),
                                       [dlib.point(int(x), int(y)) for x, y in pts])
    rgb = np.ascontiguousarray(bgr[..., ::-1])
    return np.array(models.face_encoder().compute_face_descriptor(rgb, shape))


def photo_descriptor(bgr: np.ndarray) -> np.ndarray | None:
    """Descriptor of the largest face of a photo (None without one)."""
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    faces = detect_faces(grey, max_side=1280, upsample=1)
    if not faces:
        return None
    return _descriptor(bgr, faces[0], predict_landmarks(grey, faces[0]))


@dataclass
class FrameFace:
    """One measured frame: the swapped face's box and both landmark sets."""

    index: int
    rect: tuple
    pts_in: np.ndarray
    pts_out: np.ndarray


@dataclass
class Looks:
    frames: list[FrameFace] = field(default_factory=list)
    figures: dict = field(default_factory=dict)


def measure(fin: list[np.ndarray], fout: list[np.ndarray], photo: np.ndarray | None = None,
            samples: int = 20, every: int = 1) -> Looks:
    """All figures for input/output frame lists (same length, same order)."""
    n = min(len(fin), len(fout))
    looks = Looks()
    boxes: list = [None] * n
    for i in range(0, n, every):
        g = cv2.cvtColor(fin[i], cv2.COLOR_BGR2GRAY)
        cands = detect_faces(g, max_side=1280, upsample=0)
        best, best_d = None, 2.0  # a face the engine changed by under 2 grey levels: not swapped
        for r in cands:
            x0, y0, x1, y1 = (max(0, int(v)) for v in r)
            d = float(np.abs(fin[i][y0:y1, x0:x1].astype(np.int16)
                             - fout[i][y0:y1, x0:x1]).mean()) if x1 > x0 and y1 > y0 else 0
            if d > best_d:
                best, best_d = r, d
        boxes[i] = best
        if best is None:
            continue
        gi, go = g, cv2.cvtColor(fout[i], cv2.COLOR_BGR2GRAY)
        looks.frames.append(FrameFace(i, best, predict_landmarks(gi, best),
                                      predict_landmarks(go, best)))
    ff = looks.frames
    fig: dict = {"measured_frames": len(ff)}
    if not ff:
        looks.figures = fig
        return looks
    lm = [float(np.linalg.norm(f.pts_out[EXPRESSION] - f.pts_in[EXPRESSION], axis=1).mean()
                / interocular(f.pts_in)) for f in ff]
    ear_in = np.array([eye_ratio(f.pts_in) for f in ff])
    ear_out = np.array([eye_ratio(f.pts_out) for f in ff])
    mar_in = np.array([mouth_ratio(f.pts_in) for f in ff])
    mar_out = np.array([mouth_ratio(f.pts_out) for f in ff])
    sharp, blotch = [], []
    for f in ff:
        m = _hull_mask(fin[f.index].shape[:2], f.pts_in)
        vi = laplacian_var(cv2.cvtColor(fin[f.index], cv2.COLOR_BGR2GRAY), m)
        vo = laplacian_var(cv2.cvtColor(fout[f.index], cv2.COLOR_BGR2GRAY), m)
        if vi > 0:
            sharp.append(vo / vi)
        ci, co = cheek_spread(fin[f.index], f.pts_in), cheek_spread(fout[f.index], f.pts_in)
        if ci > 0:
            blotch.append(co / ci)
    fig["lm_err"] = round(float(np.median(lm)), 4)
    fig["ear_in_std"] = round(float(ear_in.std()), 4)
    fig["ear_corr"] = (round(float(np.corrcoef(ear_in, ear_out)[0, 1]), 3)
                       if ear_in.std() >= 0.02 and len(ff) > 2 else None)
    fig["mar_err"] = round(float(np.median(np.abs(mar_out - mar_in))), 4)
    fig["sharp_ratio"] = round(float(np.nanmedian(sharp)), 3) if sharp else None
    fig["blotch"] = round(float(np.nanmedian(blotch)), 3) if blotch else None
    # Identity on sampled frames.
    if photo is not None:
        src = photo_descriptor(photo)
        picks = ff[:: max(1, len(ff) // samples)][:samples]
        wins, d_src, d_orig = 0, [], []
        for f in picks:
            din = _descriptor(fin[f.index], f.rect, f.pts_in)
            dout = _descriptor(fout[f.index], f.rect, f.pts_out)
            a, b = float(np.linalg.norm(dout - src)), float(np.linalg.norm(dout - din))
            wins += a < b
            d_src.append(a)
            d_orig.append(b)
        fig["id_win"] = round(wins / len(picks), 3)
        fig["dist_to_photo"] = round(float(np.mean(d_src)), 3)
        fig["dist_to_original"] = round(float(np.mean(d_orig)), 3)
    # Added flicker inside the face box, consecutive measured frames only.
    added = []
    for i in range(1, n):
        b = boxes[i]
        if b is None or boxes[i - 1] is None:
            continue
        x0, y0, x1, y1 = (max(0, int(v)) for v in b)
        gi = [cv2.cvtColor(fin[j][y0:y1, x0:x1], cv2.COLOR_BGR2GRAY).astype(np.float32)
              for j in (i - 1, i)]
        go = [cv2.cvtColor(fout[j][y0:y1, x0:x1], cv2.COLOR_BGR2GRAY).astype(np.float32)
              for j in (i - 1, i)]
        added.append(float(np.abs(go[1] - go[0]).mean() - np.abs(gi[1] - gi[0]).mean()))
    fig["flicker"] = round(float(np.mean(added)), 3) if added else None
    looks.figures = fig
    return looks


def key_frames(looks: Looks) -> dict[str, int]:
    """Frames worth looking at: blink, widest mouth, strongest turn, widest eyes."""
    ff = looks.frames
    if not ff:
        return {}
    ear = [eye_ratio(f.pts_in) for f in ff]
    mar = [mouth_ratio(f.pts_in) for f in ff]

    def yaw(p: np.ndarray) -> float:
        axis = p[16] - p[0]
        return abs(float((p[30] - (p[0] + p[16]) / 2) @ axis)) / (float(axis @ axis) + 1e-6)

    turn = [yaw(f.pts_in) for f in ff]
    return {"blink": ff[int(np.argmin(ear))].index, "wide_eyes": ff[int(np.argmax(ear))].index,
            "widest_mouth": ff[int(np.argmax(mar))].index,
            "strongest_turn": ff[int(np.argmax(turn))].index}


def contact_sheet(fin: list[np.ndarray], fout: list[np.ndarray], looks: Looks,
                  picks: dict[str, int], size: int = 300) -> np.ndarray:
    """Face crops, input above output, one column per picked frame, labelled."""
    rects = {f.index: f.rect for f in looks.frames}
    cols = []
    for label, i in picks.items():
        r = rects.get(i)
        if r is None:
            continue
        x0, y0, x1, y1 = r
        cx, cy, s = (x0 + x1) / 2, (y0 + y1) / 2, 0.85 * max(x1 - x0, y1 - y0)
        h, w = fin[i].shape[:2]
        a0, b0 = int(max(0, cx - s)), int(max(0, cy - s))
        a1, b1 = int(min(w, cx + s)), int(min(h, cy + s))
        pair = []
        for img in (fin[i], fout[i]):
            c = cv2.resize(img[b0:b1, a0:a1], (size, size), interpolation=cv2.INTER_AREA)
            pair.append(c)
        col = np.vstack(pair)
        cv2.putText(col, f"{label} #{i}", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (0, 255, 255), 1, cv2.LINE_AA)
        cols.append(col)
    return np.hstack(cols) if cols else np.zeros((size * 2, size, 3), np.uint8)
