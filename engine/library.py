"""The face from several photos or a short video: a library of views, and the choice per frame.

One photo holds one head pose and one expression; a target that turns, laughs
or closes its eyes asks for views the photo does not have. A :class:`FaceLibrary`
is built once per task from up to :data:`MAX_PHOTOS` photos or from a video of at
most :data:`MAX_VIDEO_SECONDS` (frames sampled :data:`SAMPLES_PER_SECOND` times a
second): for every view its landmarks, head pose, eye and mouth opening,
sharpness and identity descriptor. Views that would spoil the swap are left out,
each with its reason (:attr:`View.reason`); views of another person are left
out too, and a set in which another person holds a real share is refused
(``faces_not_same_person``). At most :data:`MAX_VIEWS` diverse views are kept.

Per target frame a :class:`ViewChooser` (one per followed face) picks the view
whose pose and expression are nearest the target's (a nearest-neighbour look-up
over five numbers), keeps it until another one is clearly better and the
current one has been shown a while (hysteresis), and cross-fades over
:data:`FADE_FRAMES` frames when it changes. Each view is a ready
:class:`~engine.source.SourceFace` (mesh, triangles, planes, detail matched on
its first use), so the work per frame is a single photo's; only during a
cross-fade are two views warped (:func:`swap_views`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import cv2
import numpy as np

from .blend import eye_aspect
from .errors import EngineError
from .photo import (
    ADVICE,
    BLURRY,
    CLOSED_EAR,
    SMALL_FACE_PX,
    analyse,
    head_pose,
    mouth_ratio,
    refuse,
)
from .source import SourceFace, prepare_source, read_image

MAX_PHOTOS = 10
MAX_VIDEO_SECONDS = 30.0
#: Frames of a face video looked at per second (a talking face changes its
#: expression a few times a second; more samples cost build time, not looks).
SAMPLES_PER_SECOND = 5.0
#: Views kept at most (memory: about 1 MB each; the choice is a look-up over them).
MAX_VIEWS = 64
#: Descriptor distance (dlib ResNet) from the set's own centre beyond which a view
#: shows another person (dlib's same-person threshold is 0.6).
OTHER_PERSON = 0.6
#: Share of the views with a descriptor that may be another person's before the
#: whole set is refused: a passer-by in a few frames is left out, two people are not.
OTHER_PERSON_SHARE = 0.2
#: A view counts as blurred under this share of the set's median sharpness
#: (motion blur in a video frame), or under photo.BLURRY.
BLUR_SHARE = 0.55
#: A view counts as too small under this share of the set's median face width.
SMALL_SHARE = 0.6
#: Views nearer than this (in :func:`features` units) to a kept one add nothing.
SIMILAR = 0.35
#: Frames over which the swap cross-fades from one view to the next.
FADE_FRAMES = 4
#: Frames a view stays at least once chosen (the fade included).
MIN_DWELL = 6
#: How much nearer (in feature units) another view must be to replace the current one.
SWITCH_COST = 0.75
#: The target's features are smoothed over frames (weight of the new frame),
#: so the predictor's jitter does not move the choice.
SMOOTH = 0.3
#: Feature scales: a difference of one unit is "as bad as" 8 degrees of yaw or
#: pitch, 25 of roll (the warp undoes roll exactly), a fifth of the usual eye
#: opening, a mouth opening of 0.06 of its width, or brows raised by 0.03 eye distances
#: (the warp moves the brows only a quarter of the way to the target's).
SCALES = np.array([8.0, 8.0, 25.0, 0.2, 0.06, 0.03], np.float32)
#: Eye openings compared relative to each face's usual one, or as they are (over
#: EYE_UNIT): what the warp must stretch is the absolute difference (measured on
#: talk_480sq with the selfie clip's views, 150 frames: mar_err 0.035 relative, 0.016
#: absolute; lm_err 0.039 and 0.032).
EYE_RELATIVE = False
EYE_UNIT = 0.3
#: Pose range (degrees of yaw or pitch) under which a set covers only one pose.
ONE_POSE_DEG = 8.0

VIDEO_EXT = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")

#: Why a view was left out (:attr:`View.reason`).
REASONS = {
    "no_face": "no face found",
    "too_small": "the face is too small",
    "turned": "the face is turned too far",
    "blurred": "blurred",
    "eyes_closed": "the eyes are closed (they are open in the other views)",
    "covered": "part of the face is covered",
    "other_person": "another person",
    "similar": "the same pose and expression as a kept view",
}

LIBRARY_ADVICE = {
    "faces_one_pose": "All the views show the head in about the same pose: views turned a "
                      "little left, right, up and down help where the video's face turns.",
    "faces_views_left_out": "Some of the views were left out",
}


@dataclass
class View:
    """One candidate view: where it came from, what it shows, and why it was left out."""

    origin: str  # "photo 2" or "frame at 3.40 s"
    reason: str | None = None  # None: kept (see REASONS)
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    ear: float = 0.0  # mean eye aspect ratio
    mar: float = 0.0  # inner-lip gap over mouth width
    brow: float = 0.0  # brow height above the eyes (:func:`brow_height`)
    sharpness: float = 0.0
    face_px: float = 0.0
    codes: list[str] = field(default_factory=list)  # photo.analyse's findings
    descriptor: np.ndarray | None = None
    #: Views of one stretch of a video where the face was followed from sample to sample
    #: (found near where it was in the sample before) share a segment: one person.
    #: None: a photo, its own segment.
    segment: int | None = None
    # Build-time only (dropped once the library is made):
    image: bytes | np.ndarray | None = None  # the view's image (JPEG bytes for video frames)
    report: object | None = None  # photo.PhotoReport of the face in ``image``

    def as_dict(self) -> dict:
        return {"origin": self.origin, "reason": self.reason, "yaw": round(self.yaw, 1),
                "pitch": round(self.pitch, 1), "roll": round(self.roll, 1),
                "ear": round(self.ear, 3), "mar": round(self.mar, 3),
                "sharpness": round(self.sharpness, 2), "face_px": round(self.face_px, 1)}


@dataclass
class FaceLibrary:
    """The kept views, ready to swap, and what they show (see the module doc)."""

    faces: list[SourceFace]
    feats: np.ndarray  # (K, 5): yaw, pitch, roll, relative eye opening, mouth opening
    views: list[View]  # every candidate, kept (reason None) or not, in source order
    kept: list[int]  # index in ``views`` of each face
    warnings: list[dict] = field(default_factory=list)
    eye_open: float = 0.3  # the set's usual eye aspect ratio (median of the kept views)
    matrix: str | None = None

    def to_yuv(self, matrix: str) -> None:
        """Record the video's matrix; each view is converted on its first use (:meth:`face`)."""
        self.matrix = matrix

    def face(self, i: int) -> SourceFace:
        """The ready source face of kept view ``i`` (converted once, on first use)."""
        src = self.faces[i]
        if src.y is None:
            src.to_yuv(self.matrix or "bt601")
        return src

    @property
    def left_out(self) -> dict[str, str]:
        """``{origin: reason}`` of the views that were left out."""
        return {v.origin: v.reason for v in self.views if v.reason is not None}


