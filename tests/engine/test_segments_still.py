"""Segments (``start_s``/``end_s``) in the reader and the pipeline, and photo targets
(``engine.still``), on cuts of the shared media made here."""

from __future__ import annotations

import os
import sys

import av
import cv2
import numpy as np
import pytest

import engine
from engine.decode import VideoReader, planes
from engine.source import find_faces

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from tests.media import cut_clip  # noqa: E402


@pytest.fixture(scope="module")
def four_s(media, tmp_path_factory) -> str:
    """The first 4 s of the talking-head clip (121 frames at 30 fps, AAC audio)."""
    folder = tmp_path_factory.mktemp("seg")
    return str(cut_clip(media("talk_480sq_33s.mp4"), folder / "four.mp4", 4.0))


def test_a_late_start_seeks_to_the_keyframe_before_it(media):
    # talk_480sq_33s has a keyframe every 250 frames (8.3 s): from 20 s on, the reader
    # decodes from the one at 16.7 s, not the 600 frames from the start.
    reader = VideoReader(media("talk_480sq_33s.mp4"), start_s=20.0, end_s=21.0)
    audio: list = []
    try:
        frames = list(reader.frames(on_audio=audio.append))
    finally:
        reader.close()
    assert len(frames) == 30 and reader.total == 30
    assert 0 < reader.skipped < 250, reader.skipped
    step = frames[1][1] - frames[0][1]
    assert frames[0][1] == 0 and [p for _, p in frames] == list(range(0, 30 * step, step))
    tb = audio[0].time_base
    first = float(audio[0].pts * tb)
    last_end = float((audio[-1].pts + audio[-1].duration) * tb)
    assert 0 <= first < 1 / 30 and abs(last_end - 1.0) < 1 / 30, (first, last_end)


def test_segment_frames_are_the_frames_at_those_times(four_s):
    """The first frame of a 1.0 s start is frame 30 of a plain decode, pixel for pixel."""
    with av.open(four_s) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == 30:
                expected = frame.to_ndarray(format="yuv420p")
                break
    reader = VideoReader(four_s, start_s=1.0, end_s=1.2)
    try:
        frames = list(reader.frames())
    finally:
        reader.close()
    assert len(frames) == 6
    y, u, v = planes(frames[0][0])
    h = y.shape[0]
    assert np.array_equal(y, expected[:h]), "not the frame at 1.0 s"


def test_bad_and_empty_segments_are_clear_errors(four_s):
    with pytest.raises(engine.EngineError, match="negative"):
        VideoReader(four_s, start_s=-1.0)
    with pytest.raises(engine.EngineError, match="after start_s"):
        VideoReader(four_s, start_s=2.0, end_s=1.0)
    reader = VideoReader(four_s, start_s=50.0, end_s=51.0)
    try:
        with pytest.raises(engine.EngineError, match="no video frames between"):
            list(reader.frames())
    finally:
        reader.close()


