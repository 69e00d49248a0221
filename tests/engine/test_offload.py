"""The swap helper process: same pixels as in-thread, clean failure, no orphans."""

from __future__ import annotations

import copy
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import psutil
import pytest

from engine import EngineError, models
from engine.colorspace import matrix_for
from engine.decode import VideoReader, planes
from engine.offload import SwapHelper
from engine.pipeline import swap_video
from engine.source import load_source
from engine.swap import face_region, swap_face, swap_faces
from engine.track import Tracker

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _frames_with_faces(path: str, n: int):
    reader = VideoReader(path, max_frames=n)
    frames = [f for f, _ in reader.frames()]
    tracker = Tracker(many_faces=False, detect_every=10, search_every=5, max_side=640,
                      upsample=0)
    faces = [[t.pts.copy() for t in tracker.step(planes(f)[0], i)] for i, f in enumerate(frames)]
    matrix = matrix_for(reader.colorspace, frames[0].height)
    reader.close()
    return frames, faces, matrix


def test_swap_in_the_face_region_crop_equals_swap_in_the_frame(media):
    frames, faces, matrix = _frames_with_faces(media("talk_720p.mp4"), 3)
    y, u, v = (p.copy() for p in planes(frames[2]))
    pts = faces[2][0]
    h, w = y.shape
    x0, y0, x1, y1 = face_region(pts, w, h)
    assert x0 % 2 == 0 and y0 % 2 == 0 and (x1 - x0) % 2 == 0 and (y1 - y0) % 2 == 0
    crop = [y[y0:y1, x0:x1].copy(), u[y0 // 2:y1 // 2, x0 // 2:x1 // 2].copy(),
            v[y0 // 2:y1 // 2, x0 // 2:x1 // 2].copy()]
    whole = [y.copy(), u.copy(), v.copy()]
    for planes_, p in ((whole, pts), (crop, pts - np.array([x0, y0], np.float32))):
        src = load_source(media("face_obama.jpg"))
        src.to_yuv(matrix)
        swap_face(*planes_, p, src, morph=0.5, keep_mouth=False)
    # Outside the region nothing changed; inside, the crop got the same pixels
    # (up to rounding, and the liquify's sampling at the crop's very edge).
    changed = np.argwhere(whole[0] != y)
    assert len(changed) > 1000
    assert changed.min(0).tolist() >= [y0, x0] and changed.max(0).tolist() < [y1, x1]
    for a, b in zip(crop, (whole[0][y0:y1, x0:x1], whole[1][y0 // 2:y1 // 2, x0 // 2:x1 // 2],
                           whole[2][y0 // 2:y1 // 2, x0 // 2:x1 // 2]), strict=True):
        diff = np.abs(a.astype(int) - b.astype(int))
        assert diff.max() <= 2 and (diff > 1).mean() < 0.001 and diff.mean() < 0.01


def test_helper_and_thread_give_the_same_pixels(media):
    frames, faces, matrix = _frames_with_faces(media("talk_480sq_33s.mp4"), 12)
    here = [[p.copy() for p in planes(f)] for f in frames]
    there = [[p.copy() for p in planes(f)] for f in frames]
    src = load_source(media("face_obama.jpg"))
    src.to_yuv(matrix)
    sent = copy.deepcopy(src)  # the helper gets the source before the first swap
    for (y, u, v), pts in zip(here, faces, strict=True):
        swap_faces(y, u, v, pts, src, morph=0.5, keep_mouth=False)
    h, w = here[0][0].shape
    helper = SwapHelper(w, h)
    try:
        jobs = []
        for (y, u, v), pts in zip(there, faces, strict=True):
            jobs.append(helper.submit(y, u, v, pts, sent, morph=0.5, keep_mouth=False))
            if len(jobs) == helper.depth:
                helper.wait(jobs.pop(0))
        for job in jobs:
            helper.wait(job)
    finally:
        helper.close()
    changed = 0
    for a, b, f in zip(here, there, frames, strict=True):
        for pa, pb, orig in zip(a, b, planes(f), strict=True):
            assert np.array_equal(pa, pb)
            changed += int((pa != orig).sum())
    assert changed > 10000
    assert not mp.active_children()  # closed means gone


def test_helper_crash_fails_the_task_cleanly(media, tmp_path):
    out = tmp_path / "out.mp4"
    killed = []

    def progress(done: int, total: int, fps: float) -> None:
        if done >= 5 and not killed:
            for child in mp.active_children():
                if child.name == "faceswap-helper":
                    os.kill(child.pid, signal.SIGKILL)
                    killed.append(child.pid)

    with pytest.raises(EngineError, match="swap helper process stopped"):
        swap_video(media("face_woman.jpg"), media("talk_480sq_33s.mp4"), str(out),
                   progress=progress, helper=True)
    assert killed and not out.exists() and os.listdir(tmp_path) == []


def test_helper_exits_when_its_task_process_is_killed(media, tmp_path):
    out = tmp_path / "out.mp4"
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "swap", "--image", media("face_woman.jpg"),
         "--video", media("talk_480sq_33s.mp4"), "--out", str(out)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 60
        helpers = []
        while not helpers and time.monotonic() < deadline:
            helpers = [c for c in parent.children()
                       if "multiprocessing" in " ".join(c.cmdline())
                       and "resource_tracker" not in " ".join(c.cmdline())]
            time.sleep(0.1)
        assert helpers, "the CLI started no helper process"
        time.sleep(1.0)  # mid-swap
        proc.kill()
        proc.wait()
        gone, alive = psutil.wait_procs(helpers, timeout=10)
        assert not alive
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cached_detector_matches_dlibs_own(media, tmp_path, monkeypatch, read_video):
    import dlib

    grey = cv2.cvtColor(read_video(media("talk_720p.mp4"), 1)[0], cv2.COLOR_BGR2GRAY)
    expected = [(r.left(), r.top(), r.right(), r.bottom())
                for r in dlib.get_frontal_face_detector()(grey, 0)]
    assert expected
    monkeypatch.setenv("FACESWAP_CACHE_DIR", str(tmp_path / "cache"))
    first = models._hog_detector()  # builds and writes the copy
    assert os.listdir(tmp_path / "cache")
    second = models._hog_detector()  # loads the copy
    for det in (first, second):
        assert [(r.left(), r.top(), r.right(), r.bottom()) for r in det(grey, 0)] == expected
    # An unwritable cache folder only means the slow path every time.
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv("FACESWAP_CACHE_DIR", str(blocked / "sub"))
    assert len(models._hog_detector()(grey, 0)) == len(expected)
