"""The face photo checked before a swap: what will disappoint, and what cannot work.

From the detections and the 68 landmarks alone (plus a look at the pixels of the
face): head pose (yaw, pitch, roll by ``cv2.solvePnP`` against a generic 3-D face),
eyes closed, mouth open or teeth shown, face size, blur, several people, brows or
eyes covered. Each finding is a :class:`Warning` with a stable code of the API
(``photo_face_turned`` ...) and a sentence of advice; hopeless photos (no face, a
face too small or turned too far to give a face) raise :class:`EngineError` with
``code`` set. Plain functions: :func:`analyse` takes a decoded image.

Thresholds were set on the shared photos (frontal: no warning) and on variants
made from them in the tests (turned, blurred, shrunk, covered, grouped).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .blend import eye_aspect
from .colorspace import bgr_to_lab8
from .errors import EngineError
from .landmarks import interocular, predict_landmarks

#: Face width (jaw to jaw, pixels) under which the photo is refused, and under
#: which it is warned about (the swapped face would be upscaled and soft).
MIN_FACE_PX = 40
SMALL_FACE_PX = 110
#: Head yaw, pitch, roll (degrees) from which the photo is warned about, and the
#: yaw from which it is refused (the shared media: frontal photos 2-5 degrees,
#: talk_720p 33, the stage clip's profiles 42-49).
TURNED_DEG = 25.0
PITCH_DEG = 25.0
ROLL_DEG = 30.0
REFUSE_YAW_DEG = 55.0
#: Eye aspect ratio under which the eyes count as closed (open eyes measured
#: 0.23-0.43 on the shared media, talk_720p's blink 0.17).
CLOSED_EAR = 0.19
#: Inner-lip gap over mouth width above which the mouth counts as open.
OPEN_MOUTH = 0.12
#: Detail of the face resized to 128 px wide (Laplacian standard deviation)
#: under which it counts as blurry: sharp portraits measured 9-20, a 2.5 px blur 3-4.
BLURRY = 5.0
#: A second face at least this fraction of the largest face's width counts.
SECOND_FACE = 0.35

ADVICE = {
    "photo_face_turned": "The face is turned away from the camera: a frontal photo, looking "
                         "straight into the lens, gives a cleaner swap.",
    "photo_face_small": "The face is small in this photo: the swapped face will look soft. "
                        "Use a photo where the face is larger (at least 200 pixels wide).",
    "photo_face_blurry": "The face in this photo is blurred: use a sharp, well-focused photo.",
    "photo_eyes_closed": "The eyes are closed in this photo: use one with the eyes open.",
    "photo_mouth_open": "The mouth is open or shows teeth: a photo with a closed mouth and a "
                        "neutral expression follows the video's expressions best.",
    "photo_several_faces": "This photo shows several people: the largest face is used. "
                           "Crop the photo to the person you want.",
    "photo_face_covered": "Part of the face (an eye or a brow) is covered, e.g. by hair: "
                          "use a photo where the whole face is visible.",
}

# A generic 3-D face (arbitrary units, x right, y up, z toward the camera):
# nose tip, chin, eye outer corners, mouth corners.
_MODEL = np.array([(0.0, 0.0, 0.0), (0.0, -330.0, -65.0), (-225.0, 170.0, -135.0),
                   (225.0, 170.0, -135.0), (-150.0, -150.0, -125.0), (150.0, -150.0, -125.0)],
                  np.float64)
_MODEL_IDX = [30, 8, 36, 45, 48, 54]


@dataclass
class Finding:
    code: str
    msg: str

    def as_dict(self) -> dict:
        return {"code": self.code, "msg": self.msg}


@dataclass
class PhotoReport:
    """What :func:`analyse` found on the largest face (``rect``, ``pts``)."""

    faces: int
    rect: tuple
    pts: np.ndarray
    yaw: float
    pitch: float
    roll: float
    face_px: float
    sharpness: float
    eye_ratio: float
    mouth_ratio: float
    warnings: list[Finding] = field(default_factory=list)

    @property
    def codes(self) -> list[str]:
        return [w.code for w in self.warnings]


def refuse(code: str, msg: str) -> EngineError:
    err = EngineError(msg)
    err.code = code  # type: ignore[attr-defined]
    return err


def head_pose(pts: np.ndarray, size: tuple[int, int]) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a face's landmarks in an image of ``size`` (w, h).

    0, 0, 0 is a face looking into the lens; yaw and roll change sign in a
    mirrored photo. Pitch comes from ``cv2.solvePnP`` against a generic 3-D
    face; yaw from where the nose tip sits between the jaw's ends (the PnP
    yaw of six points swung by 30-45 degrees between a frame and its mirror
    image, this one by a few); roll is the angle of the line between the eyes.
    """
    w, h = size
    f = float(max(w, h))
    cam = np.array([[f, 0, w / 2.0], [0, f, h / 2.0], [0, 0, 1]], np.float64)
    # The model's y points up, the image's down: flip the image's y.
    img = pts[_MODEL_IDX].astype(np.float64) * [1.0, -1.0] + [0.0, h]
    ok, rvec, _ = cv2.solvePnP(_MODEL, img, cam, None, flags=cv2.SOLVEPNP_ITERATIVE)
    pitch = _fold(float(cv2.RQDecomp3x3(cv2.Rodrigues(rvec)[0])[0][0])) if ok else 0.0
    axis = pts[16] - pts[0]
    half = float(np.hypot(*axis)) / 2.0 + 1e-6
    offset = float((pts[30] - (pts[0] + pts[16]) / 2.0) @ axis) / (2.0 * half)
    # The nose tip stands about 0.7 half-widths in front of the jaw's ends.
    yaw = float(np.degrees(np.arctan2(offset / half, NOSE_DEPTH)))
    eyes = pts[42:48].mean(0) - pts[36:42].mean(0)
    roll = float(np.degrees(np.arctan2(eyes[1], eyes[0])))
    return yaw, pitch, roll


