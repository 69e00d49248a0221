"""Source-face preparation: everything that depends only on the photo, done once a task.

Finds the largest face, its landmarks, crops a generous region around it at a
bounded resolution, converts it to the video's YUV space, and triangulates the
mesh. Per frame the pipeline then only warps these ready planes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import cv2
import numpy as np

from . import models
from .blend import eye_aspect
from .color import colourless
from .colorspace import bgr_to_lab8, bgr_to_yuv
from .detect import detect_faces
from .errors import EngineError
from .landmarks import INNER_MOUTH, JAW, interocular
from .warp import geometry, mesh_points, triangulate

#: Head yaw (degrees) from which the hidden half of the photo's face is taken
#: from its better-seen half, mirrored (see :func:`mirror_hidden_half`).
MIRROR_YAW_DEG = 20.0

#: A photo whose warped face has more Laplacian energy than this times the
#: target's (first swapped frame) is softened once (see :func:`match_sharpness`).
#: Since the face takes the frame's finest band (``blend.frame_grain``), the
#: photo's own finest texture no longer reaches the output, and softening it to
#: 0.8x (the earlier aim) left a waxy face on a sharp head: at 1.6 sharp_ratio
#: rose from 0.57 to 0.72 on talk_720p + face_woman and from 0.68 to 0.78 on
#: talk_480sq + face_woman; added flicker on the 480 clip from 0.31 to 0.73
#: (limit 1.0). Not softening at all: 0.82 there.
SOFTEN_ABOVE = 1.6

#: The face is stored at most this wide (jaw to jaw, pixels): enough for 1080p targets.
MAX_FACE_PX = 360


def read_image(path: str) -> np.ndarray:
    """Decode an image file to BGR uint8 (EXIF orientation applied) or raise EngineError."""
    if not os.path.isfile(path):
        raise EngineError("the image file does not exist")
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None or image.size == 0:
        raise EngineError("the file is not a readable image")
    return image


def find_faces(bgr: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Faces in a still image, largest first; HOG first, then the CNN detector as fallback."""
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    h, w = grey.shape
    upsample = 1 if max(h, w) < 700 else 0
    faces = detect_faces(grey, max_side=1024, upsample=upsample)
    if faces:
        return faces
    scale = max(1.0, max(h, w) / 640.0)
    small = cv2.resize(bgr, (int(w / scale), int(h / scale)), interpolation=cv2.INTER_AREA)
    rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
    dets = models.cnn_face_detector()(rgb, 1 if max(small.shape) < 500 else 0)
    out = [(d.rect.left() * scale, d.rect.top() * scale, (d.rect.right() + 1) * scale,
            (d.rect.bottom() + 1) * scale) for d in dets]
    out.sort(key=lambda r: (r[2] - r[0]) * (r[3] - r[1]), reverse=True)
    return out


