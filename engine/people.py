"""The distinct people of a photo or a video: ``find_people(path)``.

A video is sampled (about ``sample_fps`` frames a second, decoded in order: seeking
to each sample would decode from its keyframe anyway), every sampled frame's faces
are detected (HOG, as the tracker does) and described by dlib's ResNet (128 numbers;
two views of one person lie within ~0.6 of each other), and the descriptions are
grouped by person. The answer per person: how often they are seen, when first and
last, where (the box of their best view), a JPEG crop of that view and the group's
mean descriptor, which the swap uses to follow only that person (``target``).

Grouping is greedy then merged: faces, largest first, join the nearest group mean
within ``threshold``, else open a group; groups whose means lie within the
threshold are merged. Largest first, so a group's mean starts from a good view.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import cv2
import numpy as np

from .errors import EngineError

#: Distance between descriptors under which two faces are one person (dlib's own
#: figure for its ResNet: 0.6 gives 99.38 % on LFW).
THRESHOLD = 0.6
#: Sampled frames a second of video, and at most this many samples a video (a longer
#: video is sampled more sparsely, so the work stays bounded).
SAMPLE_FPS = 2.0
MAX_SAMPLES = 150
#: A person seen in fewer samples than this (in a video of at least 10 samples) is
#: a detector's false alarm or a passer-by, not a choice worth offering.
MIN_SEEN = 2
#: Longest side of the frame the detector sees (the tracker's ``balanced`` figure).
DETECT_SIDE = 640
#: Longest side of a thumbnail, pixels.
THUMB_SIDE = 160
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclass
class Person:
    """One person found: see :func:`find_people`."""

    share: float
    first_s: float
    last_s: float
    box: list[int]  #: x, y, width, height of the best view, in the picture's pixels
    descriptor: list[float]  #: the group's mean ResNet descriptor
    thumbnail: bytes  #: JPEG crop of the best view
    seen: int = 0  #: samples in which the person was found

    def as_dict(self) -> dict:
        return {"share": self.share, "first_s": self.first_s, "last_s": self.last_s,
                "box": self.box, "descriptor": self.descriptor, "thumbnail": self.thumbnail,
                "seen": self.seen}


@dataclass
class _Face:
    sample: int
    time_s: float
    rect: tuple[float, float, float, float]
    desc: np.ndarray
    area: float
    crop: bytes = b""


@dataclass
class _Group:
    """Descriptors of one person so far: their sum and count (the mean is the centre)."""

    total: np.ndarray
    count: int = 1

    @property
    def mean(self) -> np.ndarray:
        return self.total / self.count

    def absorb(self, other: _Group) -> None:
        self.total = self.total + other.total
        self.count += other.count


def describe_faces(bgr: np.ndarray, rects: list, levels: int | None = None
                   ) -> list[np.ndarray]:
    """The ResNet descriptor of each face ``rects`` of a BGR picture (landmarks first)."""
    import dlib

    from . import models
    from .landmarks import predict_landmarks

    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    rgb = np.ascontiguousarray(bgr[..., ::-1])
    out = []
    for rect in rects:
        pts = predict_landmarks(grey, rect, levels)
        shape = dlib.full_object_detection(
            dlib.rectangle(int(pts[:, 0].min()), int(pts[:, 1].min()),
                           int(pts[:, 0].max()), int(pts[:, 1].max())),
            [dlib.point(int(a), int(b)) for a, b in pts])
        out.append(np.array(models.face_encoder().compute_face_descriptor(rgb, shape)))
    return out


def _thumbnail(bgr: np.ndarray, rect) -> bytes:
    h, w = bgr.shape[:2]
    x0, y0, x1, y1 = rect
    pad = 0.35 * max(x1 - x0, y1 - y0)
    x0, y0 = max(0, int(x0 - pad)), max(0, int(y0 - pad))
    x1, y1 = min(w, int(x1 + pad)), min(h, int(y1 + pad))
    crop = bgr[y0:y1, x0:x1]
    scale = THUMB_SIDE / max(crop.shape[:2])
    if scale < 1:
        crop = cv2.resize(crop, (max(1, int(crop.shape[1] * scale)),
                                 max(1, int(crop.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return data.tobytes() if ok else b""


def group(descs: list[np.ndarray], threshold: float = THRESHOLD) -> list[list[int]]:
    """Indices of ``descs`` grouped by person (see the module docstring), in input order
    of each group's first member; give ``descs`` largest face first."""
    groups: list[_Group] = []
    members: list[list[int]] = []
    for i, d in enumerate(descs):
        best, best_d = -1, threshold
        for g, grp in enumerate(groups):
            dist = float(np.linalg.norm(d - grp.mean))
            if dist < best_d:
                best, best_d = g, dist
        if best < 0:
            groups.append(_Group(np.array(d, np.float64)))
            members.append([i])
        else:
            groups[best].absorb(_Group(np.array(d, np.float64)))
            members[best].append(i)
    merged = True
    while merged:
        merged = False
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                if float(np.linalg.norm(groups[a].mean - groups[b].mean)) < threshold:
                    groups[a].absorb(groups[b])
                    members[a] += members[b]
                    del groups[b], members[b]
                    merged = True
                    break
            if merged:
                break
    return members


