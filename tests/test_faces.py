"""Choosing the face and previewing it: ``/video/faces``, ``target_face``/``source_face``
on ``/video/faceswap`` and ``/video/preview``, against the real database and engine.

Media: ``stage_multi_360p.mp4`` (a speaker, then after a cut a woman in the audience)
and ``two_people.jpg`` (two people, the left one smaller), also made into a short
still video so that the chosen person is the *smaller* face of the frame.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from engine.decode import VideoReader, planes
from engine.detect import detect_faces
from engine.people import describe_faces
from services.faces import RateLimit
from tests.test_tasks import swap, upload, wait_state

#: The stage clip's keyframe at 6.29 s: the speaker until ~7.1 s, a cut, the woman.
STAGE_FROM_S = 6.3


def cut_from(src: Path, dst: Path, start_s: float) -> Path:
    """The video of ``src`` from the keyframe at or before ``start_s`` (packets copied,
    timestamps moved to start at 0)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        inp.seek(int(start_s / vin.time_base), stream=vin, backward=True, any_frame=False)
        first = None
        for packet in inp.demux(vin):
            if packet.dts is None:
                continue
            if first is None:
                first = packet.dts
            packet.pts -= first
            packet.dts -= first
            packet.stream = vout
            out.mux(packet)
    return dst


def still_video(image: Path, dst: Path, frames: int = 12) -> Path:
    """A short H.264 video of a photo (even-sized), every frame the same picture."""
    bgr = cv2.imread(str(image))
    h, w = bgr.shape[0] // 2 * 2, bgr.shape[1] // 2 * 2
    rgb = np.ascontiguousarray(bgr[:h, :w, ::-1])
    with av.open(str(dst), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "12"}
        for _ in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return dst


@pytest.fixture(scope="module")
def media(testdata: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("faces")
    return {
        "stage": cut_from(testdata / "stage_multi_360p.mp4", folder / "stage.mp4",
                          STAGE_FROM_S).read_bytes(),
        "group_video": still_video(testdata / "two_people.jpg",
                                   folder / "group.mp4").read_bytes(),
        "group": (testdata / "two_people.jpg").read_bytes(),
        "face": (testdata / "face_woman.jpg").read_bytes(),
    }


def frames_bgr(path: Path) -> list[np.ndarray]:
    reader = VideoReader(str(path))
    try:
        return [f.to_ndarray(format="bgr24") for f, _ in reader.frames()]
    finally:
        reader.close()


def frames_luma(path: Path) -> list[np.ndarray]:
    """The decoded luma planes: compared as coded (an RGB conversion would depend on
    the colour matrix each file is tagged with)."""
    reader = VideoReader(str(path))
    try:
        return [np.array(planes(f)[0]) for f, _ in reader.frames()]
    finally:
        reader.close()


def box_diff(a: np.ndarray, b: np.ndarray, box: list[int], blur: float = 0.0) -> float:
    """Mean absolute difference of two pictures inside ``box``; ``blur``: after a
    Gaussian blur of that sigma (the encoder's grain averages out, a swap does not)."""
    x, y, w, h = box
    a, b = a[y:y + h, x:x + w], b[y:y + h, x:x + w]
    if blur:
        a, b = cv2.GaussianBlur(a, (0, 0), blur), cv2.GaussianBlur(b, (0, 0), blur)
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


async def fetch(api, url: str, token: str) -> tuple[int, bytes]:
    resp = await api.client.fetch(api.base_url + url, headers={
        "Authorization": f"Bearer {token}"}, raise_error=False)
    return resp.code, resp.body


@pytest.mark.gen_test(timeout=120)
async def test_faces_of_a_photo_kept_owned_and_forgotten(api, ctx, media) -> None:
    token = await api.user("alice")
    other = await api.user("mallory")
    group = await upload(api, token, "image", "group.jpg", media["group"])
    code, reply = await api.call("POST", "/video/faces", {"filepath": group}, token=token)
    assert code == 200, reply
    faces = reply["faces"]
    assert len(faces) == 2
    assert {f["face_id"] for f in faces} == {"1", "2"}
    assert all(f["share"] == 1.0 and f["first_s"] == 0 == f["last_s"] for f in faces)
    # both people, the larger (right) one first when the shares tie
    assert faces[0]["box"][0] > faces[1]["box"][0] and faces[0]["box"][2] > faces[1]["box"][2]
    code, jpeg = await fetch(api, faces[0]["thumbnail"], token)
    assert code == 200 and jpeg[:3] == b"\xff\xd8\xff"
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) is not None
    # the thumbnail and the answer are the owner's only
    code, _ = await fetch(api, faces[0]["thumbnail"], other)
    assert code in (403, 404)
    code, reply = await api.call("POST", "/video/faces", {"filepath": group}, token=other)
    assert code in (403, 404) and reply["code"] in ("forbidden", "not_found"), reply
    code, reply = await api.call("POST", "/video/faces", {"filepath": "alice/nope.jpg"},
                                 token=token)
    assert (code, reply["code"]) == (404, "not_found"), reply
    code, reply = await api.call("POST", "/video/faces", {"filepath": group})
    assert (code, reply["code"]) == (401, "not_logged_in")
    code, reply = await api.call("POST", "/video/faces", {}, token=token)
    assert (code, reply["code"]) == (400, "bad_request")
    # kept: asked again, the same answer without the engine (its process is not called)
    pid = ctx.faces.worker.pid()
    t = time.monotonic()
    code, again = await api.call("POST", "/video/faces", {"filepath": group}, token=token)
    assert code == 200 and again["faces"] == faces and time.monotonic() - t < 1.0
    assert ctx.faces.worker.pid() == pid
    kept = await ctx.repos.faces.get(group)
    assert len(kept["faces"][0]["descriptor"]) == 128
    # the file goes: its answer and thumbnails go with it (also when only housekeeping
    # notices that the file's record is gone)
    thumbs = [ctx.media.root / f["thumbnail"].removeprefix("/static/media/") for f in faces]
    assert all(p.is_file() for p in thumbs)
    await ctx.repos.uploads.uploads.delete_one({"filepath": group})
    assert await ctx.faces.sweep() == 1
    assert not any(p.exists() for p in thumbs)
    assert await ctx.repos.faces.get(group) is None


