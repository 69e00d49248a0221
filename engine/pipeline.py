"""``swap_video``: the whole task, as a three-thread pipeline.

Threads, not processes, so it runs the same in a ProcessPoolExecutor worker
and in a daemonic Dask worker (which may not start child processes):

* reader thread: demux + decode (FFmpeg codec threads) + orientation/size fixes;
* calling thread: detection, tracking and landmarks (inherently sequential),
  plus the progress and cancellation callbacks;
* swap thread: warp, relight and blend of frame i while frame i+1 is tracked,
  done in a helper process (:mod:`engine.offload`) when this process may
  have one, so the swap's Python and numpy work does not wait for the GIL;
* writer thread: libx264 encode (its own threads) + mux, audio interleaved.

FFmpeg, x264, OpenCV and most of dlib run without the GIL, so one task uses
both cores. Bounded queues keep memory flat and let a slow stage set the pace.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable

import av
import cv2
import numpy as np

from .colorspace import matrix_for, yuv_to_bgr
from .decode import VideoReader, planes
from .encode import FAST_SEARCH, VideoWriter
from .errors import Cancelled, EngineError
from .library import Choosers, FaceLibrary, load_face
from .malloc import keep_freed_memory
from .offload import SwapHelper, available
from .swap import liquify_for, swap_faces
from .track import Tracker

QUALITIES: dict[str, dict] = {
    # detect_every: frames between detections while tracking; search_every: while no face.
    # measure_every: at most this many frames between landmark predictions; in between,
    # optical flow alone while the face moves little and rigidly (see FaceTrack.update).
    # levels: cascade levels of the landmark predictor (None: all 15; see models).
    # x264: options on top of the preset (encode.FAST_SEARCH: the same fidelity as the
    # plain preset at crf one higher, at about 40 % less x264 time; docs/engine.md).
    "fast": dict(detect_every=15, search_every=6, max_side=480, upsample=0, morph=0.0,
                 measure_every=5, levels=8,
                 preset="veryfast", crf=16, x264=FAST_SEARCH),
    "balanced": dict(detect_every=30, search_every=5, max_side=640, upsample=0, morph=0.5,
                     measure_every=4, levels=13,
                     preset="veryfast", crf=14, x264=FAST_SEARCH),
    "high": dict(detect_every=5, search_every=2, max_side=960, upsample=0, morph=0.5,
                 measure_every=1, levels=None,
                 preset="veryfast", crf=14),
}

_END = object()
_QUEUE = 8


class _Stage(threading.Thread):
    """A worker thread that records its exception instead of printing it."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._fn = target
        self.error: BaseException | None = None
        self.cpu = 0.0  # CPU seconds this thread used (benchmark figures)

    def run(self) -> None:
        try:
            self._fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            self.error = exc
        finally:
            self.cpu = time.thread_time()