def is_video(path: str) -> bool:
    """A face given as a video file (by its name; the service checks the upload's kind)."""
    return path.lower().endswith(VIDEO_EXT)


def load_face(image: str | list[str] | tuple[str, ...], face_video: str | None = None,
              levels: int | None = None, face_box: list[int] | None = None
              ) -> SourceFace | FaceLibrary:
    """The task's face: a :class:`SourceFace` for one photo, else a :class:`FaceLibrary`.

    ``image``: a photo path or a list of them; ``face_video``: a video of the person
    instead (also accepted as a single ``image`` path with a video suffix);
    ``face_box``: the person of a single group photo to use (``engine.people``).
    """
    from .source import load_source

    paths = [image] if isinstance(image, str) else list(image)
    if face_video is None and len(paths) == 1 and paths[0] and is_video(paths[0]):
        face_video, paths = paths[0], []
    if face_video is not None:
        if paths and any(paths):
            raise refuse("bad_face", "give either photos or a face video, not both")
        return build_library(video_candidates(face_video, levels))
    if not paths:
        raise refuse("bad_face", "no face photo given")
    if len(paths) > MAX_PHOTOS:
        raise refuse("too_many_photos", f"at most {MAX_PHOTOS} photos of the face")
    if len(paths) == 1:
        return load_source(paths[0], levels=levels, face_box=face_box)
    if face_box is not None:
        raise refuse("bad_face", "a face box chooses a person of one photo")
    return build_library(photo_candidates(paths, levels))


