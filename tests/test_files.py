"""The user's files and tasks (issue 15): the file list with thumbnails, deleting files
and tasks, retrying and paging tasks, the storage quota, deleting accounts, and the
warnings of a finished task. Real uploads, the real engine and the real database; every
deletion is checked by listing the disk folders and every collection afterwards."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import tornado.httpclient
import tornado.websocket

import conf
from services import ServiceError
from services.uploads import FRAMING_SLACK
from tests.media import cut_clip, multipart
from tests.test_accounts import make_admin
from tests.test_tasks import messages_until_done, wait_state
from tests.test_uploads import b64, tus_headers

CUSTOMERS = "/api/mgr/customers"


@pytest.fixture(scope="module")
def media(testdata: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A 1 s and a 6 s talking-head clip, a clip without any face, and the photo."""
    folder = tmp_path_factory.mktemp("files")
    src = testdata / "talk_480sq_33s.mp4"
    return {"short": cut_clip(src, folder / "short.mp4", 1.0).read_bytes(),
            "long": cut_clip(src, folder / "long.mp4", 6.0).read_bytes(),
            "noface": faceless_clip(testdata, folder / "dog.mp4"),
            "photo": (testdata / "face_woman.jpg").read_bytes(),
            "dog": (testdata / "no_human_face_dog.jpg").read_bytes()}


