"""The face library (engine/library.py): views judged and left out with their reasons, a set
of two people refused, the choice of view per frame (hysteresis, cross-fades), and the CLI
with repeated ``--image`` and with ``--face-video``.

Views are made from the shared media: rotations of one portrait (distinct head rolls), a
blurred and a shrunk copy, another person's portrait, frames of the selfie clip (which
blinks) with blurred and faceless frames put in between.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from engine import library
from engine.errors import EngineError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def rotated(img: np.ndarray, deg: float) -> np.ndarray:
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
    return cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE)


@pytest.fixture(scope="module")
def photos(media, tmp_path_factory) -> list[str]:
    """Five rolls of one woman, then her photo blurred, shrunk, and another person."""
    folder = tmp_path_factory.mktemp("photos")
    woman = cv2.imread(media("face_woman.jpg"))
    images = [rotated(woman, d) for d in (-20, -10, 0, 10, 20)]
    images.append(cv2.GaussianBlur(woman, (0, 0), 4))
    images.append(cv2.resize(woman, None, fx=0.35, fy=0.35, interpolation=cv2.INTER_AREA))
    images.append(cv2.imread(media("face_obama.jpg")))
    paths = []
    for i, img in enumerate(images):
        paths.append(str(folder / f"p{i}.png"))
        cv2.imwrite(paths[-1], img)
    return paths


@pytest.fixture(scope="module")
def candidates(photos) -> list[library.View]:
    return library.photo_candidates(photos, levels=10)


def test_photo_set_views_left_out_and_why(candidates):
    lib = library.build_library(copy.deepcopy(candidates))
    assert lib.left_out == {"photo 6": "blurred", "photo 7": "too_small",
                            "photo 8": "other_person"}
    assert len(lib.faces) == 5 and lib.kept == [0, 1, 2, 3, 4]
    # The rolls are measured as such (roll is the eye line's angle; image y points down).
    rolls = [lib.views[i].roll for i in lib.kept]
    assert np.all(np.diff(rolls) < -7), rolls
    codes = [w["code"] for w in lib.warnings]
    assert "faces_views_left_out" in codes
    msg = next(w["msg"] for w in lib.warnings if w["code"] == "faces_views_left_out")
    assert "photo 8: another person" in msg and "photo 6: blurred" in msg
    # Only rolls (which the warp undoes) differ: one pose, and the set says so.
    assert "faces_one_pose" in codes
    assert all(v.image is None and v.report is None for v in lib.views)  # nothing heavy kept


def test_closed_eyes_and_covered_views_left_out(candidates):
    """The rules on measured views, with one view's eye opening and another's finding
    changed (measuring them is engine/photo.py's, tested there)."""
    views = copy.deepcopy(candidates[:5])
    views[1].ear = 0.12
    views[3].codes = views[3].codes + ["photo_face_covered"]
    lib = library.build_library(views)
    assert lib.left_out == {"photo 2": "eyes_closed", "photo 4": "covered"}
    # Closed eyes are left out only where the person otherwise has them open.
    closed = copy.deepcopy(candidates[:3])
    for v in closed:
        v.ear = 0.12
    assert library.build_library(closed).left_out == {}


def test_two_people_refused(candidates):
    for views in ([candidates[2], candidates[7]],
                  [candidates[0], candidates[2], candidates[4], candidates[7]]):
        with pytest.raises(EngineError) as err:
            library.build_library(copy.deepcopy(views))
        assert err.value.code == "faces_not_same_person"
        assert "photo" in str(err.value)


def test_no_usable_view_refused():
    views = [library.View("photo 1", "no_face"), library.View("photo 2", "turned")]
    with pytest.raises(EngineError) as err:
        library.build_library(views)
    assert err.value.code == "faces_none_usable"
    assert "1 no face found" in str(err.value) and "turned too far" in str(err.value)


@pytest.fixture(scope="module")
def face_clip(media, make_video, read_video, tmp_path_factory) -> str:
    """4 s of the selfie clip at 5 fps, 360x640: blinks at 1.4 and 3.4 s; frames 5 and 6
    blurred, frame 12 blank."""
    frames = read_video(media("selfie_portrait_720x1280.mp4"), 120)[::6]
    frames = [cv2.resize(f, (360, 640), interpolation=cv2.INTER_AREA) for f in frames]
    for i in (5, 6):
        frames[i] = cv2.GaussianBlur(frames[i], (0, 0), 3)
    frames[12] = np.full_like(frames[12], 128)
    path = str(tmp_path_factory.mktemp("clip") / "face.mp4")
    return make_video(path, frames, rate=5)


def test_video_library_views_left_out_and_why(face_clip):
    views = library.video_candidates(face_clip, levels=10)
    assert [v.origin for v in views][:3] == ["frame at 0.00 s", "frame at 0.20 s",
                                             "frame at 0.40 s"]
    assert len(views) == 20
    lib = library.build_library(views)
    out = lib.left_out
    assert out["frame at 1.00 s"] == out["frame at 1.20 s"] == "blurred"
    assert out["frame at 2.40 s"] == "no_face"
    assert out["frame at 3.40 s"] == "eyes_closed"
    assert set(out.values()) <= {"blurred", "no_face", "eyes_closed", "similar"}
    assert len(lib.faces) >= 4
    assert all(lib.views[i].reason is None for i in lib.kept)
    # The kept views differ in expression: the clip talks.
    mars = [lib.views[i].mar for i in lib.kept]
    assert max(mars) - min(mars) > 0.1


def test_face_video_too_long_refused(make_video, tmp_path):
    frames = [np.full((64, 64, 3), 90, np.uint8)] * 32
    path = make_video(str(tmp_path / "long.mp4"), frames, rate=1)
    with pytest.raises(EngineError) as err:
        library.video_candidates(path)
    assert err.value.code == "face_video_too_long"


# -- the choice per frame -----------------------------------------------------------------
def _feats(rows: list[tuple]) -> np.ndarray:
    return np.stack([library.features(*r) for r in rows])


VIEWS = _feats([(-20, 0, 0, 1.0, 0.0, 0.33), (0, 0, 0, 1.0, 0.0, 0.33),
                (20, 0, 0, 1.0, 0.0, 0.33), (0, 0, 0, 1.0, 0.25, 0.33)])


def test_choice_steady_target_does_not_flicker():
    """A target halfway between two views, with landmark jitter (2 degrees of yaw, more
    than the tracked landmarks show): one view, no flip-flop."""
    rng = np.random.default_rng(1)
    ch = library.ViewChooser(VIEWS)
    picks = []
    for _ in range(300):
        f = library.features(10 + rng.normal(0, 2), rng.normal(0, 1.5), rng.normal(0, 1.5),
                             1.0 + rng.normal(0, 0.05), abs(rng.normal(0, 0.02)), 0.33)
        picks.append(ch.choose(f))
    assert ch.switches == 0
    assert all(p == ((picks[0][0][0], 1.0),) for p in picks)
    assert picks[0][0][0] in (1, 2)


def test_choice_follows_a_turn_and_a_mouth_with_cross_fades():
    ch = library.ViewChooser(VIEWS)
    choices = [ch.choose(library.features(yaw, 0, 0, 1.0, 0.0, 0.33))
               for yaw in np.linspace(-25, 25, 90)]
    main = [c[0][0] for c in choices]
    assert main[0] == 0 and main[-1] == 2
    assert ch.switches == 2 and 1 in main  # -20 -> 0 -> 20, in order, once each
    assert main == sorted(main)
    # After each change a cross-fade: two views, the new one's weight rising to 1.
    starts = [i for i in range(1, len(main)) if main[i] != main[i - 1]]
    for s in starts:
        fade = choices[s:s + library.FADE_FRAMES]
        assert all(len(c) == 2 and abs(c[0][1] + c[1][1] - 1) < 1e-6 for c in fade)
        weights = [c[0][1] for c in fade]
        assert weights == sorted(weights) and 0 < weights[0] < 0.5 < weights[-1] < 1
        assert len(choices[s + library.FADE_FRAMES]) == 1
    # An opening mouth (the pose frontal) brings the open-mouthed view.
    ch = library.ViewChooser(VIEWS)
    picks = [ch.choose(library.features(0, 0, 0, 1.0, m, 0.33))[0][0]
             for m in [0.0] * 20 + [0.25] * 30]
    assert picks[0] == 1 and picks[-1] == 3 and ch.switches == 1


def test_choice_holds_a_view_for_a_while():
    """A target that alternates every few frames between two views' poses does not drag
    the choice along at that rate (minimum dwell)."""
    ch = library.ViewChooser(VIEWS)
    for i in range(200):
        ch.choose(library.features(-20 if (i // 4) % 2 else 20, 0, 0, 1.0, 0.0, 0.33))
    assert ch.switches <= 200 // library.MIN_DWELL


# -- the command line ---------------------------------------------------------------------
def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", "swap", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_repeated_image(photos, media, tmp_path):
    out = tmp_path / "out.mp4"
    p = run("--image", photos[0], "--image", photos[2], "--image", photos[4], "--image",
            photos[5], "--video", media("talk_480sq_33s.mp4"), "--out", str(out),
            "--max-frames", "12", "--quality", "fast")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["frames"] == 12 and res["swapped_frames"] == 12
    assert res["face_views"] == 3  # the blurred photo left out, and said so
    assert "faces_views_left_out" in [w["code"] for w in res["warnings"]]
    assert os.listdir(tmp_path) == ["out.mp4"]
    two = run("--image", photos[2], "--image", photos[7], "--video",
              media("talk_480sq_33s.mp4"), "--out", str(tmp_path / "two.mp4"))
    assert two.returncode == 2
    assert two.stderr.strip().splitlines()[-1].startswith("error: the views show different")
    assert os.listdir(tmp_path) == ["out.mp4"]


def test_cli_face_video(face_clip, media, read_video, tmp_path):
    out = tmp_path / "out.mp4"
    p = run("--face-video", face_clip, "--video", media("talk_480sq_33s.mp4"), "--out",
            str(out), "--max-frames", "40", "--quality", "fast", "--stats")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["frames"] == 40 and res["swapped_frames"] == 40
    assert res["face_views"] >= 4
    assert res["view_changes"] == len(res["view_changes_at"])
    assert len(read_video(str(out))) == 40
    both = run("--face-video", face_clip, "--image", media("face_woman.jpg"), "--video",
               media("talk_480sq_33s.mp4"), "--out", str(tmp_path / "x.mp4"))
    assert both.returncode == 2 and "--face-video" in both.stderr


def test_preview_with_several_photos(photos, media, tmp_path):
    """The preview takes a face library as the task does: its frame is swapped (differs
    from the original around the face) and the set's warnings come with it."""
    from engine.preview import preview_frame

    shown, original = str(tmp_path / "p.jpg"), str(tmp_path / "o.jpg")
    info = preview_frame([photos[0], photos[2], photos[5]], media("talk_480sq_33s.mp4"), 2.0,
                         preview_path=shown, original_path=original, quality="fast")
    assert info["faces"] == 1
    assert "faces_views_left_out" in [w["code"] for w in info["warnings"]]
    a, b = cv2.imread(shown).astype(np.float32), cv2.imread(original).astype(np.float32)
    diff = np.abs(a - b).mean(axis=2)
    assert diff.max() > 40  # the face changed
    assert np.median(diff) < 3  # the rest did not (JPEG noise only)