@pytest.mark.gen_test(timeout=180)
async def test_target_face_swaps_only_that_person_after_a_cut(api, ctx, media, tmp_path
                                                             ) -> None:
    """The stage cut: the speaker (larger, first), a cut, the woman in the audience.
    Choosing the woman swaps her and leaves the speaker as he was in every frame."""
    token = await api.user("alice")
    image = await upload(api, token, "image", "face.jpg", media["face"])
    video = await upload(api, token, "video", "stage.mp4", media["stage"])
    code, reply = await api.call("POST", "/video/faces", {"filepath": video}, token=token)
    assert code == 200, reply
    faces = reply["faces"]
    assert len(faces) == 2, faces
    speaker, woman = sorted(faces, key=lambda f: f["first_s"])
    assert speaker["box"][2] > woman["box"][2]  # the one not chosen is the bigger face
    kept = {f["face_id"]: np.array(f["descriptor"])
            for f in (await ctx.repos.faces.get(video))["faces"]}

    # an unknown id, another user's, a malformed one: refused with a code, no task
    other = await api.user("mallory")
    code, reply = await swap(api, token, image, video, "x1", target_face="9")
    assert (code, reply["code"]) == (404, "unknown_face"), reply
    code, reply = await swap(api, token, image, video, "x2", target_face="one")
    assert (code, reply["code"]) == (400, "bad_face_id"), reply
    code, reply = await swap(api, other, image, video, "x3", target_face=woman["face_id"])
    assert code in (403, 404), reply
    assert await ctx.repos.tasks.tasks.count_documents({}) == 0

    code, reply = await swap(api, token, image, video, "chosen",
                             target_face=woman["face_id"])
    assert code == 200, reply
    # a preview does not wait behind the task (the only swap slot is taken by it)
    code, preview = await api.call("POST", "/video/preview", {
        "imagepath": image, "videopath": video, "at_s": 2.0,
        "target_face": woman["face_id"]}, token=token)
    assert code == 200, preview
    code, task = await api.call("POST", "/video/view_task", {"task_id": reply["task_id"]},
                                token=token)
    assert task["state"] in ("queued", "running"), task
    view = await wait_state(api, token, reply["task_id"], ("finished", "failed"), 150)
    assert view["state"] == "finished", view
    src = tmp_path / "in.mp4"
    src.write_bytes(media["stage"])
    colour = frames_bgr(src)
    before = frames_luma(src)
    after = frames_luma(ctx.media.root / view["filepath"])
    assert len(before) == len(after)
    changed_woman, speaker_diffs = [], []
    for i in range(0, len(before), 4):
        rects = detect_faces(before[i], 640, 0)
        for rect, desc in zip(rects, describe_faces(colour[i], rects, 10), strict=True):
            box = [int(rect[0]), int(rect[1]), int(rect[2] - rect[0]), int(rect[3] - rect[1])]
            diff = box_diff(before[i], after[i], box, blur=1.5)
            if np.linalg.norm(desc - kept[woman["face_id"]]) < 0.5:
                changed_woman.append(diff)
            elif np.linalg.norm(desc - kept[speaker["face_id"]]) < 0.5:
                speaker_diffs.append(diff)
    assert speaker_diffs and changed_woman, (speaker_diffs, changed_woman)
    # the speaker: only the encoder's noise (measured 0.3-0.55 grey levels); the woman:
    # swapped (4.4-5.7) in all her frames but the cut's own (found on the next search)
    assert max(speaker_diffs) < 1.5, speaker_diffs
    swapped = [d > 3.0 for d in changed_woman]
    assert sum(swapped) >= 0.8 * len(swapped) and all(swapped[2:]), changed_woman