#: Depth of the nose tip in front of the jaw ends, in half jaw widths.
NOSE_DEPTH = 0.7


def _fold(a: float) -> float:
    """An angle in (-90, 90]: the pose solver's axes may come out flipped by 180."""
    while a > 90:
        a -= 180
    while a <= -90:
        a += 180
    return a


def mouth_ratio(pts: np.ndarray) -> float:
    """Inner-lip gap over mouth width (0: closed; a wide smile with teeth ~0.2)."""
    gap = np.linalg.norm(pts[[61, 62, 63]] - pts[[67, 66, 65]], axis=1).mean()
    return float(gap / (np.linalg.norm(pts[54] - pts[48]) + 1e-6))


def face_sharpness(grey: np.ndarray, pts: np.ndarray) -> float:
    """Laplacian standard deviation inside the face, resized to 128 px wide (scale-free)."""
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    x0, y0 = max(0, int(x0)), max(0, int(y0))
    x1, y1 = min(grey.shape[1], int(x1) + 1), min(grey.shape[0], int(y1) + 1)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return 0.0
    s = 128.0 / (x1 - x0)
    crop = cv2.resize(grey[y0:y1, x0:x1], (128, max(8, int((y1 - y0) * s))),
                      interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    p = (pts - [x0, y0]) * s
    m = np.zeros(crop.shape, np.uint8)
    cv2.fillConvexPoly(m, cv2.convexHull(np.round(p[:27]).astype(np.int32)), 1)
    m = cv2.erode(m, np.ones((5, 5), np.uint8)).astype(bool)
    lap = cv2.Laplacian(crop.astype(np.float32), cv2.CV_32F)
    return float(lap[m].std()) if m.any() else 0.0


def covered_side(bgr: np.ndarray, pts: np.ndarray) -> bool:
    """True when one eye-and-brow region looks unlike the other: hair or a hand over it.

    A covered eye region loses the eye's structure (its dark pupil against the
    sclera, the brow against the skin) and changes colour; the two sides of a
    face are alike. Compared per side: the luma contrast of the eye-and-brow
    region and the Lab distance of its median to the mid-face skin.
    """
    io = interocular(pts)
    grow = max(3, int(0.1 * io))
    # Worked out in the box around the landmarks (and the regions' dilation):
    # the same pixels, without converting the whole photo (with _teeth's box,
    # 26 -> 4 ms a task on a 1145x1145 photo, more on its first OpenCV calls).
    (x0, y0, x1, y1), off = _around(bgr.shape, pts, grow + 2)
    # bgr_to_lab8, not cv2.cvtColor: OpenCV's 8-bit Lab sets up its tables on
    # its first call in a process (0.13 s CPU, on the path to the first frame).
    lab = bgr_to_lab8(bgr[y0:y1, x0:x1])
    ring = pts[[2, 3, 13, 14, 30]]
    m = np.zeros(lab.shape[:2], np.uint8)
    cv2.fillConvexPoly(m, cv2.convexHull(np.round(ring).astype(np.int32)) - off, 1)
    skin = lab[m.astype(bool)]
    if len(skin) < 30:
        return False
    ref = np.median(skin, 0)
    stats = []
    for brow, eye in ((slice(17, 22), slice(36, 42)), (slice(22, 27), slice(42, 48))):
        region = np.concatenate([pts[brow], pts[eye]])
        r = np.zeros(lab.shape[:2], np.uint8)
        hull = cv2.convexHull(np.round(region).astype(np.int32))
        cv2.fillConvexPoly(r, hull - off, 1)
        r = cv2.dilate(r, np.ones((grow,) * 2, np.uint8)).astype(bool)
        px = lab[r]
        if len(px) < 20:
            return False
        stats.append((float(np.linalg.norm(np.median(px, 0) - ref)), float(px[:, 0].std())))
    (d0, c0), (d1, c1) = stats
    # The flatter side must also differ in colour (not a side in shadow).
    return min(c0, c1) < 0.55 * max(c0, c1) and abs(d0 - d1) > 12.0


def analyse(bgr: np.ndarray, faces: list | None = None,
            levels: int | None = None) -> PhotoReport:
    """Check the largest face of a photo; raise EngineError (with ``code``) if hopeless.

    ``faces``: the detections, largest first (``source.find_faces``), when
    the caller already has them; ``levels``: the landmark predictor's
    cascade levels (the task's, so that one model is loaded).
    """
    from .source import find_faces

    faces = find_faces(bgr) if faces is None else faces
    if not faces:
        raise refuse("no_face_in_photo", "no face found in the image")
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    rect = faces[0]
    pts = predict_landmarks(grey, rect, levels)
    h, w = grey.shape
    face_px = float(np.linalg.norm(pts[16] - pts[0]))
    if face_px < MIN_FACE_PX:
        raise refuse("photo_face_too_small", f"the face in the image is too small "
                     f"({face_px:.0f} pixels wide, at least {MIN_FACE_PX} needed)")
    yaw, pitch, roll = head_pose(pts, (w, h))
    if abs(yaw) > REFUSE_YAW_DEG:
        raise refuse("photo_face_too_turned", "the face in the image is turned too far "
                     "from the camera (a side view); use a frontal photo")
    ear = 0.5 * (eye_aspect(pts[36:42]) + eye_aspect(pts[42:48]))
    report = PhotoReport(faces=len(faces), rect=rect, pts=pts, yaw=yaw, pitch=pitch, roll=roll,
                         face_px=face_px, sharpness=face_sharpness(grey, pts), eye_ratio=ear,
                         mouth_ratio=mouth_ratio(pts))
    found = []
    if abs(yaw) > TURNED_DEG or abs(pitch) > PITCH_DEG or abs(roll) > ROLL_DEG:
        found.append("photo_face_turned")
    if face_px < SMALL_FACE_PX:
        found.append("photo_face_small")
    if report.sharpness < BLURRY:
        found.append("photo_face_blurry")
    if ear < CLOSED_EAR:
        found.append("photo_eyes_closed")
    if report.mouth_ratio > OPEN_MOUTH or _teeth(bgr, pts):
        found.append("photo_mouth_open")
    big = rect[2] - rect[0]
    if any((r[2] - r[0]) >= SECOND_FACE * big for r in faces[1:]):
        found.append("photo_several_faces")
    if covered_side(bgr, pts):
        found.append("photo_face_covered")
    report.warnings = [Finding(c, ADVICE[c]) for c in found]
    return report


def _around(shape: tuple[int, ...], pts: np.ndarray, margin: int
            ) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """The box (x0, y0, x1, y1) around the rounded landmarks ``pts`` grown by ``margin``
    and clipped to an image of ``shape``, and its corner as an int32 offset."""
    q = np.round(pts).astype(np.int32)
    x0, y0 = np.maximum(q.min(0) - margin, 0)
    x1, y1 = np.minimum(q.max(0) + margin + 1, [shape[1], shape[0]])
    x0, y0, x1, y1 = int(x0), int(y0), max(int(x0), int(x1)), max(int(y0), int(y1))
    return (x0, y0, x1, y1), np.array([x0, y0], np.int32)


def _teeth(bgr: np.ndarray, pts: np.ndarray) -> bool:
    """Teeth shown: many bright, unsaturated pixels between the inner lips."""
    # In the box around the lips: the same pixels as the whole photo's.
    (x0, y0, x1, y1), off = _around(bgr.shape, pts[48:68], 2)
    sub = bgr[y0:y1, x0:x1]
    m = np.zeros(sub.shape[:2], np.uint8)
    cv2.fillPoly(m, [np.round(pts[60:68]).astype(np.int32) - off], 1)
    sel = m.astype(bool)
    if sel.sum() < 20:
        return False
    full = cv2.cvtColor(sub, cv2.COLOR_BGR2HSV)
    hsv, lip = full[sel], full[_lip_mask(sub.shape[:2], pts, off)]
    if len(lip) < 20:
        return False
    bright = (hsv[:, 2] > np.median(lip[:, 2]) * 1.15) & (hsv[:, 1] < np.median(lip[:, 1]) * 0.7)
    return float(bright.mean()) > 0.25


def _lip_mask(shape: tuple[int, int], pts: np.ndarray,
              off: np.ndarray | None = None) -> np.ndarray:
    """The lips (outer less inner polygon) in an image of ``shape`` whose corner is
    at ``off`` (int32 x, y) in the landmarks' coordinates (None: at the origin)."""
    o = np.zeros(2, np.int32) if off is None else off
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.round(pts[48:60]).astype(np.int32) - o], 1)
    cv2.fillPoly(m, [np.round(pts[60:68]).astype(np.int32) - o], 0)
    return m.astype(bool)