@dataclass
class SourceFace:
    """The source face ready for warping (see :func:`load_source`)."""

    bgr: np.ndarray  # cropped, even-sized
    pts: np.ndarray  # (68, 2) landmarks in the crop
    mesh: np.ndarray  # mesh vertices in the crop (landmarks + brows + ring)
    tris: np.ndarray  # (T, 3) triangles over the mesh vertices
    y: np.ndarray | None = None
    uv: np.ndarray | None = None
    #: uint8 (255: use the photo) at chroma resolution: 0 over hair that
    #: covers the forehead in the photo (a fringe), see :func:`forehead_keep`.
    keep: np.ndarray | None = None
    has_cut: bool = False  # False when keep is all 255 (nothing to leave out: skipped)
    #: The photo's left and right eye aspect ratios (``blend.eyes_wider``).
    eye_ratios: tuple[float, float] = (0.3, 0.3)
    #: The photo's findings (``{"code", "msg"}``, see :mod:`engine.photo`).
    warnings: list = field(default_factory=list)
    #: A turned photo: which half of the face is hidden (-1: the half of
    #: landmark 0, +1: of landmark 16, 0: none) and the mirror image's planes
    #: and mesh that replace it (see :func:`mirror_hidden_half`).
    hidden_side: int = 0
    mirror_mesh: np.ndarray | None = None
    y_m: np.ndarray | None = None
    uv_m: np.ndarray | None = None
    keep_m: np.ndarray | None = None

    def refresh_mirror(self) -> None:
        """Remake the mirror planes from the current ones (after they changed).

        The mirror image is given the photo's own low-frequency light (luma
        ratio, chroma offset over a blur of a tenth of the face width): the
        better-seen half brings its detail, not its side's lighting, so the
        two halves meet without a step.
        """
        if self.mirror_mesh is None:
            return
        sigma = 0.1 * float(np.hypot(*(self.pts[16] - self.pts[0])))
        y = self.y.astype(np.float32)
        ym = np.ascontiguousarray(y[:, ::-1])
        ratio = (cv2.GaussianBlur(y, (0, 0), sigma) + 1.0) / (
            cv2.GaussianBlur(ym, (0, 0), sigma) + 1.0)
        self.y_m = np.clip(ym * ratio, 0, 255).astype(np.uint8)
        uv = self.uv.astype(np.float32)
        uvm = np.ascontiguousarray(uv[:, ::-1])
        off = cv2.GaussianBlur(uv, (0, 0), sigma / 2) - cv2.GaussianBlur(uvm, (0, 0), sigma / 2)
        self.uv_m = np.clip(uvm + off, 0, 255).astype(np.uint8)
        self.keep_m = np.ascontiguousarray(self.keep[:, ::-1])
    #: ``(planes it was made from, U V keep keep, its mirror)``: made by
    #: ``swap._chroma`` for one four-channel remap.
    chroma4: tuple | None = field(default=None, repr=False, compare=False)
    sharpness_matched: bool = False
    scale_to_frame: float = 1.0  # frame pixels per source pixel (set per frame by the swap)
    colourless: float = 0.0  # 1 for a black-and-white photo (color.colourless, set by to_yuv)

    def to_yuv(self, matrix: str) -> None:
        """Convert the crop to the video's YUV matrix (once per task)."""
        self.y, self.uv = bgr_to_yuv(shut_mouth(self.bgr, self.pts), matrix)
        self.colourless = colourless(self.uv, self.pts)
        if self.keep is None:
            h, w = self.uv.shape[:2]
            self.keep = cv2.resize(forehead_keep(self.bgr, self.pts), (w, h),
                                   interpolation=cv2.INTER_AREA)
            self.has_cut = int(self.keep.min()) < 255
        if self.hidden_side:
            mirror_hidden_half(self)


def mouth_gap(pts: np.ndarray) -> float:
    """Inner-lip opening relative to the jaw width (scale-free)."""
    inner = pts[INNER_MOUTH]
    gap = float(np.linalg.norm(inner[[1, 2, 3]] - inner[[7, 6, 5]], axis=1).mean())
    return gap / (float(np.linalg.norm(pts[16] - pts[0])) + 1e-6)


#: Landmark i of a face is landmark MIRROR[i] of its mirror image.
MIRROR = np.array(list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30]
                  + [35, 34, 33, 32, 31] + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
                  + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
                  + [64, 63, 62, 61, 60, 67, 66, 65])


def mirror_hidden_half(src: SourceFace) -> None:
    """Prepare the mirror image that gives a turned photo's hidden half (once per task).

    Turned away, one half of the face is foreshortened and partly hidden
    (behind the nose, past the cheek's edge): warped onto a frontal target
    it breaks into stretched features. The mirror image's face shows the
    better-seen half in the hidden half's place; the swap warps both and
    takes the hidden side from the mirror (``swap.swap_face``), ramped
    across the midline, and the relighting evens out the halves' light.
    """
    w = src.y.shape[1]
    mpts = src.pts[MIRROR].copy()
    mpts[:, 0] = w - 1 - mpts[:, 0]
    src.mirror_mesh = mesh_points(mpts)
    src.refresh_mirror()


def shut_mouth(bgr: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """The photo with its inner mouth (teeth, tongue) painted over with the lips' colours.

    The target's own inner mouth always shows through the mask (see
    ``blend.face_mask``), so the photo's is never wanted; but where the
    target's lips meet, the warp squeezes the photo's mouth into the lip
    line, and a smile's teeth became a bright line there (most of the excess
    sharpness on talk_720p). Inpainting (Telea) fills it from the lips
    around it. Once per task.
    """
    inner = pts[INNER_MOUTH]
    if mouth_gap(pts) < 0.004:
        return bgr
    io = interocular(pts)
    mask = np.zeros(bgr.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(inner).astype(np.int32)], 255, lineType=cv2.LINE_8)
    k = max(3, int(round(0.05 * io)) | 1)
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    return cv2.inpaint(bgr, mask, max(3.0, 0.1 * io), cv2.INPAINT_TELEA)


