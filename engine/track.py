"""Following faces between detections, with landmark stabilisation.

Per frame and face: Lucas-Kanade optical flow carries last frame's
(stabilised) landmarks to this frame; the 68-point predictor measures them
afresh; the two are fused per point. Where the measurement agrees with the flow
within the predictor's noise, the flow (smooth) wins; where they differ by more
than the noise (fast expression change the flow missed) the measurement wins
at once. So landmarks do not jitter and do not lag on fast motion.

Detection runs only every N frames, after a scene cut, or when a track is lost.
In main-face mode the first (largest) face is followed; after losing it, a new
candidate is accepted only if its dlib ResNet descriptor matches the person
followed so far, so the swap never jumps to another person.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import cv2
import numpy as np

from .blend import (
    eye_aspect,
    look_affine,
    look_cover,
    look_fixed_zones,
    look_sample,
    look_template,
    look_zones,
)
from .detect import Rect, detect_faces, detect_near, iou
from .landmarks import interocular, predict_landmarks
from .small import centre, quantile

#: Frames of eye openings kept per face (3 s at 30 fps) for ``FaceTrack.eye_ref``.
EYE_HISTORY = 90
#: Frames a new track's usual look is learnt from before it is compared
#: (``FaceTrack.observe_look``), and the rate at which it follows the face after.
LOOK_LEARN = 15
LOOK_RATE = 0.04
#: Descriptor distance under which a face is the chosen person (``Tracker(target=)``).
TARGET_MATCH = 0.6
#: Frames between checks that the followed face is still the chosen person (a
#: track may slide onto someone passing in front), and for which a face found not
#: to be them is not described again while it stays in place.
TARGET_VERIFY = 60

#: Eyelid and inner-lip points: watched closely in flow-only frames (``FaceTrack.update``).
_EXPRESSIVE_PTS = np.r_[37, 38, 40, 41, 43, 44, 46, 47, 61, 62, 63, 65, 66, 67]

Describer = Callable[[np.ndarray], Callable[[], "np.ndarray | None"]]

# 11-pixel windows, 10 iterations: 45% cheaper than 15/20 with the same
# stability figure (the predictor measurement is fused in where flow errs).
_LK = dict(winSize=(11, 11), maxLevel=2,
           criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 0.03))


def _frame(pts: np.ndarray) -> tuple[np.ndarray, float]:
    """Reference frame of a face: centre of eyes+nose, jaw width as scale."""
    return centre(pts[27:48]), float(np.linalg.norm(pts[16] - pts[0])) + 1e-3


def stabilise(prev_pts: np.ndarray, flow_pts: np.ndarray, measured: np.ndarray,
              noise: float, k_min: float) -> np.ndarray:
    """Fuse flow-predicted and measured landmarks, point by point.

    ``noise`` is the predictor's jitter in pixels: differences well below it
    are treated as noise (weight ``k_min`` for the measurement, which still
    cancels flow drift); differences above it are real motion (weight -> 1).
    """
    d = np.linalg.norm(measured - flow_pts, axis=1, keepdims=True)
    k = np.clip(1.0 - np.exp(-((d / noise) ** 2)), k_min, 1.0)
    return (flow_pts + k * (measured - flow_pts)).astype(np.float32)


class FaceTrack:
    """One followed face: stabilised landmarks and the detector-rect calibration."""

    #: Flow-only frames need the whole face to move less than MOVE, and all but
    #: the worst 5 % of points (3 of 68) to deviate from that common shift by
    #: less than DEFORM (x eye distance): one noisy flow point no longer
    #: forces a measurement, a blink or a mouth movement (6+ points) still does.
    MOVE = 0.04
    DEFORM = 0.08
    #: ... and no lid or inner-lip point to move by more than LIDS (x eye
    #: distance) or to be lost by the flow: a blink or a word starts that way.
    LIDS = 0.03

    def __init__(self, pts: np.ndarray, rect: Rect) -> None:
        self.pts = pts.astype(np.float32)
        self.misses = 0
        self.skipped = 0  # consecutive frames moved by the flow alone
        self.rel = np.zeros(4, np.float32)
        self.calibrate(rect)
        self._eyes: deque = deque(maxlen=EYE_HISTORY)
        self.eye_ref: tuple[float, float] | None = None
        self.observe_eyes()
        #: What covers the face in this frame (a hand): ``(template, map)`` in
        #: the face's patch (see ``blend.cover_map``), or None.
        self.cover: tuple[np.ndarray, np.ndarray] | None = None
        self._template: np.ndarray | None = None
        self._zones: tuple | None = None
        self._look_n = 0
        self._mean = self._var = self._last = None

    def observe_look(self, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> None:
        """Compare this frame's face with its usual look, then update that look.

        The usual look is a running mean and variance per cell of the face's
        patch (``blend.look_sample``), learnt over the first ``LOOK_LEARN``
        frames and then followed at ``LOOK_RATE`` only where the face is not
        covered, so a hand held in front is not learnt as the face. Sets
        :attr:`cover`: a hand is skin-coloured, so the frame's own skin cannot
        tell it from the face (``blend.occluders``), but the face's own look can.
        The map goes off over a few frames (averaged with the last frame's), so
        it does not flicker.
        """
        if self._template is None:
            self._template = look_template(self.pts)
            self._zones = look_fixed_zones(self._template)
        a = look_affine(self.pts, self._template)
        s = look_sample(y, u, v, a)
        if self._look_n < LOOK_LEARN:
            self._look_n += 1
            if self._mean is None:
                self._mean, self._var = s, np.zeros_like(s)
            else:
                d = s - self._mean
                r = 1.0 / self._look_n
                self._mean += r * d
                self._var += r * (d * d - self._var)
            self.cover = None
            return
        score, z = look_cover(s, self._mean, self._var, *look_zones(self.pts, a, self._zones))
        if self._last is not None and self._last.any():  # on at once, off over frames
            score = np.maximum(score, 0.5 * (score + self._last))
        self._last = score
        # Cells far from their usual look are learnt slowly (a hand held
        # still for seconds is taken in, a passing one is not).
        q = z * (1.0 / 2.5)
        g = np.exp(-(q * q))
        np.maximum(g, 0.05, out=g)
        g *= LOOK_RATE
        if score.any():
            g *= np.square(1.0 - score)
        w = cv2.merge([g, g, g])
        d = s - self._mean
        self._mean += w * d
        self._var += w * (d * d - self._var)
        self.cover = (self._template, score) if float(score.max()) > 0.05 else None

    def observe_eyes(self) -> None:
        """Add this frame's eye openings to the history that sets :attr:`eye_ref`.

        ``eye_ref`` is, per eye, the 60th percentile of the last
        ``EYE_HISTORY`` frames' eye aspect ratios: the face's own usual
        opening, which brief blinks do not pull down; None for the first
        few frames. A blink is judged against it (``blend.eye_closure``).
        """
        p = self.pts
        self._eyes.append((eye_aspect(p[36:42]), eye_aspect(p[42:48])))
        n = len(self._eyes)
        if n < 5:
            return
        k = int(0.6 * (n - 1))
        self.eye_ref = (sorted(e[0] for e in self._eyes)[k],
                        sorted(e[1] for e in self._eyes)[k])

    def calibrate(self, rect: Rect) -> None:
        """Remember where the detector puts its box relative to the landmarks.

        The predictor is trained on detector boxes; feeding it boxes with the
        same relation to the face keeps its output unbiased while tracking.
        """
        c, s = _frame(self.pts)
        rel = np.array([(rect[0] - c[0]) / s, (rect[1] - c[1]) / s,
                        (rect[2] - c[0]) / s, (rect[3] - c[1]) / s], np.float32)
        self.rel = rel if not self.rel.any() else 0.7 * self.rel + 0.3 * rel

    def rect(self, pts: np.ndarray | None = None) -> Rect:
        c, s = _frame(self.pts if pts is None else pts)
        r = self.rel * s
        return (c[0] + r[0], c[1] + r[1], c[0] + r[2], c[1] + r[3])

    def update(self, prev: np.ndarray, grey: np.ndarray, noise: float, k_min: float,
               halves: tuple[np.ndarray, np.ndarray] | None = None,
               max_skip: int = 0, levels: int | None = None) -> bool:
        """Advance to the frame ``grey``; return False when the face is lost.

        The predictor (~1-2 ms with a cold cache) is skipped on this frame when
        the flow shows only small, rigid motion, at most ``max_skip`` frames
        in a row (0: every frame is measured); only the flow moves the
        landmarks then.
        ``halves`` are (previous, current) frames at half resolution;
        ``levels`` the landmark predictor's cascade levels.
        """
        h, w = grey.shape
        p = self.pts
        x0, y0 = p.min(0)
        x1, y1 = p.max(0)
        m = 0.5 * max(x1 - x0, y1 - y0) + 8
        bx0, by0 = max(0, int(x0 - m)), max(0, int(y0 - m))
        bx1, by1 = min(w, int(x1 + m) + 1), min(h, int(y1 + m) + 1)
        if bx1 - bx0 < 16 or by1 - by0 < 16:
            return False
        # Flow on the half-resolution frames when the face is large (eyes
        # more than 60 px apart): 4x cheaper, and precise enough since the
        # predictor measurement is fused in afterwards.
        io = interocular(p)
        if io > 60 and halves is not None:
            f = 0.5
            a = halves[0][by0 // 2:by1 // 2, bx0 // 2:bx1 // 2]
            b = halves[1][by0 // 2:by1 // 2, bx0 // 2:bx1 // 2]
            off = np.array([bx0 // 2 * 2, by0 // 2 * 2], np.float32)
        else:
            f = 1.0
            a = prev[by0:by1, bx0:bx1]
            b = grey[by0:by1, bx0:bx1]
            off = np.array([bx0, by0], np.float32)
        a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
        fx = f
        scale = np.array([f, f], np.float32)
        p0 = ((p - off) * scale).reshape(-1, 1, 2)
        p1, st, _ = cv2.calcOpticalFlowPyrLK(a, b, p0, None, **_LK)
        pb, st2, _ = cv2.calcOpticalFlowPyrLK(b, a, p1, None, **_LK)
        fb = np.linalg.norm((pb - p0).reshape(-1, 2), axis=1) / fx
        good = (st.ravel() == 1) & (st2.ravel() == 1) & (fb < max(1.0, 0.05 * io))
        if good.sum() < 20:
            return False
        p1 = p1.reshape(-1, 2) / scale
        flow = (p1 + off).astype(np.float32)
        shift = quantile(flow[good] - p[good], 0.5)
        flow[~good] = p[~good] + shift
        measure = self.skipped >= max_skip
        if not measure:
            # Flow alone suffices while the face moves little and rigidly:
            # the predictor would only be fused in at k_min weight there.
            # Larger or non-rigid motion (an expression, a quick turn) is
            # measured at once, so there is no lag on fast motion.
            move_all = flow - p
            move = move_all[good]
            rigid = float(np.hypot(*shift))
            resid = float(quantile(np.abs(move - shift).max(1), 0.95))
            measure = rigid > self.MOVE * io or resid > self.DEFORM * io
            if not measure:
                # A closing lid takes its texture with it and the flow loses
                # it: eye aspect 0.30 kept against the predictor's 0.19 at talk_720p's
                # blink (frames 6-7) before the lids were watched on their own.
                lids = _EXPRESSIVE_PTS
                measure = not bool(good[lids].all()) or float(
                    np.abs(move_all[lids] - shift).max()) > self.LIDS * io
        if not measure:
            if good.sum() < 40:
                return False
            self.skipped += 1
            self.pts = flow
            c = centre(flow)
            return 0 <= c[0] < w and 0 <= c[1] < h
        measured = predict_landmarks(grey, self.rect(flow), levels)
        # A predictor that drifted off the face disagrees with the flow as a whole.
        disagree = float(quantile(np.linalg.norm(measured - flow, axis=1), 0.5))
        if disagree > 0.35 * io:
            return False
        _, s_new = _frame(measured)
        _, s_old = _frame(p)
        if not 0.7 < s_new / s_old < 1.4:
            return False
        self.skipped = 0
        new = stabilise(p, flow, measured, noise * io, k_min)
        new[~good] = measured[~good]
        self.pts = new
        c = centre(new)
        return 0 <= c[0] < w and 0 <= c[1] < h


class Tracker:
    """Decides, frame by frame, which faces to swap and where their landmarks are."""

    def __init__(self, *, many_faces: bool, detect_every: int, search_every: int,
                 max_side: int, upsample: int, measure_every: int = 1,
                 noise: float = 0.035, k_min: float = 0.15, levels: int | None = None,
                 target: np.ndarray | None = None) -> None:
        """``target``: the descriptor of the one person to follow (see
        ``engine.people``): only a face matching it is ever tracked, checked when a
        track starts (after every cut) and every :data:`TARGET_VERIFY` frames."""
        self.target = None if target is None else np.asarray(target, np.float64)
        self.many_faces = many_faces and self.target is None
        self.levels = levels  # landmark predictor cascade levels (None: all)
        self.measure_every = measure_every
        self.detect_every = detect_every
        self.search_every = search_every
        self.max_side = max_side
        self.upsample = upsample
        self.noise = noise
        self.k_min = k_min
        self.describe: Describer | None = None
        self.tracks: list[FaceTrack] = []
        self.prev: np.ndarray | None = None
        self.prev_half: np.ndarray | None = None
        self.prev_thumb: np.ndarray | None = None
        self.last_detect = -10**9
        self.main_descriptor: np.ndarray | None = None
        self.main_sample: Callable[[], np.ndarray | None] | None = None
        self.detections = 0  # statistics for the benchmark
        self.last_verify = -10**9
        #: (rect, frame index) of faces found not to be the target (not described
        #: again while they stay in place, for TARGET_VERIFY frames).
        self.rejected: list[tuple[Rect, int]] = []
        self.descriptions = 0  # statistics: descriptors computed

    def _is_cut(self, grey: np.ndarray) -> bool:
        h, w = grey.shape
        step = max(1, min(h, w) // 64)
        thumb = cv2.resize(grey[::step, ::step], (32, 18), interpolation=cv2.INTER_AREA)
        thumb = thumb.astype(np.int16)
        cut = False
        if self.prev_thumb is not None:
            cut = float(np.abs(thumb - self.prev_thumb).mean()) > 20.0
        self.prev_thumb = thumb
        return cut

    def step(self, grey: np.ndarray, index: int,
             describe: Describer | None = None,
             chroma: tuple[np.ndarray, np.ndarray] | None = None) -> list[FaceTrack]:
        """Process one frame's luma plane; return the tracks to swap in it.

        ``describe(pts)`` returns a thunk computing the face descriptor of the
        face at landmarks ``pts`` in this frame (the pixels are copied at once,
        the descriptor is computed only when called); used to re-identify.
        ``chroma``: the frame's (U, V) planes; with them every track's
        :attr:`FaceTrack.cover` is worked out (``FaceTrack.observe_look``).
        """
        self.describe = describe
        cut = self._is_cut(grey)
        lost = False
        half = None
        if cut:
            self.tracks = []
            self.rejected = []
        elif self.prev is not None and self.tracks:
            h, w = grey.shape
            half = cv2.resize(grey, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
            halves = (self.prev_half, half) if self.prev_half is not None else None
            kept = [t for t in self.tracks
                    if t.update(self.prev, grey, self.noise, self.k_min, halves,
                                self.measure_every - 1, self.levels)]
            lost = len(kept) < len(self.tracks)
            self.tracks = kept
            for t in kept:
                t.observe_eyes()
        if self.target is not None and self.tracks and describe is not None \
                and index - self.last_verify >= TARGET_VERIFY:
            self.last_verify = index
            track = self.tracks[0]
            if not self._is_target(track.pts):
                self.rejected.append((track.rect(), index))
                self.tracks = []
                lost = True
        since = index - self.last_detect
        if cut or lost or since >= (self.detect_every if self.tracks else self.search_every):
            # Confirming the followed face needs only a local look; new faces
            # (many_faces, or nothing tracked) need the whole frame.
            local = bool(self.tracks) and not (cut or lost or self.many_faces)
            self._detect(grey, index, local)
        if chroma is not None:
            # Every other frame while nothing covers the face (0.3 ms a face on
            # this, the tracking thread, which bounds the frame rate at 480x480);
            # every frame while something does, so the cover follows it.
            for t in self.tracks:
                if t.cover is not None or index % 2 == 0:
                    t.observe_look(grey, *chroma)
        self.prev = np.array(grey, copy=True)
        self.prev_half = half
        return list(self.tracks)

    def _detect(self, grey: np.ndarray, index: int, local: bool = False) -> None:
        self.last_detect = index
        self.detections += 1
        if local:
            dets = []
            for t in self.tracks:
                dets += detect_near(grey, t.rect())
        else:
            dets = detect_faces(grey, self.max_side, self.upsample)
        used: set[int] = set()
        kept = []
        for t in self.tracks:
            r = t.rect()
            best, best_iou = -1, 0.3
            for i, d in enumerate(dets):
                v = iou(r, d)
                if i not in used and v > best_iou:
                    best, best_iou = i, v
            if best >= 0:
                used.add(best)
                t.misses = 0
                t.calibrate(dets[best])
                kept.append(t)
            else:
                t.misses += 1
                if t.misses < 2:
                    kept.append(t)
        self.tracks = kept
        fresh = [d for i, d in enumerate(dets) if i not in used]
        if local:
            return
        if self.many_faces:
            for d in fresh:
                self.tracks.append(FaceTrack(predict_landmarks(grey, d, self.levels), d))
        elif not self.tracks and fresh and self.target is not None:
            self._acquire_target(grey, index, fresh)
        elif not self.tracks and fresh:
            self._acquire_main(grey, fresh)

    def _is_target(self, pts: np.ndarray) -> bool:
        desc = self.describe(pts)()
        self.descriptions += 1
        return desc is not None and \
            float(np.linalg.norm(desc - self.target)) < TARGET_MATCH

    def _acquire_target(self, grey: np.ndarray, index: int, cands: list[Rect]) -> None:
        """Start following the chosen person if one of ``cands`` is them.

        A candidate standing where a face was found not to be them (within
        :data:`TARGET_VERIFY` frames, no cut since) is not described again: in a
        group shot the others would otherwise cost a descriptor every search.
        """
        if self.describe is None:
            return
        self.rejected = [(r, i) for r, i in self.rejected if index - i < TARGET_VERIFY]
        best, best_d = None, TARGET_MATCH
        for d in cands[:6]:
            if any(iou(d, r) > 0.4 for r, _ in self.rejected):
                continue
            pts = predict_landmarks(grey, d, self.levels)
            desc = self.describe(pts)()
            self.descriptions += 1
            if desc is None:
                continue
            dist = float(np.linalg.norm(desc - self.target))
            if dist < best_d:
                best, best_d = (pts, d), dist
            else:
                self.rejected.append((d, index))
        if best is not None:
            self.tracks = [FaceTrack(*best)]
            self.last_verify = index

    def _acquire_main(self, grey: np.ndarray, cands: list[Rect]) -> None:
        """Start following the main person: the largest face at first, then only them."""
        if self.describe is None:
            self.tracks = [FaceTrack(predict_landmarks(grey, cands[0], self.levels), cands[0])]
            return
        if self.main_sample is None:
            pts = predict_landmarks(grey, cands[0], self.levels)
            # Keep a sample of the person; its descriptor (~0.3 s with the
            # model load) is computed only if the track is ever lost.
            self.main_sample = self.describe(pts)
            self.tracks = [FaceTrack(pts, cands[0])]
            return
        if self.main_descriptor is None:
            self.main_descriptor = self.main_sample()
            if self.main_descriptor is None:
                self.main_sample = None
                return
        best, best_d = None, 0.6
        for d in cands[:4]:
            pts = predict_landmarks(grey, d, self.levels)
            desc = self.describe(pts)()
            if desc is None:
                continue
            dist = float(np.linalg.norm(desc - self.main_descriptor))
            if dist < best_d:
                best, best_d = (pts, d), dist
        if best is not None:
            self.tracks = [FaceTrack(*best)]
