"""Trimmed swaps (``start_s``/``end_s``) and photo targets through the whole service:
real uploads, the real engine in a worker process, the real embedded database."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import tornado.websocket

import conf
from engine.source import find_faces
from tests.media import cut_clip
from tests.test_tasks import messages_until_done, swap, upload, wait_state
from tests.test_uploads import leftovers

FRAME = 1 / 30  # the talk clip's frame time


@pytest.fixture(scope="module")
def clip(testdata: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The first 4 s of the talking-head video (121 frames, AAC audio)."""
    folder = tmp_path_factory.mktemp("segment-clips")
    return cut_clip(testdata / "talk_480sq_33s.mp4", folder / "four.mp4", 4.0).read_bytes()


async def fetch(api, token: str, filepath: str):
    return await api.client.fetch(f"{api.base_url}/static/media/{filepath}",
                                  headers={"Authorization": f"Bearer {token}"})


def stream_times(path: Path) -> dict[str, tuple[float, float]]:
    """``{type: (start, duration)}`` of the streams, in seconds, as PyAV reads them."""
    out = {}
    with av.open(str(path)) as container:
        for s in container.streams:
            out[s.type] = (float(s.start_time * s.time_base), float(s.duration * s.time_base))
    return out


@pytest.mark.gen_test(timeout=120)
async def test_segments_and_photo_targets_through_the_task_flow(ctx, api, testdata, clip,
                                                               tmp_path, monkeypatch):
    """One user, one worker (its start-up is paid once): a trimmed video, then photos."""
    # A 2 s limit: the 4 s video is refused whole, and a part of it is accepted.
    monkeypatch.setitem(conf.LIMITS, conf.FREE,
                        conf.dataclasses.replace(conf.LIMITS[conf.FREE], video_seconds=2))
    token = await api.user("alice")
    image = source = await upload(api, token, "image", "obama.jpg",
                                  (testdata / "face_obama.jpg").read_bytes())
    video = await upload(api, token, "video", "long.mp4", clip)  # over 2 s: still accepted
    code, body = await swap(api, token, image, video, "whole")
    assert code == 413 and body["code"] == "too_long" and "start_s" in body["msg"], body
    code, body = await swap(api, token, image, video, "part", start_s=1.0, end_s=2.5,
                            quality="fast")
    assert code == 200, body
    task_id = body["task_id"]
    stored = await ctx.repos.tasks.get(task_id)
    assert (stored["start_s"], stored["end_s"]) == (1.0, 2.5)
    assert 45 <= stored["max_frames"] <= 47  # the segment's 45 frames (+ slack), not 121
    view = await wait_state(api, token, task_id, ("finished", "failed"))
    assert view["state"] == "finished", view
    assert view["kind"] == "video" and view["filepath"] == "alice/part.mp4"
    assert view["frames_done"] == 45
    _, listing = await api.call("GET", "/video/tasks", token=token)
    row = listing["tasks"][0]
    assert (row["task_id"], row["start_s"], row["end_s"]) == (task_id, 1.0, 2.5)

    out = tmp_path / "part.mp4"
    out.write_bytes((await fetch(api, token, "alice/part.mp4")).body)
    times = stream_times(out)
    v_start, v_dur = times["video"]
    a_start, a_dur = times["audio"]
    assert abs(v_start) < 1e-6 and abs(v_dur - 1.5) < 1e-6, times
    assert abs(a_start) <= FRAME and abs((a_start + a_dur) - (v_start + v_dur)) <= FRAME, times
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 45
    # an end-only segment starts at the video's start
    code, body = await swap(api, token, image, video, "head", end_s=1.0, quality="fast")
    assert code == 200, body
    view = await wait_state(api, token, body["task_id"], ("finished", "failed"))
    assert view["state"] == "finished" and view["frames_done"] == 30, view
    await photo_targets(ctx, api, token, source, testdata)


def face_box(bgr: np.ndarray, grow: float) -> tuple[int, int, int, int]:
    """The largest face's detector box, grown by ``grow`` of its size on every side."""
    x0, y0, x1, y1 = find_faces(bgr)[0]
    dx, dy = grow * (x1 - x0), grow * (y1 - y0)
    h, w = bgr.shape[:2]
    return (max(0, int(x0 - dx)), max(0, int(y0 - dy)), min(w, int(x1 + dx)),
            min(h, int(y1 + dy)))


def compare(before: np.ndarray, after: np.ndarray) -> tuple[float, np.ndarray]:
    """(share of the face box's pixels changed by more than 12 levels, differences
    outside the face box grown by 60 %)."""
    diff = np.abs(before.astype(np.int16) - after.astype(np.int16)).max(axis=2)
    x0, y0, x1, y1 = face_box(before, 0.0)
    inside = float((diff[y0:y1, x0:x1] > 12).mean())
    gx0, gy0, gx1, gy1 = face_box(before, 0.6)
    outside = diff.copy()
    outside[gy0:gy1, gx0:gx1] = -1
    return inside, outside[outside >= 0]


