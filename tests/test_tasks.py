"""Swap tasks end to end: real uploads, the real engine in worker processes, WebSocket
progress, playback and download, and the failure paths (crash, cancel, restart)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import av
import pytest
import tornado.httpclient
import tornado.websocket

from tests.media import multipart, talk_clips
from tests.test_uploads import until


@pytest.fixture(scope="module")
def clips(testdata: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return talk_clips(testdata, tmp_path_factory.mktemp("clips"), 8.0)


async def upload(api, token: str, filetype: str, name: str, content: bytes) -> str:
    body, ctype = multipart({"filetype": filetype}, "file", name, content)
    code, reply = await api.call("POST", "/video/upload", raw=body, token=token,
                                 headers={"Content-Type": ctype})
    assert code == 200, reply
    return reply["filepath"]


async def prepare(api, testdata: Path, clip: bytes, name: str = "alice"
                  ) -> tuple[str, str, str]:
    token = await api.user(name)
    image = await upload(api, token, "image", "face.jpg",
                         (testdata / "face_woman.jpg").read_bytes())
    video = await upload(api, token, "video", "clip.mp4", clip)
    return token, image, video


async def swap(api, token: str, image: str, video: str, swapname: str, **extra
               ) -> tuple[int, dict]:
    return await api.call("POST", "/video/faceswap", {
        "imagepath": image, "videopath": video, "swapname": swapname, **extra}, token=token)


async def wait_state(api, token: str, task_id: str, states: tuple[str, ...],
                     timeout: float = 90) -> dict:
    import time

    import tornado.gen

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, view = await api.call("POST", "/video/view_task", {"task_id": task_id},
                                    token=token)
        if view.get("state") in states:
            return view
        await tornado.gen.sleep(0.1)
    raise AssertionError(f"task never reached {states}: {view}")


async def plant_interrupted_task(ctx, token: str, image: str, video: str, task_id: str
                                 ) -> Path:
    """What a server killed mid-task leaves behind: a 'running' task (output
    ``alice/resumed.mp4``) and a partial file; returns the partial file."""
    user = await ctx.accounts.authenticate(token)
    await ctx.repos.tasks.create({
        "task_id": task_id, "owner_id": user.id, "username": user.username,
        "usertype": user.usertype, "imagepath": image, "videopath": video,
        "swapname": "resumed", "filepath": f"{user.username}/resumed.mp4", "many_faces": False,
        "keep_mouth": False, "quality": "fast", "state": "running", "percent": 42.0,
        "frames_done": 10, "frames_total": 30, "fps": 5.0, "eta_s": 4.0, "error": None})
    partial = ctx.media.tmp / f"task-{task_id}" / ".out.mp4.x.part"
    partial.parent.mkdir()
    partial.write_bytes(b"half a video")
    return partial


async def messages_until_done(ws, task_id: str) -> list[dict]:
    """The socket's messages for ``task_id`` up to its final state (all must be for it)."""
    messages = []
    while True:
        raw = await ws.read_message()
        assert raw is not None, "socket closed early"
        message = json.loads(raw)
        assert message["task_id"] == task_id
        messages.append(message)
        if message["state"] in ("finished", "failed", "cancelled"):
            return messages


def frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.mark.gen_test(timeout=120)
async def test_swap_end_to_end_with_websocket_playback_and_download(ctx, api, testdata, clips,
                                                                    tmp_path):
    token, image, video = await prepare(api, testdata, clips["short"])
    ws = await tornado.websocket.websocket_connect(
        api.base_url.replace("http", "ws") + f"/ws/tasks?token={token}")
    code, reply = await swap(api, token, image, video, "result", quality="fast")
    assert code == 200 and reply["status"] == 0, reply
    task_id = reply["task_id"]
    messages = await messages_until_done(ws, task_id)
    ws.close()
    assert messages[-1]["state"] == "finished", messages[-1]
    assert [m["state"] for m in messages][0] == "queued"
    running = [m for m in messages if m["state"] == "running" and m["frames_total"]]
    assert running and all(0 <= m["progress"] < 100 for m in running)
    assert [m["progress"] for m in running] == sorted(m["progress"] for m in running)
    code, view = await api.call("POST", "/video/view_task", {"task_id": task_id}, token=token)
    assert view["status"] == 1 and view["progress"] == "转换结束"
    assert view["filepath"] == "alice/result.mp4"
    assert view["warnings"] == [] == messages[0]["warnings"]  # a frontal, sharp photo
    code, listing = await api.call("GET", "/video/tasks", token=token)
    assert listing["tasks"][0]["task_id"] == task_id
    assert listing["tasks"][0]["state"] == "finished"

    resp = await api.client.fetch(f"{api.base_url}/static/media/alice/result.mp4?download=1",
                                  headers={"Authorization": f"Bearer {token}"})
    assert "attachment" in resp.headers["Content-Disposition"]
    out = tmp_path / "out.mp4"
    out.write_bytes(resp.body)
    resp = await api.client.fetch(f"{api.base_url}/video/test_resp/?path=/alice/result.mp4",
                                  headers={"Authorization": f"Bearer {token}",
                                           "Range": "bytes=0-99"})
    assert resp.code == 206 and len(resp.body) == 100
    # the engine's output contract
    source = tmp_path / "in.mp4"
    source.write_bytes(clips["short"])
    assert frame_count(out) == frame_count(source)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.format.name == "yuv420p"
        assert container.streams.audio, "audio was dropped"
        tags = " ".join(f"{k}={v}" for k, v in container.metadata.items()).lower()
        assert "ai" in tags or "synthetic" in tags, container.metadata
    data = out.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat"), "not fast-start"
    assert not list(ctx.media.tmp.iterdir())


@pytest.mark.gen_test(timeout=60)
async def test_faceswap_input_checks(ctx, api, testdata, clips):
    token, image, video = await prepare(api, testdata, clips["short"])
    bob = await api.user("bob")
    dog = await upload(api, token, "image", "dog.jpg",
                       (testdata / "no_human_face_dog.jpg").read_bytes())
    cases = [
        ({"imagepath": image, "videopath": video}, 400),  # no swapname
        ({"imagepath": image, "videopath": video, "swapname": "../x"}, 400),
        ({"imagepath": image, "videopath": video, "swapname": "ok", "quality": "ultra"}, 400),
        ({"imagepath": [image, video], "videopath": video, "swapname": "ok"}, 400),  # a
        # video is a face only alone (issue 13: a face video), a list holds photos
        ({"imagepath": "alice/../bob/x.jpg", "videopath": video, "swapname": "ok"}, 400),
        ({"imagepath": "alice/nothing.jpg", "videopath": video, "swapname": "ok"}, 404),
        ({"imagepath": dog, "videopath": video, "swapname": "ok"}, 400),  # no face
        ({"imagepath": image, "videopath": video, "swapname": "ok", "many_faces": "maybe"}, 400),
    ]
    for payload, expected in cases:
        code, body = await api.call("POST", "/video/faceswap", payload, token=token)
        assert code == expected and body["status"] == 1, (payload, body)
    code, body = await api.call("POST", "/video/faceswap", {
        "imagepath": dog, "videopath": video, "swapname": "ok"}, token=token)
    assert "no face" in body["msg"]
    # A photo that will disappoint is used, and the task says why.
    smile = await upload(api, token, "image", "smile.jpg",
                         (testdata / "face_obama.jpg").read_bytes())
    code, body = await swap(api, token, smile, video, "smiling", quality="fast")
    assert code == 200, body
    code, view = await api.call("POST", "/video/view_task", {"task_id": body["task_id"]},
                                token=token)
    assert [w["code"] for w in view["warnings"]] == ["photo_mouth_open"]
    assert view["warnings"][0]["msg"]
    # another user's files are not theirs to use
    code, body = await swap(api, bob, image, video, "stolen")
    assert code == 403 and body["status"] == 1
    code, body = await api.call("POST", "/video/faceswap", {
        "username": "alice", "imagepath": image, "videopath": video, "swapname": "x"},
        token=bob)
    assert code == 403


