"""One frame of a swap, before the task: ``preview_frame(photo, video, at_s, ...)``.

The frame goes through the task's own code: the same quality table, source
preparation (:func:`engine.source.load_source`), tracker (:func:`pipeline.make_tracker`,
also with ``target``), descriptor thunks and :func:`engine.swap.swap_faces`, with the
track's eye reference. What differs is only where the tracker starts: a task has
followed the face since the first frame, a preview follows it from ``warmup_s``
before ``at_s`` (the track's landmark smoothing settles within a few frames and
its eye reference needs 5), so the previewed face is the task's within the
tracker's frame-to-frame jitter.

Cost, bounded for an interactive answer: the decoder seeks to the keyframe before
the warm-up window and decodes from there, skipping non-reference frames until the
window; the window's frames are tracked, the last one swapped. Prepared photos are
kept (a few, keyed by path, size and modification time): a user previews several
moments with one photo.
"""

from __future__ import annotations

import copy
import os
import threading
import time
from collections import OrderedDict

import av
import cv2

from .colorspace import matrix_for
from .decode import VideoReader, planes
from .errors import EngineError
from .library import Choosers, FaceLibrary, load_face
from .pipeline import QUALITIES, _describer, make_tracker
from .source import SourceFace
from .swap import swap_faces

#: Seconds of video tracked before the previewed frame.
WARMUP_S = 1.0
#: Prepared photos kept per process.
SOURCE_CACHE = 4
JPEG_QUALITY = 90

_sources: OrderedDict[tuple, SourceFace | FaceLibrary] = OrderedDict()
_lock = threading.Lock()


