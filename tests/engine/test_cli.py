"""``python -m engine swap`` as a user runs it: JSON on success, exit 2 and one line on failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction

import av

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", "swap", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_success(media, tmp_path):
    out = tmp_path / "out.mp4"
    p = run("--image", media("face_obama.jpg"), "--video", media("stage_multi_360p.mp4"),
            "--out", str(out), "--max-frames", "45", "--quality", "fast")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1
    res = json.loads(lines[0])
    assert res["frames"] == 45 and 0 <= res["swapped_frames"] <= 45
    assert res["seconds"] > 0 and res["fps"] > 0
    # The photo's findings: Obama's smile shows teeth; nothing else is wrong with it.
    assert [w["code"] for w in res["warnings"]] == ["photo_mouth_open"]
    assert all(w["msg"] for w in res["warnings"])
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert v.average_rate == Fraction(2997, 100)  # the input says 29.97, exactly so
        assert sum(1 for _ in c.decode(v)) == 45
        assert [a.codec_context.name for a in c.streams.audio] == ["aac"]
        assert c.metadata.get("synthetic") == "true"
    assert os.listdir(tmp_path) == ["out.mp4"]


def test_cli_no_face_image(media, tmp_path):
    out = tmp_path / "out.mp4"
    p = run("--image", media("no_human_face_dog.jpg"), "--video", media("talk_720p.mp4"),
            "--out", str(out))
    assert p.returncode == 2
    last = p.stderr.strip().splitlines()[-1]
    assert last == "error: no face found in the image"
    assert p.stdout == "" and not out.exists()


def test_cli_corrupt_video(media, tmp_path):
    bad = tmp_path / "bad.mov"
    bad.write_bytes(b"\x00\x00\x00\x18ftypqt  " + os.urandom(20000))
    p = run("--image", media("face_woman.jpg"), "--video", str(bad),
            "--out", str(tmp_path / "o.mp4"))
    assert p.returncode == 2
    assert p.stderr.strip().splitlines()[-1].startswith("error: ")
    assert sorted(os.listdir(tmp_path)) == ["bad.mov"]


def test_cli_segment_and_photo_target(media, tmp_path):
    """``--start``/``--end`` cut the video; a photo as ``--video`` gives a photo."""
    out = tmp_path / "seg.mp4"
    p = run("--image", media("face_obama.jpg"), "--video", media("stage_multi_360p.mp4"),
            "--out", str(out), "--start", "3", "--end", "4", "--quality", "fast")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["frames"] == 30
    with av.open(str(out)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert sum(1 for _ in c.decode(v)) == 30
        # the clip's video starts at 0.85 s, its audio at 0: the cut starts both at 0
        assert abs(float(v.start_time * v.time_base)) < 1 / 30
        assert abs(float(a.start_time * a.time_base)) < 1 / 30
        assert abs(float(v.duration * v.time_base) - float(a.duration * a.time_base)) < 1 / 30
    photo = tmp_path / "photo.png"
    p = run("--image", media("face_obama.jpg"), "--video", media("face_woman.jpg"),
            "--out", str(photo), "--quality", "fast")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert (res["frames"], res["swapped_frames"]) == (1, 1)
    assert photo.read_bytes().startswith(b"\x89PNG")
    p = run("--image", media("face_obama.jpg"), "--video", media("face_woman.jpg"),
            "--out", str(tmp_path / "x.png"), "--start", "1")
    assert p.returncode == 2 and "apply to a video" in p.stderr
    assert sorted(os.listdir(tmp_path)) == ["photo.png", "seg.mp4"]