def _video_samples(path: str, sample_fps: float, max_samples: int, should_cancel=None):
    """Yield ``(time_s, bgr)`` of sampled frames, upright, in presentation order.

    Decoded in order with the decoder skipping non-reference frames (measured: 2.3 s
    instead of 5.8 s for a minute of 720p): a sample is the first decoded frame at or
    after its time, at most a frame or two late.
    """
    import av

    from .decode import VideoReader
    from .preview import adopt_first_frame

    reader = VideoReader(path)
    try:
        stream = reader.stream
        rate = float(reader.rate) or 30.0
        frames = reader.header_frames or reader.total
        duration = frames / rate
        step_s = max(1.0 / sample_fps, duration / max_samples if duration else 0.0)
        stream.codec_context.skip_frame = "NONREF"
        tb = float(reader.time_base)
        start = stream.start_time or 0
        next_t = 0.0
        first = True
        try:
            for packet in reader.container.demux(stream):
                for frame in packet.decode():
                    if frame.pts is None:
                        continue
                    if first:
                        adopt_first_frame(reader, frame)
                        first = False
                    t = (frame.pts - start) * tb
                    if t + 0.5 / rate < next_t:
                        continue
                    if should_cancel is not None and should_cancel():
                        return
                    while next_t <= t + 0.5 / rate:  # on a fixed grid: no drift
                        next_t += step_s
                    yield max(0.0, t), reader._convert(frame).to_ndarray(format="bgr24")
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise EngineError("the video is corrupt or truncated") from exc
    finally:
        reader.close()