def forehead_keep(bgr: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Where the photo's face may be used: uint8 map, 0 over hair on the forehead.

    The swapped region reaches above the brows; a fringe there would be carried
    onto the target's forehead. Skin colour is learnt from the photo's own
    mid-face (robust median/MAD in Lab); scanning down each column from the
    top of the swapped region, everything until the first skin is hair.
    The cut stops at the brow line and its edge is widened and feathered so
    the target's own forehead takes over smoothly. Once per task.
    """
    h, w = bgr.shape[:2]
    io = interocular(pts)
    # Strands average out at this scale: a fringe is judged by its mean colour.
    lab = bgr_to_lab8(cv2.GaussianBlur(bgr, (0, 0), max(0.5, 0.05 * io)))
    # Skin sample: the mid-face (jaw points pulled toward the nose tip, away
    # from hair and background), without eyes, nostrils and lips.
    ring = pts[[1, 2, 3, 4, 12, 13, 14, 15]]
    ring = ring + 0.3 * (pts[30] - ring)
    ipts = np.round(pts).astype(np.int32)
    sample = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(sample, np.round(ring).astype(np.int32), 255)
    cv2.fillPoly(sample, [ipts[48:60], ipts[36:42], ipts[42:48], ipts[31:36]], 0)
    px = lab[sample > 0]
    keep = np.full((h, w), 255, np.uint8)
    if len(px) < 50:
        return keep
    med = np.median(px, 0)
    mad = np.median(np.abs(px - med), 0) * 1.4826 + np.array([4.0, 2.0, 2.0], np.float32)
    z2 = (((lab - med) / mad) ** 2).sum(-1)
    # Skin: close to the sample's colour and not darker than its shaded part
    # (hair is almost always darker than the skin it covers).
    skin = ((z2 < 9.0) & (lab[..., 0] > med[0] - mad[0])).astype(np.uint8)
    # Skin-coloured specks in the hair (highlights) must not end the scan.
    k = max(3, int(round(0.1 * io)) | 1)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    skin = cv2.morphologyEx(skin, cv2.MORPH_OPEN, disc)
    inside = np.zeros((h, w), np.uint8)
    cv2.fillPoly(inside, [np.round(geometry(pts)[1]).astype(np.int32)], 1)
    skin &= inside
    # Only hair inside the swapped region matters (the mask is 0 outside it).
    cut = np.cumprod(1 - skin, axis=0, dtype=np.uint8) & inside
    cut = cv2.dilate(cut, disc)
    # The cut stops at the brow line: brows and eyes (the identity) stay the photo's.
    brow = pts[17:27]
    order = np.argsort(brow[:, 0])
    line = np.interp(np.arange(w), brow[order, 0], brow[order, 1])
    cut[np.arange(h)[:, None] >= line[None, :]] = 0
    keep[cut > 0] = 0
    return cv2.GaussianBlur(keep, (0, 0), max(0.8, 0.06 * io))


def match_sharpness(src: SourceFace, face_y: np.ndarray, base_y: np.ndarray,
                    alpha: np.ndarray) -> float:
    """Soften (or sharpen) the source face once so its fine detail matches the video's.

    A crisp photo pasted into a soft, compressed video looks pasted, and its
    fine texture turns every sub-pixel motion into flicker. Compares the
    Laplacian energy of the warped source and the target inside the face on
    the first swapped frame and blurs the source planes (once per task) with
    the smallest sigma that brings it down to SOFTEN_ABOVE times the target's.
    """
    src.sharpness_matched = True
    a = cv2.resize(alpha, (face_y.shape[1], face_y.shape[0])) > 0.9
    if a.sum() < 400:
        return 0.0

    def energy(img: np.ndarray) -> float:
        lap = cv2.Laplacian(img.astype(np.float32), cv2.CV_32F)
        return float(np.mean(np.abs(lap[a])))

    target = energy(base_y)
    have = energy(face_y)
    if have < target * 0.6:
        # A softer photo than the video (an old or upscaled photo): its
        # detail band is raised instead, at most 2x (no halo beyond that).
        scale = src.scale_to_frame or 1.0
        low = cv2.GaussianBlur(src.y, (0, 0), max(0.3, 1.0 / scale))
        gain = min(2.0, target * 0.8 / max(have, 1e-3))
        src.y = cv2.addWeighted(src.y, gain, low, 1.0 - gain, 0.0)
        src.refresh_mirror()
        return -gain
    if have <= target * SOFTEN_ABOVE:
        return 0.0
    # Frame-space sigma -> source-space sigma through the warp's scale.
    chosen = 0.0
    for sigma in (0.5, 0.8, 1.1, 1.5, 2.0):
        chosen = sigma
        if energy(cv2.GaussianBlur(face_y, (0, 0), sigma)) <= target * SOFTEN_ABOVE:
            break
    scale = src.scale_to_frame or 1.0
    s_src = chosen / scale
    src.y = cv2.GaussianBlur(src.y, (0, 0), s_src)
    src.uv = cv2.GaussianBlur(src.uv, (0, 0), max(0.3, s_src / 2))
    src.refresh_mirror()
    return chosen


def choose_face(faces: list, box: list[int] | None) -> list:
    """``faces`` with the one best overlapping ``box`` (``[x, y, w, h]``) first.

    EngineError (code ``source_face_not_found``) when none overlaps it: the photo
    is not the one the box was found in.
    """
    if box is None:
        return faces
    from .detect import iou

    x, y, w, h = box
    rect = (x, y, x + w, y + h)
    scores = [iou(rect, f) for f in faces]
    if not scores or max(scores) < 0.3:
        from .photo import refuse

        raise refuse("source_face_not_found", "the chosen face was not found in the photo")
    best = scores.index(max(scores))
    return [faces[best]] + faces[:best] + faces[best + 1:]


def load_source(path: str, levels: int | None = None,
                face_box: list[int] | None = None) -> SourceFace:
    """Prepare the largest face of the image at ``path``; EngineError if there is none.

    ``levels``: the landmark predictor's cascade levels (the task's, so one
    model is loaded per task); ``face_box``: ``[x, y, w, h]`` of the face to use
    instead of the largest (a group photo's person, ``engine.people``).
    """
    from .photo import analyse

    image = read_image(path)
    faces = choose_face(find_faces(image), face_box) if face_box is not None else None
    report = analyse(image, faces=faces, levels=levels)
    if face_box is not None:  # the person was chosen: "the largest face is used" is untrue
        report.warnings = [w for w in report.warnings if w.code != "photo_several_faces"]
    return prepare_source(image, report)


def prepare_source(image: np.ndarray, report) -> SourceFace:
    """The :class:`SourceFace` of the face ``report`` (``photo.analyse``) found in ``image``.

    Shared by a single photo and by every view of a face library (``engine.library``).
    """
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    pts = report.pts
    mesh = mesh_points(pts)
    # Crop around the mesh (plus margin), bounded in size, even dimensions.
    h, w = grey.shape
    x0, y0 = mesh.min(0)
    x1, y1 = mesh.max(0)
    pad = 0.1 * max(x1 - x0, y1 - y0)
    x0, y0 = max(0, int(x0 - pad)), max(0, int(y0 - pad))
    x1, y1 = min(w, int(x1 + pad) + 1), min(h, int(y1 + pad) + 1)
    crop = image[y0:y1, x0:x1]
    pts = pts - np.array([x0, y0], np.float32)
    face_w = float(np.linalg.norm(pts[JAW][0] - pts[JAW][-1]))
    scale = min(1.0, MAX_FACE_PX / max(face_w, 1.0))
    ch, cw = crop.shape[:2]
    nw, nh = max(2, int(cw * scale) // 2 * 2), max(2, int(ch * scale) // 2 * 2)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    crop = cv2.resize(crop, (nw, nh), interpolation=interp)
    pts = pts * np.array([nw / cw, nh / ch], np.float32)
    mesh = mesh_points(pts)
    hidden = 0
    if abs(report.yaw) > MIRROR_YAW_DEG:
        # The nose points toward the hidden half (see photo.head_pose's sign).
        hidden = -1 if report.yaw < 0 else 1
    return SourceFace(bgr=np.ascontiguousarray(crop), pts=pts, mesh=mesh,
                      tris=triangulate(mesh),
                      warnings=[w.as_dict() for w in report.warnings], hidden_side=hidden,
                      eye_ratios=(eye_aspect(pts[36:42]), eye_aspect(pts[42:48])))


def check_source_face(path: str) -> list[dict]:
    """The photo's warnings (``{"code", "msg"}``, see :mod:`engine.photo`).

    Raises EngineError (with ``code``) for a photo that cannot give a face:
    none found, too small, or turned too far.
    """
    from .photo import analyse

    return [w.as_dict() for w in analyse(read_image(path), levels=8).warnings]