def test_swap_of_a_segment_has_its_length_and_audio_in_sync(media, four_s, tmp_path):
    out = tmp_path / "seg.mp4"
    result = engine.swap_video(media("face_obama.jpg"), four_s, str(out), quality="fast",
                               start_s=2.0, end_s=3.0)
    assert result["frames"] == 30 and result["swapped_frames"] >= 25, result
    with av.open(str(out)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        v_start, v_dur = float(v.start_time * v.time_base), float(v.duration * v.time_base)
        a_start, a_dur = float(a.start_time * a.time_base), float(a.duration * a.time_base)
        assert sum(1 for _ in c.decode(v)) == 30
    assert abs(v_start) < 1e-6 and abs(v_dur - 1.0) < 1e-6
    assert abs(a_start - v_start) <= 1 / 30 and abs(a_dur - v_dur) <= 1 / 30, (a_start, a_dur)
    assert sorted(os.listdir(tmp_path)) == ["seg.mp4"]


# -- photo targets -------------------------------------------------------------------
def _face_share_changed(before: np.ndarray, after: np.ndarray) -> tuple[float, np.ndarray]:
    """(share of the face box changed by > 12 levels, differences away from the face)."""
    diff = np.abs(before.astype(np.int16) - after.astype(np.int16)).max(axis=2)
    x0, y0, x1, y1 = (int(c) for c in find_faces(before)[0])
    inside = float((diff[y0:y1, x0:x1] > 12).mean())
    dx, dy = (x1 - x0) * 0.6, (y1 - y0) * 0.6
    away = diff.copy()
    away[max(0, int(y0 - dy)):int(y1 + dy), max(0, int(x0 - dx)):int(x1 + dx)] = -1
    return inside, away[away >= 0]


def test_swap_image_changes_the_face_only_and_writes_atomically(media, tmp_path):
    # An odd-sized PNG target (the 4:2:0 planes need even sizes: padded, then cut again).
    target = cv2.imread(media("two_people.jpg"))[:-1, :-1]
    src = tmp_path / "group.png"
    cv2.imwrite(str(src), target)
    out = tmp_path / "out.png"
    result = engine.swap_image(media("face_obama.jpg"), str(src), str(out), quality="fast")
    assert (result["frames"], result["swapped_frames"], result["faces"]) == (1, 1, 1)
    assert (result["width"], result["height"]) == (target.shape[1], target.shape[0])
    data = out.read_bytes()
    assert b"tEXt" in data[:200] and b"AI-generated" in data
    after = cv2.imread(str(out))
    assert after.shape == target.shape
    inside, away = _face_share_changed(target, after)
    assert inside > 0.2 and away.max() == 0, (inside, away.max())
    # many_faces: the other person changes too
    both = tmp_path / "both.png"
    result = engine.swap_image(media("face_obama.jpg"), str(src), str(both), many_faces=True,
                               quality="fast")
    assert result["faces"] == 2
    changed = np.abs(cv2.imread(str(both)).astype(int) - after.astype(int)).max(axis=2) > 12
    assert changed[:, : target.shape[1] // 2].mean() > 0.005  # the left person, untouched before
    assert sorted(os.listdir(tmp_path)) == ["both.png", "group.png", "out.png"]


def test_swap_image_without_a_face_and_bad_outputs(media, tmp_path):
    dog = cv2.imread(media("no_human_face_dog.jpg"))[:128, :128]
    src = tmp_path / "dog.png"
    cv2.imwrite(str(src), dog)
    result = engine.swap_image(media("face_obama.jpg"), str(src), str(tmp_path / "o.png"),
                               quality="fast")
    assert result["swapped_frames"] == 0 and result["faces"] == 0
    assert np.array_equal(cv2.imread(str(tmp_path / "o.png")), dog)
    with pytest.raises(engine.EngineError, match=".jpg or .png"):
        engine.swap_image(media("face_obama.jpg"), str(src), str(tmp_path / "o.mp4"))
    with pytest.raises(engine.EngineError, match="no face found in the image"):
        engine.swap_image(str(src), str(src), str(tmp_path / "x.jpg"))
    with pytest.raises(engine.Cancelled):
        engine.swap_image(media("face_obama.jpg"), str(src), str(tmp_path / "c.jpg"),
                          should_cancel=lambda: True)
    assert sorted(os.listdir(tmp_path)) == ["dog.png", "o.png"]


def test_run_swap_takes_the_job_fields_of_either_kind(media, four_s, tmp_path):
    """What both dispatchers call: one dict of Job fields."""
    from dataclasses import asdict

    from engine.dispatch import Job

    job = Job(task_id="t", image_path=media("face_obama.jpg"), video_path=four_s,
              out_path=str(tmp_path / "v.mp4"), quality="fast", start_s=3.5)
    assert engine.run_swap(asdict(job))["frames"] == 16  # 3.5 s to the end (4.03 s)
    job = Job(task_id="t", image_path=media("face_obama.jpg"), video_path=media("face_woman.jpg"),
              out_path=str(tmp_path / "p.jpg"), quality="fast", target_kind="image")
    seen = []
    assert engine.run_swap(asdict(job), progress=lambda *p: seen.append(p))["swapped_frames"] == 1
    assert seen[-1][:2] == (1, 1)
    assert cv2.imread(str(tmp_path / "p.jpg")).shape == cv2.imread(media("face_woman.jpg")).shape
    with pytest.raises(engine.EngineError, match="unknown target kind"):
        engine.run_swap({**asdict(job), "target_kind": "audio"})