@pytest.mark.gen_test(timeout=120)
async def test_preview_of_the_smaller_person_from_a_group_photo(api, ctx, media) -> None:
    """A still video of two people; the smaller (left) one chosen as the target, the
    group photo's larger (right) one as the source: only the left face changes."""
    token = await api.user("alice")
    group = await upload(api, token, "image", "group.jpg", media["group"])
    video = await upload(api, token, "video", "group.mp4", media["group_video"])
    _, photo_faces = await api.call("POST", "/video/faces", {"filepath": group}, token=token)
    _, video_faces = await api.call("POST", "/video/faces", {"filepath": video}, token=token)
    big, small = sorted(video_faces["faces"], key=lambda f: -f["box"][2])
    body = {"imagepath": group, "videopath": video, "at_s": 0.8,
            "target_face": small["face_id"], "source_face": photo_faces["faces"][0]["face_id"]}
    code, reply = await api.call("POST", "/video/preview", body, token=token)
    assert code == 200, reply
    assert set(reply) >= {"status", "preview", "original", "warnings"}
    _, orig = await fetch(api, reply["original"], token)
    _, prev = await fetch(api, reply["preview"], token)
    orig = cv2.imdecode(np.frombuffer(orig, np.uint8), cv2.IMREAD_COLOR)
    prev = cv2.imdecode(np.frombuffer(prev, np.uint8), cv2.IMREAD_COLOR)
    assert box_diff(orig, prev, small["box"]) > 6.0
    assert box_diff(orig, prev, big["box"]) < 0.5  # the same decode, not a pixel changed
    # a photo target: the task's photo swap, only the chosen (smaller) person
    small_photo = photo_faces["faces"][1]
    code, photo = await api.call("POST", "/video/preview", {
        "imagepath": group, "videopath": group, "at_s": 0,
        "target_face": small_photo["face_id"], "source_face": "1"}, token=token)
    assert code == 200 and photo["faces"] == 1, photo
    _, p_orig = await fetch(api, photo["original"], token)
    _, p_prev = await fetch(api, photo["preview"], token)
    p_orig = cv2.imdecode(np.frombuffer(p_orig, np.uint8), cv2.IMREAD_COLOR)
    p_prev = cv2.imdecode(np.frombuffer(p_prev, np.uint8), cv2.IMREAD_COLOR)
    assert box_diff(p_orig, p_prev, small_photo["box"]) > 6.0
    assert box_diff(p_orig, p_prev, photo_faces["faces"][0]["box"]) == 0.0
    # previews are the owner's, bounded, and cleaned up
    other = await api.user("mallory")
    code, _ = await fetch(api, reply["preview"], other)
    assert code in (403, 404)
    code, r = await api.call("POST", "/video/preview", body, token=other)
    assert code in (403, 404), r
    code, r = await api.call("POST", "/video/preview", {**body, "at_s": 99}, token=token)
    assert (code, r["code"]) == (400, "bad_time"), r
    code, r = await api.call("POST", "/video/preview", {**body, "at_s": "soon"}, token=token)
    assert (code, r["code"]) == (400, "bad_request"), r
    code, r = await api.call("POST", "/video/preview", {**body, "source_face": "7"},
                             token=token)
    assert (code, r["code"]) == (404, "unknown_face"), r
    files = [ctx.media.root / u.removeprefix("/static/media/")
             for u in (reply["preview"], reply["original"])]
    assert all(p.is_file() for p in files)
    await ctx.repos.faces.previews.update_many({}, {"$set": {"expires": ctx_now(-1)}})
    assert await ctx.previews.expire() == 2
    assert not any(p.exists() for p in files)
    assert await ctx.repos.faces.previews.count_documents({}) == 0

    # over the per-user rate: 429 with a code (the limit is conf's, made small here)
    ctx.previews.rate = RateLimit(1)
    plain = {"imagepath": group, "videopath": video, "at_s": 0.2}
    code, reply = await api.call("POST", "/video/preview", plain, token=token)
    assert code == 200, reply
    code, reply = await api.call("POST", "/video/preview", plain, token=token)
    assert (code, reply["code"]) == (429, "too_many_previews"), reply
    ctx.previews.rate = RateLimit(ctx.settings.preview_per_minute)
    # a crashed preview process is replaced
    pid = ctx.previews.worker.pid()
    os.kill(pid, 9)
    code, reply = await api.call("POST", "/video/preview", plain, token=token)
    assert code == 200, reply  # the next call gets a new process
    assert ctx.previews.worker.pid() not in (None, pid)


def ctx_now(minutes: float):
    import datetime as dt

    return dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)
