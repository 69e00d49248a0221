"""The photo check (engine.photo) on the shared photos and on variants made from them."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine import photo
from engine.errors import EngineError


def codes(img: np.ndarray) -> list[str]:
    return photo.analyse(img).codes


def test_frontal_sharp_photo_gets_no_warning(media):
    assert codes(cv2.imread(media("face_woman.jpg"))) == []
    r = photo.analyse(cv2.imread(media("face_obama.jpg")))
    assert "photo_face_turned" not in r.codes and abs(r.yaw) < 10 and abs(r.roll) < 10
    assert r.codes == ["photo_mouth_open"]  # a wide smile with teeth


def test_painting_is_small_and_group_photo_has_several_faces(media):
    assert "photo_face_small" in codes(cv2.imread(media("painting_woman.jpg")))
    assert "photo_several_faces" in codes(cv2.imread(media("two_people.jpg")))


def test_turned_head_warns_and_mirror_flips_the_yaw(media, read_video):
    # talk_720p: the woman's head is turned by about a third of a right angle.
    frame = read_video(media("talk_720p.mp4"), 1)[0]
    r, m = photo.analyse(frame), photo.analyse(np.ascontiguousarray(frame[:, ::-1]))
    assert "photo_face_turned" in r.codes and "photo_face_turned" in m.codes
    assert abs(r.yaw) > 28 and abs(m.yaw) > 28 and r.yaw * m.yaw < 0
    # A frontal photo in the same clip (frame 600): no pose warning.
    assert "photo_face_turned" not in codes(read_video(media("talk_480sq_33s.mp4"), 601)[600])


def test_blur_small_closed_eyes_and_cover(media, read_video):
    woman = cv2.imread(media("face_woman.jpg"))
    assert codes(cv2.GaussianBlur(woman, (0, 0), 4)) == ["photo_face_blurry"]
    assert codes(cv2.resize(woman, None, fx=0.25, fy=0.25,
                            interpolation=cv2.INTER_AREA)) == ["photo_face_small"]
    blink = read_video(media("talk_720p.mp4"), 11)[10]
    assert "photo_eyes_closed" in codes(blink)
    assert "photo_eyes_closed" not in codes(read_video(media("talk_720p.mp4"), 1)[0])
    # A dark lock of hair drawn over one eye and brow.
    p = photo.analyse(woman).pts
    region = np.concatenate([p[17:22], p[36:42]])
    c = region.mean(0)
    covered = woman.copy()
    cv2.fillConvexPoly(covered, cv2.convexHull(np.round(c + (region - c) * 1.8).astype(np.int32)),
                       (30, 45, 70))
    assert "photo_face_covered" in codes(covered)


@pytest.mark.parametrize("case, code", [("dog", "no_face_in_photo"),
                                        ("tiny", "photo_face_too_small")])
def test_hopeless_photos_are_refused_with_a_code(media, case, code):
    if case == "dog":
        img = cv2.imread(media("no_human_face_dog.jpg"))
    else:
        img = cv2.resize(cv2.imread(media("face_woman.jpg")), None, fx=0.1, fy=0.1,
                         interpolation=cv2.INTER_AREA)
    with pytest.raises(EngineError) as exc:
        photo.analyse(img)
    assert exc.value.code == code and str(exc.value)


def test_turned_photo_takes_its_hidden_half_from_the_mirror(media, read_video, tmp_path):
    from engine.source import load_source
    from engine.swap import swap_face

    frame = read_video(media("talk_720p.mp4"), 1)[0]
    path = str(tmp_path / "turned.png")
    cv2.imwrite(path, frame)
    yaw = photo.analyse(frame).yaw
    src = load_source(path)
    assert src.hidden_side == (1 if yaw > 0 else -1)
    src.to_yuv("bt709")
    assert src.y_m.shape == src.y.shape and src.uv_m.shape == src.uv.shape
    # The mirror image brings the better-seen half's detail under the photo's own light.
    sigma = 0.1 * float(np.hypot(*(src.pts[16] - src.pts[0])))
    low = [cv2.GaussianBlur(p.astype(np.float32), (0, 0), sigma) for p in (src.y, src.y_m)]
    face = np.zeros(src.y.shape, np.uint8)
    cv2.fillConvexPoly(face, cv2.convexHull(np.round(src.pts).astype(np.int32)), 1)
    plain = cv2.GaussianBlur(src.y[:, ::-1].astype(np.float32), (0, 0), sigma)
    inside = face.astype(bool)
    # Closer to the photo's own light than the plain mirror image is.
    assert (float(np.abs(low[0] - low[1])[inside].mean())
            < 0.5 * float(np.abs(low[0] - plain)[inside].mean()))
    # A frontal photo mirrors nothing; swapping the turned one into a frame works.
    assert load_source(media("face_woman.jpg")).hidden_side == 0
    from engine.colorspace import bgr_to_yuv
    from engine.landmarks import predict_landmarks
    from engine.source import find_faces

    target = read_video(media("talk_480sq_33s.mp4"), 601)[600]
    pts = predict_landmarks(cv2.cvtColor(target, cv2.COLOR_BGR2GRAY), find_faces(target)[0])
    y, uv = bgr_to_yuv(target, "bt709")
    u, v = np.ascontiguousarray(uv[..., 0]), np.ascontiguousarray(uv[..., 1])
    before = y.copy()
    swap_face(y, u, v, pts, src, morph=0.5, keep_mouth=False)
    assert float(np.abs(y.astype(int) - before).mean()) > 0.5