async def photo_targets(ctx, api, token: str, source: str, testdata: Path) -> None:
    """A JPEG and a PNG target: photo results through the same task flow."""
    target_jpg = (testdata / "face_woman.jpg").read_bytes()
    target = await upload(api, token, "image", "woman.jpg", target_jpg)
    # a PNG target, derived here from another shared photo
    group = cv2.imread(str(testdata / "two_people.jpg"))
    ok, png = cv2.imencode(".png", group)
    assert ok
    target_png = await upload(api, token, "image", "group.png", png.tobytes())

    ws = await tornado.websocket.websocket_connect(
        api.base_url.replace("http", "ws") + f"/ws/tasks?token={token}")
    code, body = await swap(api, token, source, target, "photo")
    assert code == 200, body
    messages = await messages_until_done(ws, body["task_id"])
    ws.close()
    assert [m["state"] for m in messages][0] == "queued"
    assert messages[-1]["state"] == "finished", messages[-1]
    assert messages[-1]["kind"] == "image" and messages[-1]["filepath"] == "alice/photo.jpg"
    assert [w["code"] for w in messages[-1]["warnings"]] == ["photo_mouth_open"]
    code, view = await api.call("POST", "/video/view_task", {"task_id": body["task_id"]},
                                token=token)
    assert view["status"] == 1 and view["filepath"] == "alice/photo.jpg", view
    # the same name as a video result is another file; as a photo it is taken
    code, again = await swap(api, token, source, target, "photo")
    assert code == 409 and again["code"] == "name_taken", again

    resp = await fetch(api, token, "alice/photo.jpg")
    assert resp.headers["Content-Type"] == "image/jpeg"
    assert b"AI-generated" in resp.body[:400]
    before = cv2.imdecode(np.frombuffer(target_jpg, np.uint8), cv2.IMREAD_COLOR)
    after = cv2.imdecode(np.frombuffer(resp.body, np.uint8), cv2.IMREAD_COLOR)
    assert after is not None and after.shape == before.shape
    inside, outside = compare(before, after)
    assert inside > 0.2, inside  # the face is another one
    assert outside.mean() < 1.0 and np.percentile(outside, 99.9) <= 12, (
        outside.mean(), np.percentile(outside, 99.9))  # JPEG re-encoding only

    code, body = await swap(api, token, source, target_png, "group", quality="fast")
    assert code == 200, body
    view = await wait_state(api, token, body["task_id"], ("finished", "failed"))
    assert view["state"] == "finished" and view["filepath"] == "alice/group.png", view
    resp = await fetch(api, token, "alice/group.png")
    assert resp.headers["Content-Type"] == "image/png"
    after = cv2.imdecode(np.frombuffer(resp.body, np.uint8), cv2.IMREAD_COLOR)
    assert after.shape == group.shape
    inside, outside = compare(group, after)
    assert inside > 0.2, inside
    assert outside.max() == 0  # lossless: every pixel away from the swapped face is the input's
    _, listing = await api.call("GET", "/video/tasks", token=token)
    assert [(t["kind"], t.get("filepath")) for t in listing["tasks"]][:2] == [
        ("image", "alice/group.png"), ("image", "alice/photo.jpg")]
    assert not list(ctx.media.tmp.iterdir())


@pytest.mark.gen_test(timeout=90)
async def test_bad_segments_and_targets_are_refused_with_codes_and_leave_nothing(
        ctx, api, testdata, clip, monkeypatch):
    monkeypatch.setitem(conf.LIMITS, conf.FREE,
                        conf.dataclasses.replace(conf.LIMITS[conf.FREE], video_seconds=3))
    token = await api.user("alice")
    await api.user("bob")
    image = await upload(api, token, "image", "face.jpg",
                         (testdata / "face_woman.jpg").read_bytes())
    video = await upload(api, token, "video", "four.mp4", clip)
    # a photo without a face, small so that its analysis at upload is quick
    ok, fur = cv2.imencode(".jpg", cv2.imread(str(testdata / "no_human_face_dog.jpg"))[:96, :96])
    dog = await upload(api, token, "image", "fur.jpg", fur.tobytes())
    bobs = "bob/b.jpg"
    cases = [
        ({"start_s": "soon"}, 400, "bad_segment"),
        ({"start_s": True}, 400, "bad_segment"),
        ({"end_s": [2]}, 400, "bad_segment"),
        ({"start_s": -0.5, "end_s": 1.0}, 400, "bad_segment"),
        ({"start_s": 2.0, "end_s": 2.0}, 400, "bad_segment"),
        ({"start_s": 2.5, "end_s": 1.0}, 400, "bad_segment"),
        ({"start_s": 1.0, "end_s": 9.0}, 400, "bad_segment"),  # past the end (4.03 s)
        ({"start_s": 5.0}, 400, "bad_segment"),
        ({"start_s": 1.0, "end_s": 1.02}, 400, "segment_too_short"),
        ({}, 413, "too_long"),  # 4 s whole, the limit is 3 s
        ({"start_s": 0.5}, 413, "too_long"),  # 3.5 s to the end
        ({"start_s": 0.0, "end_s": 3.5}, 413, "too_long"),
        ({"videopath": image, "start_s": 1.0}, 400, "bad_segment"),  # a photo has no time
        ({"videopath": dog}, 400, "no_face_in_target"),
        ({"videopath": bobs}, 403, "forbidden"),  # another user's photo
    ]
    for extra, status, reason in cases:
        payload = {"videopath": video, **extra}
        code, body = await swap(api, token, image, payload.pop("videopath"), "cut", **payload)
        assert (code, body.get("code")) == (status, reason), (extra, body)
        assert body["status"] == 1 and body["msg"], body
    user = await ctx.accounts.authenticate(token)
    assert await ctx.repos.tasks.for_owner(user.id) == []
    assert [p for p in leftovers(ctx) if "cut" in p or p.startswith("tmp")] == []