def _source(image_path: str | list[str], face_video: str | None, levels: int | None,
            box: list[int] | None) -> SourceFace | FaceLibrary:
    """A fresh copy of the prepared face (the swap changes its planes once per task):
    one photo, several photos or a face video, as the task's (``library.load_face``)."""
    paths = [image_path] if isinstance(image_path, str) else list(image_path)
    if face_video is not None:
        paths.append(face_video)
    stats = tuple((p, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths)
    key = (stats, face_video is not None, levels, tuple(box) if box else None)
    with _lock:
        cached = _sources.get(key)
        if cached is not None:
            _sources.move_to_end(key)
    if cached is None:
        cached = load_face([] if face_video is not None else image_path, face_video,
                           levels=levels, face_box=box)
        with _lock:
            _sources[key] = cached
            while len(_sources) > SOURCE_CACHE:
                _sources.popitem(last=False)
    return copy.deepcopy(cached)


def _jpeg(frame: av.VideoFrame, path: str) -> None:
    _write(frame.to_ndarray(format="bgr24"), path)


def preview_frame(image_path: str | list[str], video_path: str, at_s: float, *,
                  preview_path: str,
                  original_path: str, many_faces: bool = False, keep_mouth: bool = False,
                  quality: str = "balanced", max_height: int | None = None,
                  target: list[float] | None = None, source_box: list[int] | None = None,
                  warmup_s: float = WARMUP_S, face_video: str | None = None) -> dict:
    """Swap the frame at ``at_s`` seconds; write it and the unswapped frame as JPEGs.

    Options are :func:`engine.pipeline.swap_video`'s. Returns ``{"at_s", "width",
    "height", "faces", "warnings", "seconds"}`` (``faces``: faces swapped in the
    frame; ``at_s``: the time of the frame shown). A time past the end shows the
    last frame. ``image_path`` may be a list of photos of one person and
    ``face_video`` a video of them (a face library: the view nearest the frame's pose
    and expression is used, as the task's first choice there would be). Raises
    :class:`EngineError`.
    """
    if quality not in QUALITIES:
        raise EngineError(f"unknown quality {quality!r} (use fast, balanced or high)")
    started = time.monotonic()
    opts = QUALITIES[quality]
    source = _source(image_path, face_video, opts["levels"], source_box)
    if video_path.lower().endswith(PHOTO_EXTENSIONS):
        return _photo(source, video_path, opts, preview_path, original_path, started,
                      many_faces=many_faces, keep_mouth=keep_mouth, target=target)
    reader = VideoReader(video_path, max_height=max_height)
    cv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        stream = reader.stream
        tb = float(reader.time_base)
        start = stream.start_time or 0
        window = max(0.0, at_s - warmup_s)
        if window > 0:
            reader.container.seek(start + int(window / tb), stream=stream, backward=True,
                                  any_frame=False)
        tracker = make_tracker(opts, many_faces, target)
        ctx = stream.codec_context
        ctx.skip_frame = "NONREF"
        matrix = None
        index = 0
        last: tuple[av.VideoFrame, float, list] | None = None
        done = False
        try:
            for packet in reader.container.demux(stream):
                for frame in packet.decode():
                    if frame.pts is None:
                        continue
                    t = (frame.pts - start) * tb
                    if t < window - 0.5 / float(reader.rate or 30):
                        continue
                    ctx.skip_frame = "DEFAULT"
                    if matrix is None:
                        adopt_first_frame(reader, frame)
                    frame = reader._convert(frame)
                    if matrix is None:
                        matrix = matrix_for(reader.colorspace, frame.height)
                        source.to_yuv(matrix)
                    y, u, v = planes(frame)
                    tracks = tracker.step(y, index, describe=_describer(y, u, v, matrix),
                                          chroma=(u, v))
                    index += 1
                    last = (frame, t, tracks)
                    if t + 0.5 / float(reader.rate or 30) >= at_s:
                        done = True
                        break
                if done:
                    break
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise EngineError("the video is corrupt or truncated") from exc
        if last is None:
            raise EngineError("the video has no decodable frame at that time")
        frame, t, tracks = last
        _jpeg(frame, original_path)
        faces = [tr.pts.copy() for tr in tracks]
        if faces:
            frame.make_writable()
            y, u, v = planes(frame)
            views = (Choosers(source).choose(tracks, (frame.width, frame.height))
                     if isinstance(source, FaceLibrary) else None)
            swap_faces(y, u, v, faces, source, morph=opts["morph"], keep_mouth=keep_mouth,
                       eye_refs=[tr.eye_ref for tr in tracks], views=views,
                       covers=[tr.cover for tr in tracks])
        _jpeg(frame, preview_path)
    finally:
        reader.close()
        cv2.setNumThreads(cv_threads)
    return {"at_s": round(t, 3), "width": frame.width, "height": frame.height,
            "faces": len(faces), "warnings": list(source.warnings),
            "seconds": round(time.monotonic() - started, 3)}


PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def _write(bgr, path: str) -> None:
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise EngineError("the preview could not be encoded")
    tmp = path + ".part"
    with open(tmp, "wb") as fh:
        fh.write(data.tobytes())
    os.replace(tmp, path)


def _photo(source: SourceFace | FaceLibrary, path: str, opts: dict, preview_path: str,
           original_path: str, started: float, *, many_faces: bool, keep_mouth: bool,
           target: list[float] | None) -> dict:
    """A photo target's preview: the task's own swap of the photo (``engine.still``)."""
    from .source import read_image
    from .still import swap_into

    bgr = read_image(path)
    out, faces = swap_into(bgr, source, many_faces=many_faces, keep_mouth=keep_mouth,
                           morph=opts["morph"], levels=opts["levels"], target=target)
    _write(bgr, original_path)
    _write(out, preview_path)
    h, w = out.shape[:2]
    return {"at_s": 0.0, "width": w, "height": h, "faces": faces,
            "warnings": list(source.warnings), "seconds": round(time.monotonic() - started, 3)}


def adopt_first_frame(reader: VideoReader, frame: av.VideoFrame) -> None:
    """What ``VideoReader.frames`` learns from the first decoded frame (its rotation and
    colour matrix), for a caller that decodes from ``reader.container`` itself."""
    try:
        rot = int(round(float(frame.rotation or 0) / 90.0)) * 90 % 360
    except Exception:  # noqa: BLE001 - older PyAV has no frame.rotation
        rot = 0
    reader.rotation = rot or reader.rotation
    reader.colorspace = int(frame.colorspace or 0) or None