def _thumb_grey(bgr: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    return cv2.resize(grey, (32, 18), interpolation=cv2.INTER_AREA).astype(np.int16)


def find_people(path: str, *, sample_fps: float = SAMPLE_FPS, max_samples: int = MAX_SAMPLES,
                threshold: float = THRESHOLD, detect_side: int = DETECT_SIDE,
                levels: int | None = 10, should_cancel=None) -> list[Person]:
    """The distinct people of the photo or video at ``path``, largest share first.

    ``share``: the fraction of sampled frames (1 for a photo) in which the person is
    seen; ``first_s``/``last_s``: the first and last sample times showing them (0 for
    a photo); ``box``: their best (largest) view. Raises :class:`EngineError` for a
    file that cannot be read. An empty list means no face was found.

    A descriptor costs 0.1-0.2 s on this class of CPU (dlib without BLAS), so faces
    are linked from sample to sample by overlap (no cut between the samples, a box
    overlapping the last one) and a linked face is described again only every
    ``REDESCRIBE`` samples; a new description far from its chain's starts a new chain.
    Chains, not single faces, are then grouped by person.
    """
    from .detect import detect_faces, iou

    if not os.path.isfile(path):
        raise EngineError("the file does not exist")
    photo = path.lower().endswith(IMAGE_EXTENSIONS)
    if photo:
        from .source import find_faces, read_image

        samples = iter([(0.0, read_image(path))])
    else:
        samples = _video_samples(path, sample_fps, max_samples, should_cancel)
    chains: list[_Chain] = []
    live: list[_Chain] = []  # chains that reached the previous sample
    prev_thumb = None
    count = 0
    for index, (t, bgr) in enumerate(samples):
        count += 1
        thumb = _thumb_grey(bgr)
        cut = prev_thumb is None or float(np.abs(thumb - prev_thumb).mean()) > CUT_DIFF
        prev_thumb = thumb
        if photo:
            rects = find_faces(bgr)
        else:
            rects = detect_faces(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), detect_side, 0)
        linked: list[_Chain | None] = []
        free = [] if cut else list(live)
        for rect in rects:
            best, best_iou = None, LINK_IOU
            for chain in free:
                v = iou(chain.last.rect, rect)
                if v > best_iou:
                    best, best_iou = chain, v
            if best is not None:
                free.remove(best)
            linked.append(best)
        need = [i for i, c in enumerate(linked)
                if c is None or index - c.described_at >= REDESCRIBE]
        descs = dict(zip(need, describe_faces(bgr, [rects[i] for i in need], levels),
                         strict=True))
        now_live = []
        for i, rect in enumerate(rects):
            face = _Face(index, round(t, 2), rect, descs.get(i),
                         (rect[2] - rect[0]) * (rect[3] - rect[1]))
            chain = linked[i]
            if chain is not None and face.desc is not None and \
                    float(np.linalg.norm(face.desc - chain.mean)) >= threshold:
                chain = None  # another person took that place
            if chain is None:
                chain = _Chain()
                chains.append(chain)
            chain.add(face, bgr)
            now_live.append(chain)
        live = now_live
    if not chains:
        return []
    chains.sort(key=lambda c: c.best.area, reverse=True)
    people = []
    for idx in group([c.mean for c in chains], threshold):
        members = [chains[i] for i in idx]
        faces = [f for c in members for f in c.faces]
        seen = len({f.sample for f in faces})
        if not photo and count >= 10 and seen < MIN_SEEN:
            continue
        best = max((c.best for c in members), key=lambda f: f.area)
        thumb = next(c.thumb for c in members if c.best is best)
        x0, y0, x1, y1 = best.rect
        weights = [c.described for c in members]
        mean = np.average([c.mean for c in members], axis=0, weights=weights)
        people.append(Person(
            share=round(seen / count, 3), first_s=min(f.time_s for f in faces),
            last_s=max(f.time_s for f in faces),
            box=[int(round(x0)), int(round(y0)), int(round(x1 - x0)), int(round(y1 - y0))],
            descriptor=[round(float(v), 6) for v in mean], thumbnail=thumb, seen=seen))
    people.sort(key=lambda p: (p.share, p.box[2] * p.box[3]), reverse=True)
    return people


#: Mean luma difference (0-255) of two samples' 32x18 thumbnails above which they are
#: of different shots (the tracker's cut figure), and the overlap a face's boxes in two
#: samples of one shot need to be taken for one person without describing it again.
CUT_DIFF = 20.0
LINK_IOU = 0.3
#: Samples after which a linked face is described again (checks the link).
REDESCRIBE = 6


@dataclass
class _Chain:
    """One person's faces linked over consecutive samples of one shot."""

    faces: list[_Face] = field(default_factory=list)
    total: np.ndarray | None = None
    described: int = 0
    described_at: int = -10**9
    best: _Face | None = None
    thumb: bytes = b""

    @property
    def last(self) -> _Face:
        return self.faces[-1]

    @property
    def mean(self) -> np.ndarray:
        return self.total / self.described

    def add(self, face: _Face, bgr: np.ndarray) -> None:
        self.faces.append(face)
        if face.desc is not None:
            self.total = face.desc.copy() if self.total is None else self.total + face.desc
            self.described += 1
            self.described_at = face.sample
        if self.best is None or face.area > self.best.area:
            self.best = face
            self.thumb = _thumbnail(bgr, face.rect)
