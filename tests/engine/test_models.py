"""The shortened landmark predictor: an exact cut of dlib's file, close to the full model."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from engine import dlibfile, models
from engine.detect import detect_faces
from engine.landmarks import interocular, predict_landmarks


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    path = os.path.join(models.model_dir(), "shape_predictor_68_face_landmarks.dat")
    with open(path, "rb") as fh:
        return fh.read()


def test_cut_with_every_level_is_the_original_file(model_bytes):
    # The walk over the file found every boundary: copying all 15 levels back
    # together gives the same bytes, and a cut is a smaller file.
    assert dlibfile.truncate_shape_predictor(model_bytes, 15) == model_bytes
    assert len(dlibfile.truncate_shape_predictor(model_bytes, 10)) < 0.7 * len(model_bytes)


@pytest.mark.parametrize("bad", [b"", b"\x01\x02", b"\x01\x05abc", "cut"])
def test_a_file_that_is_not_a_predictor_is_refused(model_bytes, bad):
    data = model_bytes[: len(model_bytes) // 2] if bad == "cut" else bad
    with pytest.raises(ValueError, match="not a dlib shape predictor"):
        dlibfile.truncate_shape_predictor(data, 10)


def test_ten_levels_land_close_to_the_full_cascade(media, read_video, tmp_path, monkeypatch):
    monkeypatch.setenv("FACESWAP_CACHE_DIR", str(tmp_path / "cache"))
    full = os.path.join(models.model_dir(), "shape_predictor_68_face_landmarks.dat")
    short = models._short_predictor(full, 10)  # makes and stores the copy
    assert any(n.startswith("shape_predictor_68-10of15") for n in os.listdir(tmp_path / "cache"))
    errors = []
    for name in ("talk_720p.mp4", "talk_480sq_33s.mp4", "selfie_portrait_720x1280.mp4"):
        for bgr in read_video(media(name), 60)[::10]:
            grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
            for rect in detect_faces(grey)[:1]:
                ref = predict_landmarks(grey, rect)
                got = predict_landmarks(grey, rect, 10)
                errors.append(np.linalg.norm(got - ref, axis=1).mean() / interocular(ref))
    assert len(errors) >= 15
    # Measured 0.009-0.014 eye distances; the predictor's own jitter is ~0.035.
    assert float(np.mean(errors)) < 0.025
    assert max(errors) < 0.06
    # The stored copy is loaded next time (no new cut) and predicts the same.
    monkeypatch.setattr(dlibfile, "truncate_shape_predictor", None)
    again = models._short_predictor(full, 10)
    import dlib

    grey = np.ascontiguousarray(cv2.cvtColor(read_video(media("talk_720p.mp4"), 1)[0],
                                             cv2.COLOR_BGR2GRAY))
    rect = dlib.rectangle(*[int(v) for v in detect_faces(grey)[0]])
    assert [(p.x, p.y) for p in again(grey, rect).parts()] == \
        [(p.x, p.y) for p in short(grey, rect).parts()]


def test_an_unwritable_cache_still_gives_the_short_model(media, read_video, tmp_path,
                                                         monkeypatch):
    import dlib

    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv("FACESWAP_CACHE_DIR", str(blocked / "sub"))
    full = os.path.join(models.model_dir(), "shape_predictor_68_face_landmarks.dat")
    predictor = models._short_predictor(full, 10)  # cut into a temporary file
    grey = np.ascontiguousarray(cv2.cvtColor(read_video(media("talk_480sq_33s.mp4"), 1)[0],
                                             cv2.COLOR_BGR2GRAY))
    rect = dlib.rectangle(*[int(v) for v in detect_faces(grey)[0]])
    got = [(p.x, p.y) for p in predictor(grey, rect).parts()]
    assert len(got) == 68
    # Not the fallback to the full model (which gives other points on the same input).
    assert got != [(p.x, p.y) for p in dlib.shape_predictor(full)(grey, rect).parts()]


def _tracked_against_the_full_model(path: str, levels: int, frames: int = 300
                                    ) -> tuple[float, float]:
    """(median |mouth opening| error, eye-opening correlation) of the balanced tracker
    with a ``levels`` predictor against the full model on the detector's box, every
    third frame of the first ``frames`` (the looks benchmark's reference)."""
    import av

    from engine.blend import eye_aspect
    from engine.decode import planes
    from engine.photo import mouth_ratio
    from engine.pipeline import QUALITIES, make_tracker

    tracker = make_tracker(dict(QUALITIES["balanced"], levels=levels), False)
    mouth, eyes = [], []
    with av.open(path) as c:
        for i, frame in zip(range(frames), c.decode(video=0), strict=False):
            y = np.ascontiguousarray(planes(frame)[0])
            tracks = tracker.step(y, i)
            boxes = detect_faces(y) if i % 3 == 0 and tracks else []
            if boxes:
                ref, got = predict_landmarks(y, boxes[0]), tracks[0].pts
                mouth.append(abs(mouth_ratio(got) - mouth_ratio(ref)))
                eyes.append([eye_aspect(p[36:42]) + eye_aspect(p[42:48]) for p in (ref, got)])
    assert len(mouth) >= 90
    return float(np.median(mouth)), float(np.corrcoef(np.array(eyes).T)[0, 1])


def test_the_balanced_tracker_follows_the_mouth_and_eyes_of_the_full_model(media):
    # talk_480sq's strong expressions: with the cascade cut to 10 levels the tracker's
    # mouth opening was 0.031 of the mouth width off the full model's (median, first
    # 300 frames) and its eye openings correlated 0.56 with it; with balanced's 13
    # levels 0.014 and 0.72 (0.040 -> 0.022 and 0.75 -> 0.80 over the whole clip).
    from engine.pipeline import QUALITIES

    path = media("talk_480sq_33s.mp4")
    mouth, eyes = _tracked_against_the_full_model(path, QUALITIES["balanced"]["levels"])
    assert mouth < 0.02 and eyes > 0.65, (mouth, eyes)
    cut_mouth, cut_eyes = _tracked_against_the_full_model(path, 10)  # the control
    assert cut_mouth > 0.025 and cut_eyes < 0.65, (cut_mouth, cut_eyes)
