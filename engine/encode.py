"""Encoding: H.264 yuv420p MP4 (faststart), audio copied or re-encoded, atomic rename.

The file is written under a hidden temporary name in the destination folder
and renamed only after the muxer closed it, so the final path never holds a
half-written file; :meth:`VideoWriter.abort` removes the temporary file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from fractions import Fraction

import av

from .errors import EngineError

#: Audio codecs the MP4 muxer stores as they are; others are re-encoded to AAC.
MP4_AUDIO = {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"}

#: Written into every output: the file is AI-generated.
LABEL = {
    "comment": "AI-generated: the face in this video was replaced by a face-swap engine",
    "synthetic": "true",
    "ai_generated": "true",
}

ENCODER = "libx264"

#: x264 options on top of ``veryfast`` that the ``fast`` and ``balanced`` swaps use:
#: diamond motion search, the cheapest sub-pixel refinement, inter blocks of
#: 16x16 only. With crf one step lower they keep the decoded input's fidelity
#: (BGR PSNR of the re-encoded frames against the input's, min / mean over the
#: clip: talk_480sq 43.85 / 45.40 dB against 43.85 / 45.28 with veryfast crf 15,
#: talk_720p 44.43 / 46.26 against 44.46 / 45.77, the faceless test clip 42.04 /
#: 43.77 against 41.84 / 43.57) at about 40 % less x264 time (480x480: 5.2 -> 3.2 ms
#: a frame with decoding; 720p: 14.5 -> 9.3 ms), files 10-30 % larger. ``superfast``
#: at crf 17 gives the same fidelity at the same cost, with files up to 45 % larger
#: (it also drops x264's macroblock tree).
FAST_SEARCH = "me=dia:subme=1:partitions=i8x8,i4x4"


class VideoWriter:
    """Writes one output file; used from a single (encoder) thread."""

    def __init__(self, out_path: str, *, preset: str, crf: int,
                 audio_in: av.audio.stream.AudioStream | None,
                 x264_params: str | None = None) -> None:
        """``x264_params``: x264's own ``key=value:...`` options on top of ``preset``
        (e.g. :data:`FAST_SEARCH`)."""
        self.out_path = out_path
        folder = os.path.dirname(os.path.abspath(out_path))
        if not os.path.isdir(folder):
            raise EngineError("the output folder does not exist")
        fd, self.temp_path = tempfile.mkstemp(
            dir=folder, prefix="." + os.path.basename(out_path) + ".", suffix=".part")
        os.close(fd)
        self.preset, self.crf, self.x264_params = preset, crf, x264_params
        self.audio_in = audio_in
        self.container = av.open(self.temp_path, mode="w", format="mp4",
                                 options={"movflags": "+faststart+use_metadata_tags"})
        self.container.metadata.update(LABEL)
        self.video = None
        self.audio = None
        self.copy_audio = False
        self.frames = 0
        self.time_base = Fraction(1, 90000)

    def open_video(self, width: int, height: int, rate: Fraction, time_base: Fraction,
                   colour: dict | None = None) -> None:
        """Add the streams (on the first frame, when the size is known)."""
        v = self.container.add_stream(ENCODER, rate=rate)
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        v.time_base = time_base
        v.codec_context.time_base = time_base
        # The muxer may change the stream's time base when it writes the
        # header (MP4 wants >= 10000 ticks a second); frames keep the input's.
        self.time_base = time_base
        v.codec_context.thread_count = 0
        v.options = {"preset": self.preset, "crf": str(self.crf)}
        if self.x264_params:
            v.options["x264-params"] = self.x264_params
        for key, value in (colour or {}).items():
            try:
                setattr(v.codec_context, key, value)
            except (AttributeError, TypeError, ValueError):
                pass
        self.video = v
        a = self.audio_in
        if a is not None:
            if a.codec_context.name in MP4_AUDIO:
                self.audio = self.container.add_stream_from_template(a)
                self.copy_audio = True
            else:
                rate_hz = a.codec_context.sample_rate or 48000
                channels = getattr(a.codec_context, "channels", 2) or 2
                # PyAV resamples decoded frames to the encoder's format/layout.
                self.audio = self.container.add_stream(
                    "aac", rate=rate_hz, layout="mono" if channels == 1 else "stereo")

    def write(self, frame: av.VideoFrame, pts: int) -> None:
        frame.pts = pts
        frame.time_base = self.time_base
        frame.pict_type = av.video.frame.PictureType.NONE  # don't inherit the input's I/P/B
        for packet in self.video.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def write_audio(self, packets: Iterable[av.Packet]) -> None:
        if self.audio is None:
            return
        for packet in packets:
            if self.copy_audio:
                packet.stream = self.audio
                self.container.mux(packet)
            else:
                for frame in packet.decode():
                    frame.pts = None
                    for out in self.audio.encode(frame):
                        self.container.mux(out)

    def finish(self) -> None:
        """Flush encoders, close the file and move it to its final path."""
        if self.video is not None:
            for packet in self.video.encode(None):
                self.container.mux(packet)
        if self.audio is not None and not self.copy_audio:
            for packet in self.audio.encode(None):
                self.container.mux(packet)
        self.container.close()
        os.replace(self.temp_path, self.out_path)

    def abort(self) -> None:
        """Close quietly and delete the temporary file."""
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - already failing; the file is deleted anyway
            pass
        try:
            os.unlink(self.temp_path)
        except FileNotFoundError:
            pass
