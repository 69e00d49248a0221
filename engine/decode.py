"""Decoding: PyAV demux + decode into upright, even-sized yuv420p frames.

Frames stay in YUV: the face stages need only the luma plane (detection,
landmarks, flow) plus the face region's chroma, and leaving every other pixel
in its decoded form is what keeps faceless frames identical to the input.
Rotation metadata is applied to the pixels (the output carries none), odd sizes
are padded by one replicated row/column, and ``max_height`` downscales.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from fractions import Fraction

import av
import cv2
import numpy as np

from .errors import EngineError
from .probe import frame_rate, open_video, stream_rotation

_ROTATE = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180,
           270: cv2.ROTATE_90_CLOCKWISE}


def plane(frame: av.VideoFrame, i: int) -> np.ndarray:
    """Numpy view (no copy) of plane ``i`` of a yuv420p frame, without line padding."""
    p = frame.planes[i]
    return np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width]


def planes(frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Y, U, V) views of a yuv420p frame; writable only after ``frame.make_writable()``."""
    return plane(frame, 0), plane(frame, 1), plane(frame, 2)


def new_frame(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> av.VideoFrame:
    """Build a yuv420p frame from three planes (Y even-sized)."""
    h, w = y.shape
    frame = av.VideoFrame(w, h, "yuv420p")
    for i, src in enumerate((y, u, v)):
        plane(frame, i)[...] = src
    return frame


class VideoReader:
    """An opened input video; iterate :meth:`frames` from one thread."""

    def __init__(self, path: str, *, max_height: int | None = None,
                 max_frames: int | None = None, start_s: float | None = None,
                 end_s: float | None = None) -> None:
        if start_s is not None and start_s < 0:
            raise EngineError("start_s must not be negative")
        if end_s is not None and end_s <= (start_s or 0.0):
            raise EngineError("end_s must be after start_s")
        self.path = path
        self.container, self.stream = open_video(path)
        self.stream.thread_type = "AUTO"
        self.max_height = max_height
        self.max_frames = max_frames
        self.rate: Fraction = frame_rate(self.stream)
        self.time_base: Fraction = self.stream.time_base or Fraction(1, 90000)
        self.audio = self.container.streams.audio[0] if self.container.streams.audio else None
        self.rotation = stream_rotation(self.stream)
        self.header_frames = int(self.stream.frames or 0)
        est = self.header_frames
        if not est:
            dur = 0.0
            if self.stream.duration and self.stream.time_base:
                dur = float(self.stream.duration * self.stream.time_base)
            elif self.container.duration:
                dur = self.container.duration / 1_000_000
            est = int(round(dur * float(self.rate)))
        # The segment [start_s, end_s) in seconds from the stream's first timestamp;
        # frame and audio timestamps come out shifted by start_s, so the output starts at 0.
        self.start_s = float(start_s or 0.0)
        self.end_s = None if end_s is None else float(end_s)
        self.segmented = bool(self.start_s) or self.end_s is not None
        self.origin = int(self.stream.start_time or 0)  # the stream's t = 0, in time_base
        if self.segmented and est:
            span = est / float(self.rate)
            end = span if self.end_s is None else min(span, self.end_s)
            est = max(1, int(round((end - self.start_s) * float(self.rate))))
        if max_frames:
            est = min(est, max_frames) if est else max_frames
        self.total = max(1, est)
        self.colorspace: int | None = None
        self.decoded = 0
        self.skipped = 0  #: frames decoded before start_s (from the keyframe sought to)

    @property
    def max_size(self) -> tuple[int, int]:
        """(width, height) as the stream header states; converted frames have no more pixels."""
        cc = self.stream.codec_context
        return max(16, cc.width or 0), max(16, cc.height or 0)

    def close(self) -> None:
        self.container.close()

    def _geometry(self, frame: av.VideoFrame) -> tuple[int, int, bool]:
        """Stored-orientation size to convert to, and whether planes need even padding."""
        w, h = frame.width, frame.height
        rot = self.rotation
        disp_h, disp_w = (w, h) if rot in (90, 270) else (h, w)
        if self.max_height and disp_h > self.max_height:
            nh = max(2, self.max_height // 2 * 2)
            nw = max(2, int(round(disp_w * nh / disp_h / 2.0)) * 2)
            return (nh, nw, False) if rot in (90, 270) else (nw, nh, False)
        return w, h, bool(w % 2 or h % 2)

    def _convert(self, frame: av.VideoFrame) -> av.VideoFrame:
        w, h, pad = self._geometry(frame)
        if frame.format.name != "yuv420p" or (w, h) != (frame.width, frame.height):
            frame = frame.reformat(width=w, height=h, format="yuv420p",
                                   interpolation="AREA" if h < frame.height else "BILINEAR")
        if not pad and not self.rotation:
            return frame
        y, u, v = planes(frame)
        if pad:
            ph, pw = h + (h % 2), w + (w % 2)
            y = cv2.copyMakeBorder(y, 0, ph - h, 0, pw - w, cv2.BORDER_REPLICATE)
            u, v = u[: ph // 2, : pw // 2], v[: ph // 2, : pw // 2]
        if self.rotation:
            code = _ROTATE[self.rotation]
            y, u, v = cv2.rotate(y, code), cv2.rotate(u, code), cv2.rotate(v, code)
        return new_frame(y, u, v)

    def _seek(self) -> tuple[int, int | None, int]:
        """Seek to the keyframe at or before ``start_s``; the segment in stream units.

        Returns ``(start_pts, end_pts or None, audio_shift)``: frames before
        ``start_pts`` are decoded (from that keyframe) but not yielded; video
        timestamps move back by ``start_pts`` and audio ones by ``audio_shift``
        (the same time in the audio's time base), so the segment starts at 0 and
        the cut keeps them in sync.
        """
        tb = self.time_base
        start_pts = self.origin + int(round(self.start_s / tb))
        end_pts = None if self.end_s is None else self.origin + int(round(self.end_s / tb))
        shift = 0
        if self.audio is not None and self.audio.time_base:
            shift = int(round(start_pts * tb / self.audio.time_base))
        if self.start_s > 0:
            try:
                self.container.seek(start_pts, stream=self.stream, backward=True,
                                    any_frame=False)
            except (av.FFmpegError, OSError) as exc:
                raise EngineError("the video cannot be cut there (seeking failed)") from exc
        return start_pts, end_pts, shift

    def frames(self, on_audio: Callable[[av.Packet], None] | None = None,
               stop: Callable[[], bool] | None = None) -> Iterator[tuple[av.VideoFrame, int]]:
        """Yield ``(frame, pts)`` in presentation order; pts in :attr:`time_base` units.

        Audio packets met while demuxing go to ``on_audio`` (up to the end of
        the last yielded frame when ``max_frames`` cuts the video short). With a
        segment (``start_s``/``end_s``) only its frames and audio come out, both
        shifted by ``start_s`` so that the segment starts at 0.
        """
        streams = [self.stream] + ([self.audio] if self.audio is not None and on_audio else [])
        last_pts: int | None = None
        step = max(1, int(round(1 / (float(self.rate) * float(self.time_base)))))
        end_time: float | None = None  # seconds (input timeline) where audio stops
        first = True
        shift_v = 0
        start_pts, end_pts, shift_a = (self.origin, None, 0)
        if self.segmented:
            start_pts, end_pts, shift_a = self._seek()
            shift_v = start_pts
            if end_pts is not None:
                end_time = float(end_pts * self.time_base)
        audio_start = float(start_pts * self.time_base)
        video_done = False
        try:
            for packet in self.container.demux(*streams):
                if stop is not None and stop():
                    return
                if packet.stream.type == "audio":
                    if packet.dts is None:
                        continue
                    if packet.pts is not None and self.segmented:
                        at = float(packet.pts * packet.time_base)
                        if at < audio_start - 1e-6:
                            continue  # before the segment (the seek lands on a keyframe)
                    if end_time is not None and packet.pts is not None \
                            and float(packet.pts * packet.time_base) >= end_time:
                        if video_done:
                            return
                        continue
                    if shift_a:
                        packet.pts -= shift_a
                        packet.dts -= shift_a
                    on_audio(packet)
                    continue
                if video_done:
                    continue
                for frame in packet.decode():
                    if first:
                        first = False
                        try:
                            rot = int(round(float(frame.rotation) / 90.0)) * 90 % 360
                        except Exception:  # noqa: BLE001 - older PyAV
                            rot = 0
                        self.rotation = rot or self.rotation
                        self.colorspace = int(frame.colorspace or 0) or None
                    pts = frame.pts
                    if self.segmented and pts is not None:
                        if pts < start_pts:
                            self.skipped += 1
                            continue
                        if end_pts is not None and pts >= end_pts:
                            video_done = True
                            break
                    if pts is not None:
                        pts -= shift_v
                    if pts is None or (last_pts is not None and pts <= last_pts):
                        pts = (last_pts + step) if last_pts is not None else 0
                    last_pts = pts
                    self.decoded += 1
                    yield self._convert(frame), pts
                    if self.max_frames and self.decoded >= self.max_frames:
                        cut = float((pts + shift_v + step) * self.time_base)
                        end_time = cut if end_time is None else min(end_time, cut)
                        video_done = True
                        break
                if video_done and (on_audio is None or self.audio is None):
                    return
        except EngineError:
            raise
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise EngineError(
                f"the video is corrupt or truncated (decoding failed after {self.decoded} frames)"
            ) from exc
        if video_done:
            return  # the audio ran out before the cut: nothing is missing
        if self.decoded == 0:
            if self.segmented:
                raise EngineError("there are no video frames between start_s and end_s")
            raise EngineError("the video has no decodable frames (corrupt or truncated file)")
        expected = self.total if self.segmented else self.header_frames
        if not self.max_frames and expected and self.decoded < 0.9 * expected:
            raise EngineError(
                f"the video is truncated or corrupt: only {self.decoded} of "
                f"{expected} frames could be decoded"
            )