def faceless_clip(testdata: Path, path: Path, frames: int = 8) -> bytes:
    """A short H.264 clip of the dog photo: a video in which no human face appears."""
    dog = cv2.resize(cv2.imread(str(testdata / "no_human_face_dog.jpg")), (320, 240))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(8))
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(dog, format="bgr24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path.read_bytes()


async def upload(api, token: str, filetype: str, name: str, content: bytes
                 ) -> tuple[int, dict]:
    body, ctype = multipart({"filetype": filetype}, "file", name, content)
    return await api.call("POST", "/video/upload", raw=body, token=token,
                          headers={"Content-Type": ctype})


async def uploaded(api, token: str, filetype: str, name: str, content: bytes) -> str:
    code, reply = await upload(api, token, filetype, name, content)
    assert code == 200, reply
    return reply["filepath"]


async def user_id(ctx, token: str) -> int:
    return (await ctx.accounts.authenticate(token)).id


async def traces(ctx, uid: int, username: str) -> dict[str, object]:
    """Everything of one user still on disk or in any collection of the database."""
    found: dict[str, object] = {}
    for name in ("media", "thumbs"):
        folder = getattr(ctx.media, "root" if name == "media" else "thumbs") / username
        if folder.exists():
            found[name] = sorted(p.name for p in folder.iterdir())
    if list(ctx.media.tmp.iterdir()):
        found["tmp"] = sorted(p.name for p in ctx.media.tmp.iterdir())
    for collection in await ctx.repos.db.list_collection_names():
        query = {"$or": [{"owner_id": uid}, {"user_id": uid}, {"id": uid},
                         {"username": username}]}
        n = await ctx.repos.db[collection].count_documents(query)
        if n:
            found[collection] = n
    return found


async def plant_task(ctx, token: str, image: str, video: str, task_id: str,
                     state: str = "queued") -> None:
    """A task record as the task service writes it (no worker runs it)."""
    user = await ctx.accounts.authenticate(token)
    await ctx.repos.tasks.create({
        "task_id": task_id, "owner_id": user.id, "username": user.username,
        "usertype": user.usertype, "imagepath": image, "videopath": video,
        "swapname": task_id, "filepath": f"{user.username}/{task_id}.mp4",
        "many_faces": False, "keep_mouth": False, "quality": "fast", "state": state,
        "percent": 0.0, "frames_done": 0, "frames_total": None, "fps": None, "eta_s": None,
        "error": None})


async def fetch(api, path: str, token: str) -> tornado.httpclient.HTTPResponse:
    return await api.client.fetch(api.base_url + path, raise_error=False,
                                  headers={"Authorization": f"Bearer {token}"})


@pytest.mark.gen_test(timeout=60)
async def test_file_list_thumbnails_and_delete_file(ctx, api, media):
    alice, bob = await api.user("alice"), await api.user("bob")
    image = await uploaded(api, alice, "image", "face.jpg", media["photo"])
    video = await uploaded(api, alice, "video", "clip.mp4", media["short"])
    code, listing = await api.call("GET", "/video/files", token=alice)
    assert code == 200 and [f["filepath"] for f in listing["files"]] == [video, image]
    clip, photo = listing["files"]
    assert clip["kind"] == "video" and clip["size"] == len(media["short"])
    assert clip["width"] == 480 and clip["duration"] == pytest.approx(1.0, abs=0.2)
    assert photo["kind"] == "image" and photo["faces"] == 1 and photo["warnings"] == []
    assert photo["created"] <= clip["created"] and clip["origin"] == "upload"
    for entry in listing["files"]:
        resp = await fetch(api, entry["thumbnail"], alice)
        assert resp.code == 200 and resp.headers["Content-Type"] == "image/jpeg"
        thumb = cv2.imdecode(np.frombuffer(resp.body, "uint8"), 1)
        assert max(thumb.shape[:2]) == 256  # a small picture, not the file
        assert (await fetch(api, entry["thumbnail"], bob)).code in (403, 404)
    code, only = await api.call("GET", "/video/files?kind=image", token=alice)
    assert [f["filepath"] for f in only["files"]] == [image]
    # early feedback: a photo without a face is kept, and the answer says it will not do
    code, dog = await upload(api, bob, "image", "dog.jpg", media["dog"])
    assert code == 200 and dog["upload"]["faces"] == 0
    assert [w["code"] for w in dog["warnings"]] == ["no_face_in_photo"]
    _, bobs = await api.call("GET", "/video/files", token=bob)
    assert bobs["files"][0]["warnings"] == dog["warnings"]
    assert (await api.call("POST", "/video/delete_file", {"filepath": dog["filepath"]},
                           token=bob))[0] == 200
    code, body = await api.call("GET", "/video/files?kind=audio", token=alice)
    assert code == 400 and body["code"] == "bad_request"
    code, body = await api.call("GET", "/video/files", token=bob)
    assert body["files"] == []
    assert (await api.call("GET", "/video/files"))[0] == 401

    # ownership and bad paths
    for who, path, expected in ((bob, image, 404), (alice, "alice/../bob/x.jpg", 400),
                                (alice, "alice/nothing.jpg", 404), (alice, "/etc/passwd", 400)):
        code, body = await api.call("POST", "/video/delete_file", {"filepath": path}, token=who)
        assert code == expected and body["status"] == 1 and body["code"], (path, body)
    # in use by a queued task: kept
    await plant_task(ctx, alice, image, video, "feedfacefeedface")
    code, body = await api.call("POST", "/video/delete_file", {"filepath": video}, token=alice)
    assert code == 409 and body["code"] == "in_use"
    await ctx.repos.tasks.update("feedfacefeedface", {"state": "failed"})
    for path in (video, image):
        code, body = await api.call("POST", "/video/delete_file", {"filepath": path},
                                    token=alice)
        assert code == 200 and body == {"status": 0}
    code, body = await api.call("POST", "/video/delete_file", {"filepath": image}, token=alice)
    assert code == 404
    uid = await user_id(ctx, alice)
    left = await traces(ctx, uid, "alice")
    assert left == {"media": [], "thumbs": [], "users": 1, "sessions": 1, "tasks": 1}, left
    _, session = await api.call("GET", "/api/session", token=alice)
    assert session["usage_bytes"] == 0 and session["quota_bytes"] > 0


@pytest.mark.gen_test(timeout=120)
async def test_result_warnings_delete_retry_and_delete_task(ctx, api, media, monkeypatch):
    # an output limit below the clip's 480 px: the result is downscaled, and says so
    monkeypatch.setitem(conf.LIMITS, conf.FREE,
                        dataclasses.replace(conf.LIMITS[conf.FREE], output_height=240))
    alice, bob = await api.user("alice"), await api.user("bob")
    image = await uploaded(api, alice, "image", "face.jpg", media["photo"])
    video = await uploaded(api, alice, "video", "clip.mp4", media["short"])
    dog = await uploaded(api, alice, "video", "dog.mp4", media["noface"])
    ws = await tornado.websocket.websocket_connect(
        api.base_url.replace("http", "ws") + f"/ws/tasks?token={alice}")
    code, reply = await api.call("POST", "/video/faceswap", {
        "imagepath": image, "videopath": video, "swapname": "small", "quality": "fast"},
        token=alice)
    assert code == 200 and [w["code"] for w in reply["warnings"]] == ["output_downscaled"]
    task_id = reply["task_id"]
    final = (await messages_until_done(ws, task_id))[-1]
    assert final["state"] == "finished"
    _, view = await api.call("POST", "/video/view_task", {"task_id": task_id}, token=alice)
    _, listing = await api.call("GET", "/video/tasks", token=alice)
    for warnings in (final["warnings"], view["warnings"], listing["tasks"][0]["warnings"]):
        assert [w["code"] for w in warnings] == ["output_downscaled"], warnings
        scaled = warnings[0]
        assert (scaled["width"], scaled["height"]) == (240, 240)
        assert (scaled["input_width"], scaled["input_height"]) == (480, 480)
        assert scaled["reason"] == "usertype_output_height" and "240" in scaled["msg"]
    with av.open(str(ctx.media.root / "alice" / "small.mp4")) as out:
        assert out.streams.video[0].codec_context.height == 240

    # no face anywhere in the video: finished, nothing swapped, and it says so
    code, reply = await api.call("POST", "/video/faceswap", {
        "imagepath": image, "videopath": dog, "swapname": "dog", "quality": "fast"},
        token=alice)
    final = (await messages_until_done(ws, reply["task_id"]))[-1]
    ws.close()
    assert final["state"] == "finished"
    assert [w["code"] for w in final["warnings"]] == ["no_face_in_video"]
    assert (await ctx.repos.tasks.get(reply["task_id"]))["swapped_frames"] == 0

    # the results are files: listed with thumbnails, counted in the usage
    _, files = await api.call("GET", "/video/files?kind=video", token=alice)
    results = {f["filepath"]: f for f in files["files"] if f["origin"] == "result"}
    assert set(results) == {"alice/small.mp4", "alice/dog.mp4"}
    assert results["alice/small.mp4"]["task_id"] == task_id
    assert results["alice/small.mp4"]["height"] == 240
    assert (await fetch(api, results["alice/small.mp4"]["thumbnail"], alice)).code == 200
    _, session = await api.call("GET", "/api/session", token=alice)
    assert session["usage_bytes"] == sum(f["size"] for f in files["files"]) + len(
        media["photo"])

    # deleting a result marks its task deleted (final, status 2)
    code, _ = await api.call("POST", "/video/delete_file", {"filepath": "alice/small.mp4"},
                             token=alice)
    assert code == 200
    _, view = await api.call("POST", "/video/view_task", {"task_id": task_id}, token=alice)
    assert view["state"] == "deleted" and view["status"] == 2
    assert not (ctx.media.thumbs / "alice" / "small.mp4.jpg").exists()

    # retry: same inputs and options, the freed name again; not someone else's task
    assert (await api.call("POST", "/video/retry_task", {"task_id": task_id}, token=bob)
            )[0] == 404
    code, retry = await api.call("POST", "/video/retry_task", {"task_id": task_id},
                                 token=alice)
    assert code == 200 and retry["task_id"] != task_id
    new = await ctx.repos.tasks.get(retry["task_id"])
    old = await ctx.repos.tasks.get(task_id)
    for key in ("imagepath", "videopath", "swapname", "quality", "many_faces", "keep_mouth"):
        assert new[key] == old[key], key
    code, body = await api.call("POST", "/video/retry_task", {"task_id": retry["task_id"]},
                                token=alice)
    assert code == 409 and body["code"] == "task_active"  # queued or running
    # a finished task's name is taken: the retry gets the next free one, or the caller's
    code, again = await api.call("POST", "/video/retry_task", {"task_id": reply["task_id"]},
                                 token=alice)
    assert (await ctx.repos.tasks.get(again["task_id"]))["swapname"] == "dog-2"
    code, body = await api.call("POST", "/video/retry_task", {
        "task_id": task_id, "swapname": "dog"}, token=alice)
    assert code == 409 and body["code"] == "name_taken"

    # delete_task: cancels a live task, removes it and its result
    assert (await api.call("POST", "/video/delete_task", {"task_id": task_id}, token=bob)
            )[0] == 404
    for tid in (again["task_id"], retry["task_id"], task_id, reply["task_id"]):
        code, body = await api.call("POST", "/video/delete_task", {"task_id": tid},
                                    token=alice)
        assert code == 200, body
        code, body = await api.call("POST", "/video/view_task", {"task_id": tid}, token=alice)
        assert code == 404, (tid, body)
    for path in (image, video, dog):
        assert (await api.call("POST", "/video/delete_file", {"filepath": path},
                               token=alice))[0] == 200
    left = await traces(ctx, await user_id(ctx, alice), "alice")
    assert left == {"media": [], "thumbs": [], "users": 1, "sessions": 1}, left


@pytest.mark.gen_test(timeout=60)
async def test_task_paging(ctx, api, media):
    alice, bob = await api.user("alice"), await api.user("bob")
    image = await uploaded(api, alice, "image", "face.jpg", media["photo"])
    video = await uploaded(api, alice, "video", "clip.mp4", media["short"])
    ids = [f"{i:016x}" for i in range(7)]
    for task_id in ids:
        await plant_task(ctx, alice, image, video, task_id, state="failed")
    _, everything = await api.call("GET", "/video/tasks", token=alice)
    assert [t["task_id"] for t in everything["tasks"]] == ids[::-1]  # the old answer
    assert "next_before" not in everything
    seen, before = [], None
    while True:
        query = "?limit=3" + (f"&before={before}" if before else "")
        code, page = await api.call("GET", "/video/tasks" + query, token=alice)
        assert code == 200 and len(page["tasks"]) <= 3
        seen += [t["task_id"] for t in page["tasks"]]
        before = page["next_before"]
        if before is None:
            break
    assert seen == ids[::-1]
    for query, expected in (("?limit=0", 400), ("?limit=x", 400), ("?limit=201", 400),
                            (f"?before={'f' * 16}", 404), (f"?limit=2&before={ids[3]}", 200)):
        code, body = await api.call("GET", "/video/tasks" + query, token=alice)
        assert code == expected, (query, body)
    assert [t["task_id"] for t in body["tasks"]] == [ids[2], ids[1]]
    code, body = await api.call("GET", f"/video/tasks?before={ids[3]}", token=bob)
    assert code == 404  # another user's task is no anchor


@pytest.mark.gen_test(timeout=60)
async def test_storage_quota_uploads_tus_and_parallel_race(ctx, api, media, monkeypatch):
    photo = cv2.imencode(".jpg", cv2.resize(cv2.imdecode(
        np.frombuffer(media["photo"], "uint8"), 1), (200, 200)))[1].tobytes()
    # room for two photos and a little, never three
    quota = 2 * len(photo) + len(photo) // 2
    monkeypatch.setitem(conf.LIMITS, conf.FREE,
                        dataclasses.replace(conf.LIMITS[conf.FREE], storage_bytes=quota))
    alice = await api.user("alice")
    _, session = await api.call("GET", "/api/session", token=alice)
    assert (session["usage_bytes"], session["quota_bytes"]) == (0, quota)
    first = await uploaded(api, alice, "image", "a.jpg", photo)
    # two uploads at once, each of which would fit alone: exactly one is stored
    answers = await asyncio.gather(*(upload(api, alice, "image", f"{n}.jpg", photo)
                                     for n in "bc"))
    assert sorted(code for code, _ in answers) == [200, 413], answers
    refused = next(body for code, body in answers if code == 413)
    assert refused["code"] == "over_quota"
    _, session = await api.call("GET", "/api/session", token=alice)
    assert session["usage_bytes"] == 2 * len(photo)
    code, body = await upload(api, alice, "image", "d.jpg", photo)  # declared: at once
    assert code == 413 and body["code"] == "over_quota"
    # streamed without a length: refused while the bytes arrive
    body, ctype = multipart({"filetype": "image"}, "file", "e.jpg", photo)

    async def producer(write):
        await write(body[:300])
        for _ in range((quota + FRAMING_SLACK) // 16384 + 4):  # past the quota and slack
            await write(b"\0" * 16384)

    resp = await api.client.fetch(tornado.httpclient.HTTPRequest(
        api.base_url + "/video/upload", method="POST", body_producer=producer,
        headers={"Content-Type": ctype, "Authorization": f"Bearer {alice}"}),
        raise_error=False)
    assert resp.code in (413, 599)
    if resp.code == 413:
        assert json.loads(resp.body)["code"] == "over_quota"
    # tus: the declared length is reserved at creation
    code, body = await api.call("POST", "/video/uploads/", raw=b"", headers=tus_headers(
        alice, **{"Upload-Length": str(len(photo)),
                  "Upload-Metadata": f"filetype {b64('image')}"}))
    assert code == 413 and body["code"] == "over_quota"
    # deleting makes room again
    assert (await api.call("POST", "/video/delete_file", {"filepath": first},
                           token=alice))[0] == 200
    resp = await api.client.fetch(api.base_url + "/video/uploads/", method="POST", body=b"",
                                  headers=tus_headers(alice, **{
                                      "Upload-Length": str(len(photo)),
                                      "Upload-Metadata": f"filetype {b64('image')}"}))
    assert resp.code == 201
    # ... and the reservation holds: a one-shot upload may not take that room meanwhile
    code, body = await upload(api, alice, "image", "f.jpg", photo)
    assert code == 413 and body["code"] == "over_quota"
    resp = await api.client.fetch(api.base_url + resp.headers["Location"], method="PATCH",
                                  body=photo, headers=tus_headers(alice, **{
                                      "Content-Type": "application/offset+octet-stream",
                                      "Upload-Offset": "0"}))
    assert resp.code == 204 and resp.headers["Upload-Filepath"]
    _, session = await api.call("GET", "/api/session", token=alice)
    assert session["usage_bytes"] == 2 * len(photo)
    leftovers = sorted(p.name for p in ctx.media.tmp.iterdir())
    assert leftovers == [], leftovers


@pytest.mark.gen_test(timeout=120)
async def test_delete_account_stops_tasks_and_leaves_nothing(ctx, api, media):
    alice, bob = await api.user("alice"), await api.user("bob")
    uid = await user_id(ctx, alice)
    image = await uploaded(api, alice, "image", "face.jpg", media["photo"])
    video = await uploaded(api, alice, "video", "clip.mp4", media["long"])
    await uploaded(api, bob, "image", "face.jpg", media["photo"])
    _, running = await api.call("POST", "/video/faceswap", {
        "imagepath": image, "videopath": video, "swapname": "run"}, token=alice)
    _, queued = await api.call("POST", "/video/faceswap", {
        "imagepath": image, "videopath": video, "swapname": "wait"}, token=alice)
    await wait_state(api, alice, running["task_id"], ("running",))
    tus = await api.client.fetch(api.base_url + "/video/uploads/", method="POST", body=b"",
                                 headers=tus_headers(alice, **{
                                     "Upload-Length": "5000",
                                     "Upload-Metadata": f"filetype {b64('video')}"}))
    await api.call("PATCH", tus.headers["Location"], raw=b"\0" * 1000, headers=tus_headers(
        alice, **{"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}))
    ws = await tornado.websocket.websocket_connect(
        api.base_url.replace("http", "ws") + f"/ws/tasks?token={alice}")
    for password, expected in (("wrong-pass", 403), ("", 400)):
        code, body = await api.call("POST", CUSTOMERS, {
            "action": "delete_account", "data": {"password": password}}, token=alice)
        assert code == expected and body["code"] in ("wrong_password", "bad_request"), body
    code, body = await api.call("POST", CUSTOMERS, {
        "action": "delete_account", "data": {"password": "secret123"}}, token=alice)
    assert code == 200 and body == {"status": 0}
    while await ws.read_message() is not None:
        pass  # the socket ends with the session
    assert ws.close_code == 4001
    assert (await api.call("GET", "/api/session", token=alice))[0] == 401
    assert await traces(ctx, uid, "alice") == {}
    assert not ctx.tasks.live and not ctx.tasks.running and not ctx.tasks.queue
    assert not list(ctx.media.tmp.iterdir())
    # bob keeps everything; the name is free again, the id is never reused
    code, files = await api.call("GET", "/video/files", token=bob)
    assert len(files["files"]) == 1
    code, again = await api.register("alice")
    assert code == 200 and again["id"] > uid


@pytest.mark.gen_test(timeout=60)
async def test_admin_delete_customer_and_listing_figures(ctx, api, media):
    admin = await make_admin(ctx, api)
    alice, bob = await api.user("alice"), await api.user("bob")
    uid = await user_id(ctx, alice)
    image = await uploaded(api, alice, "image", "face.jpg", media["photo"])
    video = await uploaded(api, alice, "video", "clip.mp4", media["short"])
    await plant_task(ctx, alice, image, video, "00000000000000aa", state="failed")
    code, body = await api.call("GET", CUSTOMERS + "?action=list_customer", token=admin)
    row = next(r for r in body["retlist"] if r["id"] == uid)
    assert row["usage_bytes"] == len(media["photo"]) + len(media["short"])
    assert (row["tasks"], row["active_tasks"], row["disabled"]) == (1, 0, False)
    assert row["quota_bytes"] == conf.LIMITS[conf.FREE].storage_bytes
    for token, data, expected, reason in (
            (bob, {"id": uid}, 403, "admin_only"),
            (admin, {"id": await user_id(ctx, admin)}, 409, "conflict"),
            (admin, {"id": 999999}, 404, "not_found"),
            (admin, {"id": "x"}, 400, "bad_request")):
        code, body = await api.call("POST", CUSTOMERS, {"action": "delete_customer",
                                                        "data": data}, token=token)
        assert (code, body["code"]) == (expected, reason), body
    code, body = await api.call("POST", CUSTOMERS, {"action": "delete_customer",
                                                    "data": {"id": uid}}, token=admin)
    assert code == 200
    assert (await api.call("GET", "/video/files", token=alice))[0] == 401
    assert await traces(ctx, uid, "alice") == {}
    code, body = await api.call("GET", CUSTOMERS + "?action=list_customer", token=admin)
    assert uid not in [r["id"] for r in body["retlist"]]


@pytest.mark.gen_test(timeout=60)
async def test_a_faceswap_racing_the_account_purge_keeps_no_task(ctx, api, media):
    """A faceswap that passed its checks while the account's purge ran (the user already
    disabled) takes its task back: nothing of the user is left."""
    alice = await api.user("alice")
    uid = await user_id(ctx, alice)
    image = await uploaded(api, alice, "image", "face.jpg", media["photo"])
    video = await uploaded(api, alice, "video", "clip.mp4", media["long"])
    user = await ctx.accounts.authenticate(alice)
    await ctx.repos.users.set_disabled(uid, True)  # what the purge does first
    with pytest.raises(ServiceError) as refused:
        await ctx.tasks.create(user, image, video, "late")
    assert refused.value.code == 403 and refused.value.reason == "account_disabled"
    assert await ctx.repos.tasks.for_owner(uid) == []
    assert not ctx.tasks.live and not ctx.tasks.queue
