"""A skin-coloured hand passing in front of the face stays in front of the swapped face.

The hand is composited onto real frames of the talking-head clip the way the
engine benchmark's case does (``bench/engine_bench.hand_clip``: a palm and four
fingers, shaded, moving left to right), then the frames are tracked and swapped
with and without the tracks' covers (``FaceTrack.cover``, see ``blend.look_cover``).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine import blend
from engine.colorspace import bgr_to_yuv
from engine.pipeline import QUALITIES, make_tracker
from engine.source import load_source
from engine.swap import swap_faces

#: Frames of the clip used; the hand moves as if it crossed the frame in 90.
FRAMES, CROSS = 64, 90
#: Frames before this are tracked only (the hand reaches the face's region at ~28).
SWAP_FROM = 26


def _hand(img: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray]:
    """``img`` with the hand at its place in frame ``i``, and the hand's mask."""
    h, w = img.shape[:2]
    m = np.zeros((h, w), np.uint8)
    cx = int(w * (0.1 + 0.8 * i / CROSS))
    cy, r = int(h * 0.55), int(min(w, h) * 0.11)
    cv2.ellipse(m, (cx, cy), (r, int(r * 1.2)), 0, 0, 360, 255, -1)
    for k in range(4):
        fx = cx - r + k * (2 * r // 3)
        cv2.line(m, (fx, cy), (fx + r // 4, cy - int(2.3 * r)), 255, max(3, r // 3))
    shade = np.linspace(0.85, 1.1, w, dtype=np.float32)[None, :, None]
    hand = np.clip(np.array([120, 150, 205], np.float32) * shade, 0, 255)
    a = cv2.GaussianBlur(m, (0, 0), 1.5)[..., None].astype(np.float32) / 255
    return (img * (1 - a) + hand * a).astype(np.uint8), m > 128


@pytest.fixture(scope="module")
def hand_run(media, read_video):
    """Per frame: (hand mask, luma in, luma swapped with covers, luma swapped without,
    whether the face had a cover)."""
    src = load_source(media("face_obama.jpg"))
    src.to_yuv("bt709")
    opts = QUALITIES["balanced"]
    tracker = make_tracker(opts, False)
    out = []
    for i, frame in enumerate(read_video(media("talk_720p.mp4"), FRAMES)):
        img, mask = _hand(frame, i)
        y, uv = bgr_to_yuv(img, "bt709")
        u, v = np.ascontiguousarray(uv[..., 0]), np.ascontiguousarray(uv[..., 1])
        tracks = tracker.step(y, i, chroma=(u, v))
        assert tracks, f"the face was lost at frame {i}"
        if i < SWAP_FROM:  # the hand is not on the face yet: only the covers are checked
            out.append((mask, y, y, y, tracks[0].cover is not None))
            continue
        faces = [t.pts.copy() for t in tracks]
        refs = [t.eye_ref for t in tracks]
        swapped = []
        for covers in ([t.cover for t in tracks], None):
            planes = y.copy(), u.copy(), v.copy()
            swap_faces(*planes, faces, src, morph=opts["morph"], keep_mouth=False,
                       eye_refs=refs, covers=covers)
            swapped.append(planes[0])
        out.append((mask, y, *swapped, tracks[0].cover is not None))
    return out


def _change_on_hand(run, which: int) -> tuple[float, float]:
    """Mean and worst-frame mean change (grey levels) of the luma on the hand pixels,
    over the frames where the swap without covers reaches the hand (500+ pixels)."""
    per = []
    for mask, y, *swapped, _ in run:
        if (mask & (swapped[1] != y)).sum() < 500:
            continue
        per.append(float(np.abs(swapped[which].astype(np.int16) - y)[mask].mean()))
    return float(np.mean(per)), max(per)


def test_a_hand_in_front_of_the_face_stays_in_front(hand_run):
    # Measured: with the covers 2.3 mean (worst frame 4.4) grey levels on the
    # hand over the frames where the swap reaches it; without them 5.3 (10.4).
    with_cover, worst_with = _change_on_hand(hand_run, 0)
    without, worst_without = _change_on_hand(hand_run, 1)
    assert without > 3.0 and worst_without > 9.0  # the case is real: the photo paints over it
    assert with_cover < 0.5 * without and worst_with < 0.6 * worst_without


def test_no_cover_on_the_face_before_the_hand_reaches_it(hand_run):
    # The hand touches the face's region from about frame 28; before that, the
    # face's own mouth, eyes and moves are not taken for something in front.
    assert not any(covered for *_, covered in hand_run[:SWAP_FROM])


def test_look_cover_marks_a_patch_unlike_the_faces_usual_look():
    """The stage alone on a synthetic patch: an even-coloured square over a
    textured face is covered, the face itself (its noise) is not."""
    rng = np.random.default_rng(1)
    n = blend.LOOK_SIZE
    mean = np.dstack([rng.uniform(90, 170, (n, n)), np.full((n, n), 110.0),
                      np.full((n, n), 150.0)]).astype(np.float32)
    mean[..., 0] = cv2.GaussianBlur(mean[..., 0], (0, 0), 2.0)
    var = np.full((n, n, 3), 1.0, np.float32)
    face = np.zeros((n, n), np.uint8)
    face[6:42, 8:40] = 1
    feats, edge = np.zeros_like(face), np.zeros_like(face)
    noisy = mean + rng.normal(0, 1.0, mean.shape).astype(np.float32)
    assert not blend.look_cover(noisy, mean, var, face, feats, edge)[0].any()
    hand = noisy.copy()
    hand[20:34, 12:26] = (150.0, 100.0, 160.0)
    cover = blend.look_cover(hand, mean, var, face, feats, edge)[0]
    assert cover[22:32, 14:24].min() > 0.9 and cover[:, 30:].max() == 0.0