# -- candidates ---------------------------------------------------------------------------
def _measure(view: View, image: np.ndarray, report, size: tuple[int, int],
             offset: tuple[float, float] = (0.0, 0.0)) -> None:
    """Fill the view's figures from ``photo.analyse``'s report on ``image``.

    The pose is measured in the frame the view was cut from (``size``, the
    crop's ``offset`` in it), as the target's is: the perspective then matches.
    """
    pts = report.pts
    view.yaw, view.pitch, view.roll = head_pose(pts + np.array(offset, np.float32), size)
    view.ear = 0.5 * (eye_aspect(pts[36:42]) + eye_aspect(pts[42:48]))
    view.mar = mouth_ratio(pts)
    view.brow = brow_height(pts)
    view.sharpness = report.sharpness
    view.face_px = report.face_px
    view.codes = report.codes
    view.report = report
    view.image = image


def photo_candidates(paths: list[str], levels: int | None = None) -> list[View]:
    """One view per photo (the largest face of each); refusals become left-out views."""
    out = []
    for k, path in enumerate(paths):
        view = View(origin=f"photo {k + 1}")
        image = read_image(path)
        try:
            report = analyse(image, levels=levels)
        except EngineError as exc:
            view.reason = _reason(exc)
        else:
            h, w = image.shape[:2]
            _measure(view, image, report, (w, h))
        out.append(view)
    return out


def _reason(exc: EngineError) -> str:
    code = getattr(exc, "code", "")
    return {"no_face_in_photo": "no_face", "photo_face_too_small": "too_small",
            "photo_face_too_turned": "turned"}.get(code, "no_face")


def video_candidates(path: str, levels: int | None = None,
                     per_second: float = SAMPLES_PER_SECOND,
                     max_seconds: float = MAX_VIDEO_SECONDS) -> list[View]:
    """Views of the largest face in frames sampled ``per_second`` from the video at ``path``.

    The face found in one sample is looked for near the same place in the next
    (a crop around it: a few ms instead of a whole-frame detection). Each view
    keeps a JPEG of a crop around its face, so a 30 s video holds a few MB.
    """
    from .decode import VideoReader
    from .detect import detect_faces, detect_near

    if not os.path.isfile(path):
        raise refuse("bad_face", "the face video does not exist")
    reader = VideoReader(path)
    try:
        rate = float(reader.rate) or 25.0
        if reader.total / rate > max_seconds + 0.5:
            raise refuse("face_video_too_long",
                         f"the face video is longer than {max_seconds:.0f} s")
        step = max(1, int(round(rate / per_second)))
        out: list[View] = []
        prev = None
        segment = 0
        for i, (frame, _pts) in enumerate(reader.frames()):
            if i / rate > max_seconds + 0.5:
                raise refuse("face_video_too_long",
                             f"the face video is longer than {max_seconds:.0f} s")
            if i % step:
                continue
            view = View(origin=f"frame at {i / rate:.2f} s")
            out.append(view)
            bgr = frame.to_ndarray(format="bgr24")
            grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
            rects = detect_near(grey, prev) if prev is not None else []
            if not rects:  # the face was lost: whoever is found now starts a new segment
                segment += 1
                rects = detect_faces(grey, max_side=640, upsample=1 if max(grey.shape) < 700
                                     else 0)
            view.segment = segment
            if not rects:
                view.reason, prev = "no_face", None
                continue
            prev = rect = rects[0]
            h, w = grey.shape
            size = max(rect[2] - rect[0], rect[3] - rect[1])
            x0, y0 = max(0, int(rect[0] - 0.8 * size)), max(0, int(rect[1] - 0.9 * size))
            x1, y1 = min(w, int(rect[2] + 0.8 * size)), min(h, int(rect[3] + 0.7 * size))
            crop = np.ascontiguousarray(bgr[y0:y1, x0:x1])
            local = (rect[0] - x0, rect[1] - y0, rect[2] - x0, rect[3] - y0)
            try:
                report = analyse(crop, faces=[local], levels=levels)
            except EngineError as exc:
                view.reason = _reason(exc)
                continue
            ok, jpeg = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
            _measure(view, jpeg.tobytes() if ok else crop, report, (w, h), (x0, y0))
    finally:
        reader.close()
    if not out:
        raise refuse("no_face_in_photo", "the face video has no frames")
    return out


def _image(view: View) -> np.ndarray:
    if isinstance(view.image, bytes):
        return cv2.imdecode(np.frombuffer(view.image, np.uint8), cv2.IMREAD_COLOR)
    return view.image