@pytest.mark.gen_test(timeout=120)
async def test_tasks_are_private_and_view_task_errors_use_status_2(ctx, api, testdata, clips):
    token, image, video = await prepare(api, testdata, clips["short"])
    bob = await api.user("bob")
    code, reply = await swap(api, token, image, video, "mine", quality="fast")
    task_id = reply["task_id"]
    for path, body in (("/video/view_task", {"task_id": task_id}),
                       ("/video/cancel_task", {"task_id": task_id})):
        code, answer = await api.call("POST", path, body, token=bob)
        assert code == 404, answer
    code, answer = await api.call("POST", "/video/view_task", {"task_id": task_id}, token=bob)
    assert answer["status"] == 2 and answer["progress"]
    code, answer = await api.call("GET", "/video/tasks", token=bob)
    assert answer["tasks"] == []
    for payload, expected in (({}, 400), ({"task_id": "nope"}, 404), ({"task_id": 5}, 400)):
        code, answer = await api.call("POST", "/video/view_task", payload, token=token)
        assert code == expected and answer["status"] == 2, answer
    code, answer = await api.call("POST", "/video/view_task", {"task_id": task_id})
    assert code == 401 and answer["status"] == 2
    ws_url = api.base_url.replace("http", "ws") + "/ws/tasks?token=wrong"
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await tornado.websocket.websocket_connect(ws_url)
    assert refused.value.code == 401
    await wait_state(api, token, task_id, ("finished",))
    code, answer = await swap(api, token, image, video, "mine")
    assert code == 409  # the output name is taken


@pytest.mark.gen_test(timeout=120)
async def test_corrupt_video_fails_the_task_with_a_message(ctx, api, testdata, clips):
    token, image, video = await prepare(api, testdata, clips["short"])
    (ctx.media.root / video).write_bytes(os.urandom(20000))  # damaged after upload
    code, reply = await swap(api, token, image, video, "broken")
    view = await wait_state(api, token, reply["task_id"], ("failed", "finished"))
    assert view["state"] == "failed" and view["status"] == 2 and view["progress"]
    assert not (ctx.media.root / "alice" / "broken.mp4").exists()


@pytest.mark.gen_test(timeout=180)
async def test_killed_worker_fails_one_task_and_the_next_succeeds(ctx, api, testdata, clips):
    token, image, video = await prepare(api, testdata, clips["long"])
    code, reply = await swap(api, token, image, video, "victim")
    task_id = reply["task_id"]
    await wait_state(api, token, task_id, ("running",))
    view = {}
    while not view.get("frames_done"):
        code, view = await api.call("POST", "/video/view_task", {"task_id": task_id},
                                    token=token)
    os.kill(ctx.tasks.dispatcher.worker_pid(task_id), signal.SIGKILL)
    view = await wait_state(api, token, task_id, ("failed", "finished"))
    assert view["state"] == "failed" and "crash" in view["progress"]
    page, _ = await ctx.metrics_page("")
    assert b"\nfaceswap_worker_restarts_total 1.0\n" in page
    assert not list(ctx.media.tmp.iterdir())
    _, short_video = None, await upload(api, token, "video", "s.mp4", clips["short"])
    code, reply = await swap(api, token, image, short_video, "after", quality="fast")
    view = await wait_state(api, token, reply["task_id"], ("failed", "finished"))
    assert view["state"] == "finished", view


