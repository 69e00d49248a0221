"""The face from several photos or a short video, through the HTTP API: a task with a face
video end to end, the checks on ``imagepath`` (kinds, ownership per path, counts, the 30 s
limit), and a set of two people failing with its code."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.media import cut_clip
from tests.test_tasks import swap, upload, wait_state


def small_cut(src: Path, path: Path, frames: int) -> bytes:
    """The first ``frames`` frames of ``src`` at half size (a light upload to probe)."""
    with av.open(str(src)) as inp, av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        for i, frame in enumerate(inp.decode(video=0)):
            if i >= frames:
                break
            if i == 0:
                stream.width, stream.height = frame.width // 2, frame.height // 2
                stream.pix_fmt = "yuv420p"
            small = frame.reformat(width=stream.width, height=stream.height, format="yuv420p")
            small.pts, small.time_base = i, Fraction(1, 30)
            for packet in stream.encode(small):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path.read_bytes()


def still_video(path: Path, seconds: int) -> bytes:
    """A tiny grey video of ``seconds`` at one frame a second (a face video too long)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=1)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for i in range(seconds):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 90, np.uint8),
                                               format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, 1)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path.read_bytes()


@pytest.fixture(scope="module")
def cuts(testdata: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("cuts")
    return {"face": small_cut(testdata / "selfie_portrait_720x1280.mp4", folder / "face.mp4",
                              60),
            "target": cut_clip(testdata / "talk_480sq_33s.mp4", folder / "t.mp4",
                               1.0).read_bytes(),
            "long": still_video(folder / "long.mp4", 32)}


@pytest.mark.gen_test(timeout=180)
async def test_face_video_task_end_to_end_imagepath_checks_and_two_people(ctx, api, testdata,
                                                                          cuts):
    token = await api.user("alice")
    face = await upload(api, token, "video", "me.mp4", cuts["face"])
    target = await upload(api, token, "video", "clip.mp4", cuts["target"])
    code, reply = await swap(api, token, face, target, "from_video", quality="fast")
    assert code == 200, reply
    task_id = reply["task_id"]

    # Meanwhile, the checks on imagepath (nothing of these is queued).
    woman = await upload(api, token, "image", "w.jpg", (testdata / "face_woman.jpg").read_bytes())
    obama = await upload(api, token, "image", "o.jpg", (testdata / "face_obama.jpg").read_bytes())
    long_face = await upload(api, token, "video", "long.mp4", cuts["long"])
    bob = await api.user("bob")
    bobs = await upload(api, bob, "image", "b.jpg", (testdata / "face_woman.jpg").read_bytes())
    cases = [
        ([woman, bobs], 403, None),  # each path must be the caller's own
        ([woman, target], 400, "bad_request"),  # a list holds photos only
        ([woman] * 2, 400, "bad_request"),
        ([], 400, "bad_request"),
        ([woman] * 11, 400, "too_many_photos"),
        ([woman, 7], 400, "bad_request"),
        (long_face, 413, "face_video_too_long"),
    ]
    for imagepath, status, reason in cases:
        code, reply = await swap(api, token, imagepath, target, "x")
        assert code == status and reply["status"] == 1, (imagepath, reply)
        assert reason is None or reply["code"] == reason, (imagepath, reply)
    code, listing = await api.call("GET", "/video/tasks", token=token)
    assert [t["task_id"] for t in listing["tasks"]] == [task_id]

    view = await wait_state(api, token, task_id, ("finished", "failed"), timeout=150)
    assert view["state"] == "finished", view
    assert view["status"] == 1 and view["filepath"] == "alice/from_video.mp4"
    assert ctx.media.exists("alice/from_video.mp4")
    code, listing = await api.call("GET", "/video/tasks", token=token)
    assert listing["tasks"][0]["imagepath"] == face

    # Two people: the worker's library refuses, and the task says why with its code.
    code, reply = await swap(api, token, [woman, obama], target, "two", quality="fast")
    assert code == 200, reply
    view = await wait_state(api, token, reply["task_id"], ("finished", "failed"))
    assert view["state"] == "failed" and view["status"] == 2
    assert view["code"] == "faces_not_same_person"
    assert "different people" in view["progress"]
    assert not ctx.media.exists("alice/two.mp4") and not list(ctx.media.tmp.iterdir())