def _put(q: queue.Queue, item, stop: threading.Event,
         poll: Callable[[], None] | None = None) -> bool:
    """Put with a bounded wait; ``poll`` runs while blocked (cancellation checks)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            if poll is not None:
                poll()
    return False


def _get(q: queue.Queue, stop: threading.Event):
    """Get with a bounded wait; None once ``stop`` is set (a failing sibling thread)."""
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return None


class StageTimes:
    """Seconds spent per stage (summed over frames), for the benchmark."""

    def __init__(self) -> None:
        self.track = 0.0
        self.swap = 0.0
        self.wait_decode = 0.0
        self.wait_encode = 0.0
        self.encode = 0.0
        self.decode = 0.0
        self.source = 0.0
        self.unswapped: list[int] = []  # indices of frames left as decoded
        self.detections = 0
        self.cpu: dict[str, float] = {}  # CPU seconds per Python thread

    def as_dict(self) -> dict:
        keys = ("source", "decode", "track", "swap", "encode", "wait_decode", "wait_encode")
        out = {k: round(getattr(self, k), 3) for k in keys}
        out["detections"] = self.detections
        out["cpu"] = {k: round(v, 3) for k, v in self.cpu.items()}
        return out


def preload(quality: str = "balanced") -> None:
    """Load the models a swap of this quality needs (worker start-up)."""
    from . import models

    models.face_detector()
    models.shape_predictor(QUALITIES[quality]["levels"])


def swap_video(image_path: str | list[str], video_path: str, out_path: str, *,
               many_faces: bool = False, keep_mouth: bool = False, quality: str = "balanced",
               face_video: str | None = None,
               max_height: int | None = None, max_frames: int | None = None,
               start_s: float | None = None, end_s: float | None = None,
               progress: Callable[[int, int, float], None] | None = None,
               should_cancel: Callable[[], bool] | None = None,
               stats: StageTimes | None = None, helper: bool | None = None,
               target: list[float] | None = None,
               source_box: list[int] | None = None) -> dict:
    """Swap the face of ``image_path`` into ``video_path``, writing an MP4 to ``out_path``.

    ``image_path`` may be a list of photos of one person, and ``face_video`` a
    video of that person instead (see :mod:`engine.library`).

    Returns ``{"frames", "swapped_frames", "seconds", "fps", "width", "height"}``.
    Raises :class:`EngineError` (clear one-line message) or :class:`Cancelled`.
    ``progress`` and ``should_cancel`` are called only from the calling thread;
    ``should_cancel`` at most every 0.1 s, between frames. ``helper``: swap
    in a helper process (default: whenever this process may start one).
    ``start_s``/``end_s``: swap and output only that segment (seconds from the
    video's start; audio cut at the same times). The reader seeks to the keyframe
    before ``start_s``, so a late start does not decode the video from its beginning.
    ``target``: the descriptor of the only person to swap (``engine.people``);
    ``source_box``: ``[x, y, w, h]`` of the face of the photo to use (default: the
    largest).
    """
    if quality not in QUALITIES:
        raise EngineError(f"unknown quality {quality!r} (use fast, balanced or high)")
    if max_height is not None and max_height < 16:
        raise EngineError("max_height is too small")
    opts = QUALITIES[quality]
    st = stats or StageTimes()
    # The stages hand the GIL back and forth between short Python steps and
    # long GIL-free C calls; with the default 5 ms switch interval a thread
    # waiting for the GIL idles for up to 5 ms per hand-off (convoy effect).
    switch = sys.getswitchinterval()
    sys.setswitchinterval(min(switch, 0.0005))
    # Our stages already run in parallel; OpenCV's own worker pool on these
    # small face regions only adds wake-up/spin overhead (measured: ~10% more
    # CPU and slower wall time), so it is turned off for the task.
    cv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    keep_freed_memory()
    started = time.monotonic()
    reader = VideoReader(video_path, max_height=max_height, max_frames=max_frames,
                         start_s=start_s, end_s=end_s)
    writer: VideoWriter | None = None
    swapper: SwapHelper | None = None
    if available() if helper is None else helper:
        # Started first: its interpreter start-up overlaps the model loading below.
        swapper = SwapHelper(*reader.max_size)
    stop = threading.Event()
    threads: list[_Stage] = []
    try:
        t = time.monotonic()
        source = load_face(image_path, face_video, levels=opts["levels"], face_box=source_box)
        st.source = time.monotonic() - t
        writer = VideoWriter(out_path, preset=opts["preset"], crf=opts["crf"],
                             audio_in=reader.audio, x264_params=opts.get("x264"))
        result = _run(reader, writer, source, opts, stop, threads, st, swapper,
                      many_faces=many_faces, keep_mouth=keep_mouth, progress=progress,
                      should_cancel=should_cancel, target=target)
        try:
            writer.finish()
        except (OSError, ValueError, av.FFmpegError) as exc:
            raise _as_engine_error(exc) from exc
        writer = None
    except BaseException:
        stop.set()
        for th in threads:
            if th.ident is not None:  # a signal may land while they are being started
                th.join()
        if writer is not None:
            writer.abort()
        raise
    finally:
        stop.set()
        reader.close()
        if swapper is not None:
            swapper.close()
        sys.setswitchinterval(switch)
        cv2.setNumThreads(cv_threads)
    seconds = time.monotonic() - started
    result["warnings"] = list(source.warnings)
    result["seconds"] = round(seconds, 3)
    result["fps"] = round(result["frames"] / seconds, 2) if seconds > 0 else 0.0
    return result


def _run(reader: VideoReader, writer: VideoWriter, source, opts: dict, stop: threading.Event,
         threads: list[_Stage], st: StageTimes, swapper: SwapHelper | None, *,
         many_faces: bool, keep_mouth: bool, progress, should_cancel,
         target: list[float] | None = None) -> dict:
    frames_q: queue.Queue = queue.Queue(_QUEUE)
    swap_q: queue.Queue = queue.Queue(_QUEUE)
    out_q: queue.Queue = queue.Queue(_QUEUE)
    audio: deque = deque()

    def read() -> None:
        it = reader.frames(on_audio=audio.append, stop=stop.is_set)
        while True:
            t = time.monotonic()
            item = next(it, _END)
            st.decode += time.monotonic() - t
            if item is _END or not _put(frames_q, item, stop):
                break
        _put(frames_q, _END, stop)

    def write() -> None:
        while True:
            item = _get(out_q, stop)
            if item is None:
                return
            if item is _END:
                break
            frame, pts = item
            t = time.monotonic()
            if writer.video is None:
                writer.open_video(frame.width, frame.height, reader.rate, reader.time_base)
            writer.write(frame, pts)
            while audio:
                writer.write_audio([audio.popleft()])
            st.encode += time.monotonic() - t
        if writer.video is not None:
            while audio:
                writer.write_audio([audio.popleft()])

    swapped = 0

    def swap() -> None:
        nonlocal swapped
        # (frame, pts, helper job or None) in frame order, waiting to be written.
        pending: deque = deque()
        liquify = None  # the task's, judged on its first face large enough (swap.liquify_for)
        depth = swapper.depth if swapper is not None else 1
        while True:
            item = _get(swap_q, stop)
            if item is None:
                return
            if item is _END:
                break
            frame, pts, faces, refs, views, covers = item
            job = None
            if faces:
                t = time.monotonic()
                frame.make_writable()
                y, u, v = planes(frame)
                if liquify is None:
                    liquify = liquify_for(y, faces)
                mode = cv2.INTER_LINEAR if liquify is None else liquify
                if swapper is not None:
                    job = swapper.submit(y, u, v, faces, source, morph=opts["morph"],
                                         keep_mouth=keep_mouth, eye_refs=refs, views=views,
                                         covers=covers, liquify=mode)
                else:
                    swap_faces(y, u, v, faces, source, morph=opts["morph"],
                               keep_mouth=keep_mouth, eye_refs=refs, views=views, covers=covers,
                               liquify=mode)
                swapped += 1
                st.swap += time.monotonic() - t
            pending.append((frame, pts, job))
            while len(pending) >= depth:
                if not _flush(pending):
                    return
        while pending:
            if not _flush(pending):
                return
        _put(out_q, _END, stop)

    def _flush(pending: deque) -> bool:
        frame, pts, job = pending.popleft()
        if job is not None:
            t = time.monotonic()
            swapper.wait(job)
            st.swap += time.monotonic() - t
        return _put(out_q, (frame, pts), stop)

    rd, sw, wr = (_Stage(read, "swap-decode"), _Stage(swap, "swap-faces"),
                  _Stage(write, "swap-encode"))
    threads += [rd, sw, wr]
    for th in threads:
        th.start()

    tracker = make_tracker(opts, many_faces, target)
    choosers = Choosers(source) if isinstance(source, FaceLibrary) else None
    total = reader.total
    done = 0
    matrix = None
    t0 = time.monotonic()
    cpu0 = time.thread_time()
    last_report = last_cancel = 0.0
    report_step = max(1, total // 100)
    next_report = report_step
    width = height = 0

    def poll() -> None:
        """Check cancellation and stage failures (also while waiting on a full queue)."""
        nonlocal last_cancel
        now = time.monotonic()
        if should_cancel is not None and now - last_cancel >= 0.1:
            last_cancel = now
            if should_cancel():
                raise Cancelled()
        for th in (rd, sw, wr):
            if th.error is not None:
                raise _as_engine_error(th.error)

    while True:
        t = time.monotonic()
        try:
            item = frames_q.get(timeout=0.1)
        except queue.Empty:
            item = None
        st.wait_decode += time.monotonic() - t
        poll()
        if item is None:
            if not rd.is_alive() and frames_q.empty():
                raise EngineError("the video could not be decoded")
            continue
        if item is _END:
            break
        frame, pts = item
        if matrix is None:
            width, height = frame.width, frame.height
            matrix = matrix_for(reader.colorspace, height)
            source.to_yuv(matrix)
        t = time.monotonic()
        y, u, v = planes(frame)
        tracks = tracker.step(y, done, describe=_describer(y, u, v, matrix), chroma=(u, v))
        st.track += time.monotonic() - t
        if not tracks:
            st.unswapped.append(done)
        t = time.monotonic()
        views = choosers.choose(tracks, (width, height)) if choosers is not None else None
        item = (frame, pts, [tr.pts.copy() for tr in tracks], [tr.eye_ref for tr in tracks],
                views, [tr.cover for tr in tracks])
        if not _put(swap_q, item, stop, poll):
            break
        st.wait_encode += time.monotonic() - t
        done += 1
        now = time.monotonic()
        if progress is not None and (done >= next_report or now - last_report >= 1.0):
            next_report = done + report_step
            last_report = now
            progress(done, max(total, done), done / max(now - t0, 1e-6))
    st.detections = tracker.detections
    _put(swap_q, _END, stop, poll)
    while wr.is_alive():
        wr.join(0.1)
        poll()
    for th in (sw, wr):
        th.join()
        if th.error is not None:
            raise _as_engine_error(th.error)
    st.cpu = {"track (calling thread)": time.thread_time() - cpu0, "decode": rd.cpu,
              "swap": sw.cpu, "encode": wr.cpu, "process": time.process_time()}
    rd.join()
    if rd.error is not None:
        raise _as_engine_error(rd.error)
    if done == 0:
        raise EngineError("the video has no decodable frames")
    if progress is not None:
        progress(done, done, done / max(time.monotonic() - t0, 1e-6))
    result = {"frames": done, "swapped_frames": swapped, "width": width, "height": height}
    if choosers is not None:
        result["face_views"] = len(source.faces)
        result["view_changes"] = choosers.switches
        st.view_changes = choosers.changes
    return result


def make_tracker(opts: dict, many_faces: bool, target: list[float] | None = None) -> Tracker:
    """The tracker of a swap with quality ``opts`` (the task's and the preview's)."""
    return Tracker(many_faces=many_faces, detect_every=opts["detect_every"],
                   search_every=opts["search_every"], max_side=opts["max_side"],
                   upsample=opts["upsample"], measure_every=opts["measure_every"],
                   levels=opts["levels"],
                   target=None if target is None else np.asarray(target, np.float64))


def _as_engine_error(exc: BaseException) -> EngineError:
    """Map an unexpected exception from a stage to a one-line EngineError."""
    if isinstance(exc, EngineError):
        return exc
    if isinstance(exc, MemoryError):
        return EngineError("processing failed: out of memory")
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return EngineError(f"processing failed: {type(exc).__name__}: {text}")


def _describer(y: np.ndarray, u: np.ndarray, v: np.ndarray, matrix: str):
    """Return ``describe(pts)`` for this frame (see :meth:`Tracker.step`).

    The face crop is converted and copied immediately (the frame is modified
    later); the ResNet descriptor is computed only when the thunk is called.
    """

    def describe(pts: np.ndarray):
        h, w = y.shape
        x0, y0 = (pts.min(0) - 0.6 * np.ptp(pts, 0)).astype(int) // 2 * 2
        x1, y1 = (pts.max(0) + 0.6 * np.ptp(pts, 0)).astype(int) // 2 * 2
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w // 2 * 2, x1), min(h // 2 * 2, y1)
        if x1 - x0 < 16 or y1 - y0 < 16:
            return lambda: None
        bgr = yuv_to_bgr(y[y0:y1, x0:x1], u[y0 // 2:y1 // 2, x0 // 2:x1 // 2],
                         v[y0 // 2:y1 // 2, x0 // 2:x1 // 2], matrix)
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        p = pts - np.array([x0, y0])

        def compute():
            import dlib

            from . import models

            shape = dlib.full_object_detection(
                dlib.rectangle(int(p[:, 0].min()), int(p[:, 1].min()),
                               int(p[:, 0].max()), int(p[:, 1].max())),
                [dlib.point(int(a), int(b)) for a, b in p])
            return np.array(models.face_encoder().compute_face_descriptor(rgb, shape))

        return compute

    return describe