def descriptor(image: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """dlib's 128-d face descriptor of the face at landmarks ``pts`` in ``image`` (BGR)."""
    import dlib

    from . import models

    rgb = np.ascontiguousarray(image[..., ::-1])
    rect = dlib.rectangle(int(pts[:, 0].min()), int(pts[:, 1].min()),
                          int(pts[:, 0].max()), int(pts[:, 1].max()))
    shape = dlib.full_object_detection(rect, [dlib.point(int(x), int(y)) for x, y in pts])
    return np.array(models.face_encoder().compute_face_descriptor(rgb, shape), np.float32)


# -- the library --------------------------------------------------------------------------
def brow_height(pts: np.ndarray) -> float:
    """Mean height of the brows above the line through the eye centres, in eye distances."""
    left, right = pts[36:42].mean(0), pts[42:48].mean(0)
    axis = right - left
    io = float(np.hypot(*axis)) + 1e-6
    up = np.array([axis[1], -axis[0]]) / io
    return float(((pts[17:27] - (left + right) / 2) @ up).mean() / io)


def features(yaw: float, pitch: float, roll: float, ear_rel: float, mar: float,
             brow: float) -> np.ndarray:
    """A view's or a target frame's pose and expression, scaled (see :data:`SCALES`)."""
    return np.array([yaw, pitch, roll, ear_rel, mar, brow], np.float32) / SCALES


def build_library(views: list[View], max_views: int = MAX_VIEWS) -> FaceLibrary:
    """Judge the candidate views, keep at most ``max_views`` diverse ones, prepare them.

    Raises EngineError with ``code``: ``faces_not_same_person`` when another person
    holds more than :data:`OTHER_PERSON_SHARE` of the views, ``faces_none_usable``
    when no view is left.
    """
    cands = [v for v in views if v.reason is None]
    if cands:
        sharp = float(np.median([v.sharpness for v in cands]))
        width = float(np.median([v.face_px for v in cands]))
        ears = np.array([v.ear for v in cands])
        eyes_open = float(np.median(ears)) >= CLOSED_EAR
        for v in cands:
            if v.face_px < SMALL_SHARE * width or (v.face_px < SMALL_FACE_PX <= width):
                v.reason = "too_small"
            elif v.sharpness < BLURRY <= sharp or v.sharpness < BLUR_SHARE * sharp:
                v.reason = "blurred"
            elif eyes_open and v.ear < CLOSED_EAR:
                v.reason = "eyes_closed"
            elif "photo_face_covered" in v.codes:
                v.reason = "covered"
    cands = [v for v in views if v.reason is None]
    if not cands:
        raise refuse("faces_none_usable", "no usable face in the views given: " + _why(views))
    _describe(cands)
    _same_person(cands)
    cands = [v for v in cands if v.reason is None]
    kept = _diverse(cands, max_views)
    for v in cands:
        if v not in kept:
            v.reason = "similar"
    kept.sort(key=views.index)
    eye_open = float(np.median([v.ear for v in kept]))
    faces = []
    for v in kept:
        faces.append(prepare_source(_image(v), v.report))
    eye_unit = eye_open if EYE_RELATIVE else EYE_UNIT
    feats = np.stack([features(v.yaw, v.pitch, v.roll, v.ear / max(eye_unit, 1e-3), v.mar,
                               v.brow) for v in kept])
    lib = FaceLibrary(faces=faces, feats=feats, views=views, kept=[views.index(v) for v in kept],
                      warnings=_warnings(views, kept), eye_open=eye_open)
    for v in views:  # build-time data, not needed (nor pickled) any longer
        v.image = v.report = None
    return lib


def _describe(views: list[View], per_segment: int = 3) -> None:
    """Set every view's identity descriptor: a photo's its own; a video segment's the
    median of ``per_segment`` of its views spread over it (a ResNet pass costs 30-80 ms:
    one per view of a 30 s video would cost seconds)."""
    segments: dict[int, list[View]] = {}
    for v in views:
        if v.segment is None:
            v.descriptor = descriptor(_image(v), v.report.pts)
        else:
            segments.setdefault(v.segment, []).append(v)
    for members in segments.values():
        picks = np.unique(np.linspace(0, len(members) - 1, min(per_segment, len(members)))
                          .round().astype(int))
        found = np.stack([descriptor(_image(members[i]), members[i].report.pts)
                          for i in picks])
        for v in members:
            v.descriptor = np.median(found, axis=0)


def _why(views: list[View]) -> str:
    counts: dict[str, int] = {}
    for v in views:
        counts[v.reason or "?"] = counts.get(v.reason or "?", 0) + 1
    return ", ".join(f"{n} {REASONS.get(r, r)}" for r, n in counts.items())


def _diverse(views: list[View], n: int) -> list[View]:
    """Up to ``n`` views spread over pose and expression (farthest-point sampling).

    Starts from the sharpest near-frontal, neutral view; each next pick is the
    view farthest from those picked; views nearer than :data:`SIMILAR` to a
    picked one are never picked (they would only be duplicates).
    """
    if not views:
        return []
    ear0 = float(np.median([v.ear for v in views])) or 0.3
    f = np.stack([features(v.yaw, v.pitch, v.roll, v.ear / ear0, v.mar, v.brow) for v in views])
    sharp = np.array([v.sharpness for v in views], np.float32)
    start = int(np.argmin(np.linalg.norm(f[:, :5] - [0, 0, 0, 1 / SCALES[3], 0], axis=1)
                          - 0.02 * sharp / (sharp.max() + 1e-6)))
    picked = [start]
    dist = np.linalg.norm(f - f[start], axis=1)
    while len(picked) < n:
        i = int(np.argmax(dist))
        if dist[i] < SIMILAR:
            break
        picked.append(i)
        dist = np.minimum(dist, np.linalg.norm(f - f[i], axis=1))
    return [views[i] for i in picked]


def _same_person(views: list[View]) -> None:
    """Mark views of another person; refuse a set that shows two people.

    The set's centre is the median descriptor of the views near the view with the
    most neighbours (a robust medoid: a few frames of someone else do not move it).
    """
    d = np.stack([v.descriptor for v in views])
    pair = np.linalg.norm(d[:, None] - d[None], axis=2)
    near = pair < OTHER_PERSON
    medoid = int(np.argmax(near.sum(1) - 1e-3 * pair.sum(1)))
    centre = np.median(d[near[medoid]], axis=0)
    far = np.linalg.norm(d - centre, axis=1) > OTHER_PERSON
    if far.sum() > 0 and (far.sum() >= OTHER_PERSON_SHARE * len(views) or len(views) == 2):
        who = ", ".join(v.origin for v, f in zip(views, far, strict=True) if f)
        raise refuse("faces_not_same_person", f"the views show different people "
                     f"({who} differ from the rest): use photos or a video of one person")
    for v, f in zip(views, far, strict=True):
        if f:
            v.reason = "other_person"


def _warnings(views: list[View], kept: list[View]) -> list[dict]:
    """The set's warnings: a photo finding every kept view shares, one pose only, left-outs."""
    out = []
    for code in ("photo_face_turned", "photo_face_small", "photo_face_blurry",
                 "photo_eyes_closed", "photo_face_covered"):
        if all(code in v.codes for v in kept):
            out.append({"code": code, "msg": ADVICE[code]})
    yaws, pitches = [v.yaw for v in kept], [v.pitch for v in kept]
    if max(yaws) - min(yaws) < ONE_POSE_DEG and max(pitches) - min(pitches) < ONE_POSE_DEG:
        out.append({"code": "faces_one_pose", "msg": LIBRARY_ADVICE["faces_one_pose"]})
    photos = [v for v in views if v.origin.startswith("photo")]
    dropped = [v for v in views if v.reason not in (None, "similar")]
    if dropped and (photos or len(dropped) > len(views) / 2):
        out.append({"code": "faces_views_left_out",
                    "msg": f"{LIBRARY_ADVICE['faces_views_left_out']} ({len(dropped)} of "
                           f"{len(views)}): " + "; ".join(f"{v.origin}: {REASONS[v.reason]}"
                                                         for v in dropped[:10])})
    return out


# -- the choice per frame -----------------------------------------------------------------
def target_features(pts: np.ndarray, size: tuple[int, int],
                    eye_ref: tuple[float, float] | None) -> np.ndarray:
    """The scaled features of a target face (landmarks ``pts`` in a frame of ``size``).

    With :data:`EYE_RELATIVE` the eye opening is taken relative to the face's own
    usual one (``eye_ref``), the views' relative to the set's.
    """
    yaw, pitch, roll = head_pose(pts, size)
    ear = 0.5 * (eye_aspect(pts[36:42]) + eye_aspect(pts[42:48]))
    ref = 0.5 * (eye_ref[0] + eye_ref[1]) if eye_ref and EYE_RELATIVE else EYE_UNIT
    return features(yaw, pitch, roll, ear / max(ref, 1e-3), mouth_ratio(pts), brow_height(pts))


#: A frame's choice: ((view index, weight), ...), weights summing to 1.
Choice = tuple[tuple[int, float], ...]


class ViewChooser:
    """The view per frame for one followed face: nearest, with hysteresis and cross-fades."""

    def __init__(self, feats: np.ndarray, *, switch_cost: float | None = None,
                 dwell: int | None = None, fade: int | None = None,
                 smooth: float | None = None) -> None:
        """``feats``: the views' :func:`features`; the rest default to the module's settings."""
        self.feats = feats
        self.switch_cost = SWITCH_COST if switch_cost is None else switch_cost
        self.fade = max(1, FADE_FRAMES if fade is None else fade)
        self.dwell = max(MIN_DWELL if dwell is None else dwell, self.fade)
        self.smooth = SMOOTH if smooth is None else smooth
        self.state: np.ndarray | None = None  # the smoothed target features
        self.current: int | None = None
        self.previous: int | None = None  # the view being faded out
        self.since = 0  # frames since the last change
        self.switches = 0

    def choose(self, f: np.ndarray) -> Choice:
        """The views (and weights) for the next frame of target features ``f``."""
        self.state = f.copy() if self.state is None else (
            self.smooth * f + (1.0 - self.smooth) * self.state)
        d = np.linalg.norm(self.feats - self.state, axis=1)
        best = int(np.argmin(d))
        self.since += 1
        if self.current is None:
            self.current, self.since = best, self.fade
        elif (best != self.current and self.since >= self.dwell
              and d[best] < d[self.current] - self.switch_cost):
            self.previous, self.current, self.since = self.current, best, 0
            self.switches += 1
        if self.previous is not None and self.since < self.fade:
            w = (self.since + 1) / (self.fade + 1)
            return ((self.current, w), (self.previous, 1.0 - w))
        self.previous = None
        return ((self.current, 1.0),)


def swap_views(y: np.ndarray, u: np.ndarray, v: np.ndarray, target: np.ndarray,
               lib: FaceLibrary, choice: Choice, *, morph: float, keep_mouth: bool,
               eye_ref: tuple[float, float] | None = None,
               cover: tuple[np.ndarray, np.ndarray] | None = None,
               liquify: int = cv2.INTER_LINEAR) -> None:
    """``swap.swap_face`` with the library's chosen view, or a cross-fade of two views.

    A fade swaps each view into its own copy of the planes (each matched in
    light and detail to the same target) and mixes the results, so the fade
    is between two finished faces, not between two half-matched ones.
    """
    from .swap import swap_face

    (i, wi), *rest = choice
    if not rest:
        swap_face(y, u, v, target, lib.face(i), morph=morph, keep_mouth=keep_mouth,
                  eye_ref=eye_ref, cover=cover, liquify=liquify)
        return
    j, _ = rest[0]
    ya, ua, va = y.copy(), u.copy(), v.copy()
    swap_face(ya, ua, va, target, lib.face(i), morph=morph, keep_mouth=keep_mouth,
              eye_ref=eye_ref, cover=cover, liquify=liquify)
    swap_face(y, u, v, target, lib.face(j), morph=morph, keep_mouth=keep_mouth,
              eye_ref=eye_ref, cover=cover, liquify=liquify)
    for out, new in ((y, ya), (u, ua), (v, va)):
        out[...] = cv2.addWeighted(new, wi, out, 1.0 - wi, 0.0)


class Choosers:
    """One :class:`ViewChooser` per followed face (keyed by the track object)."""

    def __init__(self, lib: FaceLibrary) -> None:
        import weakref

        self.lib = lib
        self._by_track: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.switches = 0
        self.frame = -1
        #: (frame index, view index) of every change of view (benchmark contact sheets).
        self.changes: list[tuple[int, int]] = []

    def choose(self, tracks: list, size: tuple[int, int]) -> list[Choice]:
        """The choice for each of this frame's tracks (called once per frame, in order)."""
        self.frame += 1
        out = []
        for tr in tracks:
            ch = self._by_track.get(tr)
            if ch is None:
                ch = self._by_track[tr] = ViewChooser(self.lib.feats)
            before = ch.switches
            out.append(ch.choose(target_features(tr.pts, size, tr.eye_ref)))
            if ch.switches != before:
                self.switches += 1
                self.changes.append((self.frame, ch.current))
        return out