@pytest.mark.gen_test(timeout=180)
async def test_cancel_running_and_queued_tasks(ctx, api, testdata, clips):
    import time

    token, image, video = await prepare(api, testdata, clips["long"])
    _, first = await swap(api, token, image, video, "first")
    _, second = await swap(api, token, image, video, "second")  # queued behind the first
    await wait_state(api, token, first["task_id"], ("running",))
    code, view = await api.call("POST", "/video/view_task", {"task_id": second["task_id"]},
                                token=token)
    assert view["state"] == "queued"
    assert (await api.call("POST", "/video/cancel_task", {"task_id": second["task_id"]},
                           token=token))[0] == 200
    view = {}
    while not view.get("frames_done"):
        code, view = await api.call("POST", "/video/view_task", {"task_id": first["task_id"]},
                                    token=token)
    started = time.monotonic()
    assert (await api.call("POST", "/video/cancel_task", {"task_id": first["task_id"]},
                           token=token))[0] == 200
    view = await wait_state(api, token, first["task_id"], ("cancelled", "failed", "finished"))
    assert view["state"] == "cancelled" and time.monotonic() - started < 1.5
    code, view = await api.call("POST", "/video/view_task", {"task_id": second["task_id"]},
                                token=token)
    assert view["state"] == "cancelled" and view["status"] == 2
    code, again = await api.call("POST", "/video/cancel_task", {"task_id": first["task_id"]},
                                 token=token)
    assert code == 409
    assert not list(ctx.media.tmp.iterdir())
    assert not (ctx.media.root / "alice" / "first.mp4").exists()


@pytest.mark.gen_test(timeout=120)
async def test_restart_requeues_unfinished_tasks_and_removes_partial_output(ctx, api, testdata,
                                                                           clips):
    token, image, video = await prepare(api, testdata, clips["short"])
    partial = await plant_interrupted_task(ctx, token, image, video, "deadbeef00000001")
    assert await ctx.tasks.recover() == 1
    view = await wait_state(api, token, "deadbeef00000001", ("finished", "failed"))
    assert view["state"] == "finished", view
    assert (ctx.media.root / "alice" / "resumed.mp4").stat().st_size > 1000
    assert not partial.parent.exists()


@pytest.mark.gen_test(timeout=60)
async def test_many_websocket_clients_and_no_leak_when_they_leave(ctx, api, testdata, clips):
    token, image, video = await prepare(api, testdata, clips["short"])
    url = api.base_url.replace("http", "ws") + f"/ws/tasks?token={token}"
    sockets = [await tornado.websocket.websocket_connect(url) for _ in range(20)]
    _, reply = await swap(api, token, image, video, "shared", quality="fast")
    for ws in sockets:  # every client hears about the new task
        assert json.loads(await ws.read_message())["task_id"] == reply["task_id"]
    for ws in sockets:
        ws.close()
    await until(lambda: not ctx.tasks.subscribers, attempts=100)
    assert ctx.tasks.subscribers == {}
    await wait_state(api, token, reply["task_id"], ("finished",))


@pytest.mark.gen_test(timeout=180)
async def test_per_user_concurrency_follows_the_usertype(ctx, api, testdata, clips):
    from engine.dispatch import LocalDispatcher

    old = ctx.tasks.dispatcher
    ctx.tasks.dispatcher = LocalDispatcher(2)  # two slots for this test
    await old.close()
    alice, image, video = await prepare(api, testdata, clips["long"])  # free user: 1 at once
    _, first = await swap(api, alice, image, video, "a1")
    _, second = await swap(api, alice, image, video, "a2")
    bob, bob_image, bob_video = await prepare(api, testdata, clips["long"], "bob")
    await ctx.repos.users.set_usertype((await ctx.accounts.authenticate(bob)).id, 2000)
    bob = await api.login("bob")  # premium: up to 4 at once
    _, third = await swap(api, bob, bob_image, bob_video, "b1")
    await wait_state(api, alice, first["task_id"], ("running",))
    await wait_state(api, bob, third["task_id"], ("running",))
    code, view = await api.call("POST", "/video/view_task", {"task_id": second["task_id"]},
                                token=alice)
    assert view["state"] == "queued"  # a slot was free, but alice is at her limit
    for token, task in ((alice, first), (alice, second), (bob, third)):
        view = await wait_state(api, token, task["task_id"], ("finished", "failed"), 150)
        assert view["state"] == "finished", view
