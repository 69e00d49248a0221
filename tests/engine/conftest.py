"""Fixtures for the engine tests: the shared test media and synthetic inputs.

Media are read from $FACESWAP_TESTDATA or <repo>/../shared/testdata (never
copied into the repository); synthetic inputs (other codecs, odd sizes,
rotation, no faces, corrupt files) are generated with PyAV into tmp_path.
"""

from __future__ import annotations

import os
import sys
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:  # the engine package lives at the repository root
    sys.path.insert(0, ROOT)


def _testdata() -> str:
    return os.environ.get("FACESWAP_TESTDATA") or os.path.join(ROOT, "..", "shared", "testdata")


@pytest.fixture(scope="session")
def media():
    """Return ``media(name)`` -> path of a shared test file (skips when the folder is absent)."""
    folder = _testdata()
    if not os.path.isdir(folder):
        pytest.skip(f"shared test media not found at {folder} (set FACESWAP_TESTDATA)")

    def path(name: str) -> str:
        p = os.path.join(folder, name)
        if not os.path.exists(p):
            pytest.skip(f"test media file {name} missing from {folder}")
        return p

    return path


def read_bgr(path: str, limit: int | None = None) -> list[np.ndarray]:
    """Decode a video to BGR frames (display orientation as stored)."""
    out = []
    with av.open(path) as c:
        for f in c.decode(video=0):
            out.append(f.to_ndarray(format="bgr24"))
            if limit and len(out) >= limit:
                break
    return out


def write_video(path: str, frames: list[np.ndarray], *, codec: str = "libx264",
                fmt: str | None = None, rate: Fraction | int = 30, audio: str | None = None,
                rotation: int = 0, pix_fmt: str = "yuv420p") -> str:
    """Encode BGR ``frames`` with PyAV; optional sine-tone audio in codec ``audio``."""
    h, w = frames[0].shape[:2]
    with av.open(path, "w", format=fmt) as oc:
        vs = oc.add_stream(codec, rate=rate)
        vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
        if rotation:
            vs.set_display_rotation(rotation)
        a_stream = None
        if audio:
            a_stream = oc.add_stream(audio, rate=48000)
            try:
                a_stream.layout = "stereo"
            except (AttributeError, ValueError):
                pass
        for i, img in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")
            vf.pts = i
            vf.time_base = Fraction(1, 1) / Fraction(rate)
            for p in vs.encode(vf):
                oc.mux(p)
        for p in vs.encode(None):
            oc.mux(p)
        if a_stream is not None:
            duration = len(frames) / float(rate)
            fs = a_stream.codec_context.frame_size or 1024
            n = int(duration * 48000)
            t = np.arange(n) / 48000.0
            tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            fmt_name = a_stream.codec_context.format.name
            for start in range(0, n, fs):
                chunk = tone[start:start + fs]
                if len(chunk) < fs:
                    chunk = np.pad(chunk, (0, fs - len(chunk)))
                if fmt_name.endswith("p"):
                    data = np.stack([chunk, chunk])
                else:
                    data = np.stack([chunk, chunk], axis=1).reshape(1, -1)
                if fmt_name.startswith("s16"):
                    data = (data * 32767).astype(np.int16)
                af = av.AudioFrame.from_ndarray(data, format=fmt_name, layout="stereo")
                af.sample_rate = 48000
                af.pts = start
                af.time_base = Fraction(1, 48000)
                for p in a_stream.encode(af):
                    oc.mux(p)
            for p in a_stream.encode(None):
                oc.mux(p)
    return path


@pytest.fixture(scope="session")
def face_frames(media):
    """First 24 frames of talk_480sq_33s.mp4 at 320x320 (a real face, small and fast)."""
    frames = read_bgr(media("talk_480sq_33s.mp4"), limit=24)
    return [cv2.resize(f, (320, 320), interpolation=cv2.INTER_AREA) for f in frames]


@pytest.fixture(scope="session")
def faceless_frames():
    """24 frames of a moving colour gradient with texture: no face anywhere."""
    h, w = 240, 320
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 12, (h, w, 1)).astype(np.float32)
    frames = []
    for i in range(24):
        b = 128 + 100 * np.sin((xx + 4 * i) / 37.0)
        g = 128 + 100 * np.cos((yy - 3 * i) / 23.0)
        r = 128 + 80 * np.sin((xx + yy + 5 * i) / 51.0)
        img = np.dstack([b, g, r]) + noise - 6
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames


@pytest.fixture(scope="session")
def make_video():
    """The :func:`write_video` helper, as a fixture (tests/engine is not a package)."""
    return write_video


@pytest.fixture(scope="session")
def read_video():
    """The :func:`read_bgr` helper, as a fixture."""
    return read_bgr
