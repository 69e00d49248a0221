"""Hardening, second round (issue 14): decompression and index bombs, limits that trust
the container, upload and login races, sessions that outlive logout, and the 5xx and
protocol details an attack on the running service found. Each test fails without its fix.

Memory is measured on this process, which is the server under test (pytest-tornado runs
the application in it): ``VmHWM`` (peak RSS) is reset before each bomb and read after.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tornado.httpclient
import tornado.tcpclient
import tornado.websocket

import conf
from tests.media import (
    claim_mp4_samples,
    cut_clip,
    encode_video,
    png_bomb,
    set_mp4_durations,
    set_mp4_sample_deltas,
)
from tests.serverproc import ROOT, Server, alive, request
from tests.test_tasks import prepare, swap
from tests.test_uploads import clip, leftovers, until  # noqa: F401 - the clip fixture
from tests.test_uploads import upload as upload_reply

CUSTOMERS = "/api/mgr/customers"
MB = 1024 * 1024


def reset_peak_rss() -> int:
    """Reset this process's peak RSS (Linux clear_refs 5) and return the current RSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status("VmRSS")


def peak_rss() -> int:
    return _status("VmHWM")


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(field)


@pytest.fixture(scope="module")
def crafted(testdata: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("crafted")
    talk = testdata / "talk_480sq_33s.mp4"
    long = cut_clip(talk, folder / "long.mp4", 20.0).read_bytes()
    short = cut_clip(talk, folder / "short.mp4", 1.0).read_bytes()
    return {
        "png_bomb": png_bomb(30000, 30000),  # 109 KB, 900 megapixels
        "png_huge": png_bomb(100000, 100000, rows=4),  # header and a few rows
        "samples": claim_mp4_samples(short, 80_000_000),
        "big_video": encode_video(folder / "big.mp4", 2560, 1440, 2).read_bytes(),
        "long": long,
        "long_claims_2s": set_mp4_durations(long, 2.0),
        "deltas_1": set_mp4_sample_deltas(long, 1),
    }


async def refused(api, token: str, kind: str, content: bytes, name: str) -> tuple[int, dict]:
    return await upload_reply(api, token, kind, name, content)


# -- memory and work bombs ------------------------------------------------------------
@pytest.mark.gen_test(timeout=120)
async def test_bombs_are_refused_from_their_headers_with_bounded_memory(ctx, api, crafted):
    token = await api.user("bomber")
    cases = [("image", "png_bomb", "b.png", 413, "photo_too_large"),
             ("image", "png_huge", "h.png", 413, "photo_too_large"),
             ("video", "samples", "s.mp4", 413, "too_many_samples"),
             ("video", "big_video", "v.mp4", 413, "video_too_large")]
    for kind, key, name, status, code in cases:
        before = reset_peak_rss()
        status_got, body = await refused(api, token, kind, crafted[key], name)
        grown = peak_rss() - before
        assert (status_got, body.get("code")) == (status, code), (key, body)
        assert body["status"] == 1 and body["msg"]
        assert grown < 300 * MB, (key, grown / MB)
    assert leftovers(ctx) == []
    assert await ctx.repos.db.uploads.count_documents({}) == 0


def test_probe_child_is_bounded_in_memory_and_time(testdata):
    from engine.errors import ProbeRefused
    from engine.probe import ProbeLimits, probe_isolated

    video = str(testdata / "talk_720p.mp4")
    with pytest.raises(ProbeRefused) as small:
        probe_isolated("video", video, ProbeLimits(memory_mb=40))
    assert small.value.reason == "probe_limit" and small.value.oversize
    with pytest.raises(ProbeRefused) as slow:
        probe_isolated("video", video, ProbeLimits(timeout_s=0.001))
    assert slow.value.reason == "probe_limit"
    assert probe_isolated("video", video, ProbeLimits())["frames"] == 282


@pytest.mark.gen_test(timeout=60)
async def test_photo_and_video_resolution_follow_the_usertype(ctx, api, crafted, testdata):
    token = await api.user("tiers")
    code, body = await refused(api, token, "video", crafted["big_video"], "v.mp4")
    assert code == 413 and body["code"] == "video_too_large"
    user = await ctx.repos.users.by_username("tiers")
    await ctx.repos.users.set_usertype(user["id"], conf.BASIC)  # 2560x1440 is allowed there
    code, body = await refused(api, token, "video", crafted["big_video"], "v.mp4")
    assert code == 200, body
    # back to the free tier: faceswap refuses the file its tier does not allow
    code, photo = await refused(api, token, "image", (testdata / "face_woman.jpg").read_bytes(),
                                "f.jpg")
    await ctx.repos.users.set_usertype(user["id"], conf.FREE)
    code, reply = await swap(api, token, photo["filepath"], body["filepath"], "big")
    assert code == 413 and reply["code"] == "video_too_large", reply


def test_worker_processes_have_an_address_space_limit(io_loop):
    import resource

    from engine.dispatch import LocalDispatcher

    dispatcher = LocalDispatcher(1, io_loop.asyncio_loop, memory_mb=3000)
    try:
        future = dispatcher._executor(0).submit(resource.getrlimit, resource.RLIMIT_AS)
        assert future.result(timeout=60) == (3000 * MB, 3000 * MB)
    finally:
        io_loop.run_sync(dispatcher.close, timeout=60)


# -- limits that trust the container ---------------------------------------------------
@pytest.mark.gen_test(timeout=60)
async def test_length_is_what_the_packets_span_not_what_headers_claim(ctx, api, crafted,
                                                                      monkeypatch):
    monkeypatch.setitem(conf.LIMITS, conf.FREE,
                        conf.dataclasses.replace(conf.LIMITS[conf.FREE], video_seconds=10,
                                                 upload_seconds=10))
    token = await api.user("liar")
    code, body = await refused(api, token, "video", crafted["long_claims_2s"], "l.mp4")
    assert code == 413 and body["code"] == "too_long" and "20 s" in body["msg"], body
    code, body = await refused(api, token, "video", crafted["deltas_1"], "d.mp4")
    assert code == 415 and body["code"] == "bad_timestamps", body
    assert leftovers(ctx) == []


def test_the_worker_stops_at_the_length_limit():
    from services.tasks import _frame_budget

    assert _frame_budget({"frames": 600, "duration": 20.0}, 60) == 600
    assert _frame_budget({"frames": 600, "duration": 20.0}, 10) == 300
    assert _frame_budget({"frames": None, "duration": None}, 10) is None
    # a segment: its share of the frames (rounded up, plus one), the limit still bounding it
    assert _frame_budget({"frames": 600, "duration": 20.0}, 60, (5.0, 6.5)) == 46
    assert _frame_budget({"frames": 600, "duration": 20.0}, 1, (5.0, 6.5)) == 31


# -- concurrency -----------------------------------------------------------------------
def tus_headers(token: str, **extra: str) -> dict[str, str]:
    return {"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}", **extra}


async def tus_create(api, token: str, length: int, kind: str = "video") -> str:
    meta = "filetype " + base64.b64encode(kind.encode()).decode()
    resp = await api.client.fetch(api.base_url + "/video/uploads/", method="POST", body=b"",
                                  headers=tus_headers(token, **{"Upload-Length": str(length),
                                                                "Upload-Metadata": meta}))
    assert resp.code == 201
    return resp.headers["Location"]


async def start_patch(api, token: str, location: str, offset: int, length: int,
                      first: bytes):
    """A PATCH whose headers and first bytes are sent; the rest is up to the caller."""
    port = int(api.base_url.rsplit(":", 1)[1])
    stream = await tornado.tcpclient.TCPClient().connect("127.0.0.1", port)
    await stream.write((f"PATCH {location} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
                        f"Authorization: Bearer {token}\r\nUpload-Offset: {offset}\r\n"
                        f"Content-Type: application/offset+octet-stream\r\n"
                        f"Content-Length: {length}\r\n\r\n").encode() + first)
    return stream


def locks(ctx) -> dict:
    """Uploads a request is working on (empty where the server keeps no such record)."""
    return getattr(ctx.uploads, "tus_locks", {})


async def read_response(stream) -> tuple[int, bytes]:
    head = await stream.read_until(b"\r\n\r\n")
    status = int(head.split()[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    body = await stream.read_bytes(length) if length else b""
    return status, head + body


@pytest.mark.gen_test(timeout=60)
async def test_one_request_per_tus_upload_at_a_time(ctx, api, clip):  # noqa: F811
    token = await api.user("racer")
    location = await tus_create(api, token, len(clip))
    upload_id = location.rsplit("/", 1)[1]
    first = await start_patch(api, token, location, 0, len(clip), clip[:1000])
    await until(lambda: upload_id in locks(ctx), attempts=200)  # the PATCH is under way
    second = await api.client.fetch(api.base_url + location, method="PATCH", body=clip,
                                    raise_error=False, headers=tus_headers(
                                        token, **{"Upload-Offset": "0", "Content-Type":
                                                  "application/offset+octet-stream"}))
    assert second.code == 423 and json.loads(second.body)["code"] == "locked"
    await first.write(clip[1000:])
    status, raw = await read_response(first)
    first.close()
    assert status == 204 and b"Upload-Filepath" in raw, raw
    filepath = raw.split(b"Upload-Filepath: ")[1].split(b"\r\n")[0].decode()
    stored = ctx.media.root / filepath
    assert hashlib.sha256(stored.read_bytes()).digest() == hashlib.sha256(clip).digest()


@pytest.mark.gen_test(timeout=60)
async def test_delete_during_a_patch_ends_both_cleanly(ctx, api, clip):  # noqa: F811
    token = await api.user("quitter")
    location = await tus_create(api, token, len(clip))
    upload_id = location.rsplit("/", 1)[1]
    patch = await start_patch(api, token, location, 0, len(clip), clip[:1000])
    await until(lambda: upload_id in locks(ctx), attempts=200)
    deleted = await api.client.fetch(api.base_url + location, method="DELETE",
                                     raise_error=False, headers=tus_headers(token))
    assert deleted.code == 204
    await patch.write(clip[1000:])
    status, raw = await read_response(patch)
    patch.close()
    assert status == 410 and b'"terminated"' in raw, raw
    await until(lambda: not leftovers(ctx))
    assert leftovers(ctx) == []
    assert await ctx.repos.db.tus_uploads.count_documents({}) == 0
    head = await api.client.fetch(api.base_url + location, method="HEAD", raise_error=False,
                                  headers=tus_headers(token))
    assert head.code == 404


@pytest.mark.gen_test(timeout=60)
async def test_open_tus_uploads_are_capped_also_in_parallel(ctx, api):
    token = await api.user("hoarder")
    client = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=50)
    meta = "filetype " + base64.b64encode(b"video").decode()
    try:
        replies = await asyncio.gather(*[client.fetch(
            api.base_url + "/video/uploads/", method="POST", body=b"", raise_error=False,
            headers=tus_headers(token, **{"Upload-Length": "100", "Upload-Metadata": meta}))
            for _ in range(12)])
    finally:
        client.close()
    codes = sorted(r.code for r in replies)
    cap = conf.LIMITS[conf.FREE].open_uploads
    assert codes == [201] * cap + [429] * (12 - cap), codes
    assert json.loads(replies[codes.index(429)].body if False else next(
        r.body for r in replies if r.code == 429))["code"] == "too_many_uploads"


async def parallel_logins(api, attempts: list[tuple[str, str]]) -> list[int]:
    client = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=64)
    try:
        replies = await asyncio.gather(*[client.fetch(
            api.base_url + CUSTOMERS, method="POST", raise_error=False, body=json.dumps(
                {"action": "login", "data": {"username": u, "password": p}}),
            headers={"Content-Type": "application/json"}) for u, p in attempts])
    finally:
        client.close()
    return [r.code for r in replies]


@pytest.mark.gen_test(timeout=60)
async def test_login_throttle_holds_under_concurrency(ctx, api):
    await api.register("target", "secret123")
    codes = await parallel_logins(api, [("target", "wrongpass")] * 15)
    assert sorted(codes) == [401] * 5 + [429] * 10, codes  # only 5 passwords were checked
    assert await parallel_logins(api, [("target", "secret123")]) == [429]
    ctx.accounts.throttle.failures.clear()
    codes = await parallel_logins(api, [(f"nobody{i}", "wrongpass") for i in range(40)])
    assert codes.count(401) == 20 and codes.count(429) == 20, codes


@pytest.mark.gen_test(timeout=120)
async def test_parallel_faceswaps_with_one_swapname_exactly_one_wins(ctx, api, testdata,
                                                                     clip):  # noqa: F811
    token, image, video = await prepare(api, testdata, clip, "twin")
    replies = await asyncio.gather(*[swap(api, token, image, video, "same", quality="fast")
                                     for _ in range(3)])
    codes = sorted(code for code, _ in replies)
    assert codes == [200, 409, 409], replies
    assert all(body["code"] == "name_taken" for code, body in replies if code == 409)
    task_id = next(body["task_id"] for code, body in replies if code == 200)
    code, _ = await api.call("POST", "/video/cancel_task", {"task_id": task_id}, token=token)
    for _ in range(200):  # once cancelled, the name is free again
        code, body = await swap(api, token, image, video, "same", quality="fast")
        if code != 409:
            break
        await asyncio.sleep(0.05)
    assert code == 200, body
    await api.call("POST", "/video/cancel_task", {"task_id": body["task_id"]}, token=token)


@pytest.mark.gen_test(timeout=120)
async def test_parallel_faceswaps_never_run_face_detection_in_the_server(ctx, api, testdata,
                                                                        clip):  # noqa: F811
    """Three faceswap calls at once used to run dlib's detector on three server threads,
    which crashed the whole server (SIGSEGV). Faces are counted by the probe process, at
    upload or, for a photo recorded without a count, at faceswap."""
    token, image, video = await prepare(api, testdata, clip, "crowd")
    record = await ctx.repos.uploads.get(image)
    assert record["faces"] == 1 and record["photo_check"]["ok"]
    await ctx.repos.db.uploads.update_one({"filepath": image},
                                          {"$unset": {"faces": "", "photo_check": ""}})
    replies = await asyncio.gather(*[swap(api, token, image, video, f"n{i}", quality="fast")
                                     for i in range(3)])
    assert [code for code, _ in replies] == [200] * 3, replies
    for _, body in replies:
        await api.call("POST", "/video/cancel_task", {"task_id": body["task_id"]}, token=token)
    assert (await api.call("GET", "/healthz"))[0] == 200


@pytest.mark.gen_test(timeout=30)
async def test_usernames_are_unique_ignoring_case_and_compatibility_forms(ctx, api):
    assert (await api.register("Alice"))[0] == 200
    for twin in ("alice", "ALICE", "ＡＬＩＣＥ", "Ａlice"):
        code, body = await api.register(twin)
        assert code == 409 and body["code"] == "name_taken", (twin, body)
    token = await api.login("aLiCe")
    code, session = await api.call("GET", "/api/session", token=token)
    assert session["userdata"]["username"] == "Alice"
    for bad in ("...", ".hidden", "a..b", "alice\n"):
        code, body = await api.register(bad)
        assert code == 400 and body["code"] == "bad_username", (bad, body)


# -- every 5xx left ----------------------------------------------------------------------
@pytest.mark.gen_test(timeout=60)
async def test_former_500s_are_4xx_with_the_envelope(ctx, api, testdata, clip):  # noqa: F811
    token, image, video = await prepare(api, testdata, clip, "probe")
    code, body = await swap(api, token, image, video, "abc.")
    assert code == 400 and body["code"] == "bad_swapname", body
    deep = "[" * 100_000 + "]" * 100_000
    code, body = await api.call("POST", CUSTOMERS, raw=deep,
                                headers={"Content-Type": "application/json"})
    assert code == 400 and body["status"] == 1, body
    for action in ("add_customer", "login"):
        raw = ('{"action": "' + action + '", "data": {"username": "surrogate", '
               '"password": "abc\\ud800def"}}')
        code, body = await api.call("POST", CUSTOMERS, raw=raw,
                                    headers={"Content-Type": "application/json"})
        assert code == 400 and body["code"] == "bad_text", (action, body)
    resp = await api.client.fetch(api.base_url + "/video/uploads/", method="POST", body=b"",
                                  raise_error=False, headers=tus_headers(
                                      token, **{"Upload-Length": "²"}))
    assert resp.code == 400 and json.loads(resp.body)["status"] == 1
    code, body = await api.call("POST", CUSTOMERS, raw=b'{"action": "' + b"x" * (2 * MB) + b'"}',
                                headers={"Content-Type": "application/json"})
    assert code == 413 and body["code"] == "too_large", body


@pytest.mark.gen_test(timeout=60)
async def test_tus_protocol_details(ctx, api):
    token = await api.user("tusser")
    resp = await api.client.fetch(api.base_url + "/video/uploads/", method="POST", body=b"",
                                  raise_error=False, headers={"Authorization": f"Bearer {token}"})
    assert resp.code == 412 and resp.headers.get("Tus-Version") == "1.0.0"
    location = await tus_create(api, token, 10)
    for offset in ("-1", "abc", None, "²"):
        headers = tus_headers(token, **{"Content-Type": "application/offset+octet-stream"})
        if offset is not None:
            headers["Upload-Offset"] = offset
        resp = await api.client.fetch(api.base_url + location, method="PATCH", body=b"x",
                                      raise_error=False, headers=headers)
        assert resp.code == 400 and json.loads(resp.body)["code"] == "bad_offset", offset


@pytest.mark.gen_test(timeout=60)
async def test_ranges_if_range_and_encoded_separators(ctx, api):
    token = await api.user("ranger")
    (ctx.media.user_dir("ranger") / "f.mp4").write_bytes(bytes(range(256)) * 40)
    url = api.base_url + "/static/media/ranger/f.mp4"
    auth = {"Authorization": f"Bearer {token}"}
    full = await api.client.fetch(url, headers=auth)
    etag, modified = full.headers["Etag"], full.headers["Last-Modified"]

    async def get(**headers: str) -> tornado.httpclient.HTTPResponse:
        return await api.client.fetch(url, headers={**auth, **headers}, raise_error=False)

    assert (await get(Range="bytes=0-9", **{"If-Range": etag})).code == 206
    assert (await get(Range="bytes=0-9", **{"If-Range": modified})).code == 206
    stale = await get(Range="bytes=0-9", **{"If-Range": '"not-the-etag"'})
    assert stale.code == 200 and len(stale.body) == 10240
    old = await get(Range="bytes=0-9", **{"If-Range": "Mon, 01 Jan 2001 00:00:00 GMT"})
    assert old.code == 200 and len(old.body) == 10240
    for bad in ("bytes=--5", "bytes=5-3-", "bytes=1-2,4-5", "bytes=x"):
        resp = await get(Range=bad)
        assert resp.code == 200 and len(resp.body) == 10240, bad
    resp = await api.client.fetch(api.base_url + "/static/media/ranger%2ff.mp4", headers=auth,
                                  raise_error=False)
    assert resp.code == 400 and json.loads(resp.body)["code"] == "bad_path"


# -- sessions -----------------------------------------------------------------------------
async def socket_for(api, token: str):
    return await tornado.websocket.websocket_connect(
        api.base_url.replace("http", "ws") + f"/ws/tasks?token={token}")


async def closed(ws) -> bool:
    """Whether the server closes ``ws`` (bounded wait: the test fails, it does not hang)."""
    try:
        return await asyncio.wait_for(ws.read_message(), 15) is None
    except TimeoutError:
        return False


@pytest.mark.gen_test(timeout=60)
async def test_websockets_end_with_their_session(ctx, api):
    import datetime as dt

    token = await api.user("socky")
    other = await api.login("socky")
    ws, kept = await socket_for(api, token), await socket_for(api, other)
    code, _ = await api.call("POST", CUSTOMERS, {"action": "logout"}, token=token)
    assert code == 200 and await closed(ws)
    assert kept.protocol is not None and kept.close_code is None  # another session lives on
    # an administrator disables the user: every session ends
    await api.register("boss")
    boss = await ctx.repos.users.by_username("boss")
    await ctx.repos.users.set_usertype(boss["id"], conf.ADMIN)
    admin = await api.login("boss")
    user = await ctx.repos.users.by_username("socky")
    code, body = await api.call("POST", CUSTOMERS, {"action": "disable_customer", "data": {
        "id": user["id"], "disabled": True}}, token=admin)
    assert code == 200, body
    assert await closed(kept)
    assert (await api.call("GET", "/api/session", token=other))[0] == 401
    code, body = await api.call("POST", CUSTOMERS, {"action": "login", "data": {
        "username": "socky", "password": "secret123"}})
    assert code == 403 and body["code"] == "account_disabled"
    # expiry: a session of three seconds
    short = await ctx.repos.sessions.create(boss["id"], dt.timedelta(seconds=3))
    ws = await socket_for(api, short)
    assert await closed(ws)


def cookies_of(resp) -> dict[str, str]:
    return dict(c.split(";")[0].split("=", 1) for c in resp.headers.get_list("Set-Cookie"))


@pytest.mark.gen_test(timeout=60)
async def test_xsrf_rotates_at_login_and_cross_site_login_is_refused(ctx, api):
    await api.register("rotor")
    page = await api.client.fetch(api.base_url + "/api/session", raise_error=False)
    planted = cookies_of(page)["_xsrf"]
    login = await api.client.fetch(api.base_url + CUSTOMERS, method="POST", headers={
        "Content-Type": "application/json", "Cookie": f"_xsrf={planted}",
        "X-XSRFToken": planted}, body=json.dumps(
            {"action": "login", "data": {"username": "rotor", "password": "secret123"}}))
    jar = cookies_of(login)
    fresh = jar["_xsrf"]
    assert fresh != planted and json.loads(login.body)["xsrf"]
    session = jar["session"]

    async def with_token(xsrf: str) -> int:
        """A cookie request as the browser now sends it (its cookie jar holds the fresh
        _xsrf) with ``xsrf`` as the token, as a forged form would carry a known one."""
        resp = await api.client.fetch(api.base_url + "/video/tasks", raise_error=False,
                                      method="GET", headers={"Cookie": f"session={session}"})
        assert resp.code == 200
        resp = await api.client.fetch(
            api.base_url + "/video/cancel_task", method="POST", raise_error=False,
            body=json.dumps({"task_id": "0" * 16}), headers={
                "Content-Type": "application/json", "X-XSRFToken": xsrf,
                "Cookie": f"session={session}; _xsrf={fresh}"})
        return resp.code

    assert await with_token(fresh) == 404  # accepted (no such task)
    assert await with_token(planted) == 403  # the planted token is no longer valid
    forged = await api.client.fetch(api.base_url + CUSTOMERS, method="POST", raise_error=False,
                                    body="action=login&username=rotor&password=secret123",
                                    headers={"Content-Type": "application/x-www-form-urlencoded",
                                             "Origin": "https://evil.example",
                                             "Sec-Fetch-Site": "cross-site"})
    assert forged.code == 403 and json.loads(forged.body)["code"] == "cross_site"
    assert "session" not in cookies_of(forged)


# -- faults ---------------------------------------------------------------------------------
def test_create_admin_while_the_server_runs_uses_its_database(tmp_path: Path):
    server = Server(tmp_path / "data").start()
    try:
        db_pid = server.db_pid()
        env = {**os.environ, "FACESWAP_BCRYPT_ROUNDS": "6"}
        env.pop("FACESWAP_MONGO_URL", None)
        out = subprocess.run([sys.executable, str(ROOT / "server.py"), "create-admin", "chief",
                              "--password", "chiefpass1", "--data-dir",
                              str(tmp_path / "data")],
                             capture_output=True, text=True, timeout=120, env=env)
        assert out.returncode == 0 and "created administrator chief" in out.stdout, out.stderr
        assert alive(db_pid) and server.db_pid() == db_pid
        assert request(server.port, "/healthz")[0] == 200
        code, body = request(server.port, CUSTOMERS, {
            "action": "login", "data": {"username": "chief", "password": "chiefpass1"}})
        assert code == 200 and body["userdata"]["usertype"] == conf.ADMIN
        # a second server on the same data dir refuses to start and leaves the first alone
        second = subprocess.run([sys.executable, str(ROOT / "server.py"), "--port", "0",
                                 "--data-dir", str(tmp_path / "data"), "--workers", "1"],
                                capture_output=True, text=True, timeout=120, env=env)
        assert second.returncode == 2 and "in use by a running server" in second.stderr, \
            second.stderr[-2000:]
        assert alive(db_pid) and request(server.port, "/healthz")[0] == 200
    finally:
        server.stop()


def test_a_task_over_the_worker_memory_limit_fails_alone(io_loop, testdata, tmp_path):
    from engine import EngineError
    from engine.dispatch import Job, JobFailed, LocalDispatcher

    video = cut_clip(testdata / "talk_480sq_33s.mp4", tmp_path / "c.mp4", 1.0)
    job = Job(task_id="over", image_path=str(testdata / "face_woman.jpg"),
              video_path=str(video), out_path=str(tmp_path / "out.mp4"), quality="fast")
    # so little that the worker cannot even load its libraries: the task fails, the
    # server (this process) does not notice
    tight = LocalDispatcher(1, io_loop.asyncio_loop, memory_mb=350)
    try:
        with pytest.raises((JobFailed, EngineError)) as failed:
            io_loop.run_sync(lambda: tight.run(job, lambda *a: None), timeout=120)
        print("over the limit:", type(failed.value).__name__, failed.value)
        # the same dispatcher (its slot rebuilt) still takes the next job
        with pytest.raises((JobFailed, EngineError)):
            io_loop.run_sync(lambda: tight.run(job, lambda *a: None), timeout=120)
    finally:
        io_loop.run_sync(tight.close, timeout=60)
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.gen_test(timeout=30)
async def test_names_stored_before_the_case_rule_keep_logging_in(ctx, api, settings):
    from services.accounts import username_key
    from storage.database import ensure_indexes

    await api.register("bob")
    bob = await ctx.repos.users.by_username("bob")
    # an old twin, written as the previous release did (no key), and an old dotted name
    for name, uid in (("Bob", 9001), ("old..name", 9002)):
        await ctx.repos.db.users.insert_one({"id": uid, "username": name, "usertype": 1,
                                             "password_hash": bob["password_hash"]})
    await ensure_indexes(ctx.repos.db, username_key)  # start-up: keys filled where possible
    assert (await ctx.repos.users.by_username("old..name"))["username_key"] == "old..name"
    assert "username_key" not in await ctx.repos.users.by_username("Bob")
    for name, uid in (("Bob", 9001), ("bob", bob["id"]), ("old..name", 9002)):
        code, body = await api.call("POST", CUSTOMERS, {"action": "login", "data": {
            "username": name, "password": "secret123"}})
        assert code == 200 and body["userdata"]["id"] == uid, (name, body)


@pytest.mark.gen_test(timeout=30)
async def test_a_chunked_body_over_the_limit_is_413_with_the_envelope(ctx, api):
    async def produce(write) -> None:
        for _ in range(3):
            await write(b" " * (600 * 1024))  # 1.8 MB in all, no Content-Length

    resp = await api.client.fetch(api.base_url + CUSTOMERS, method="POST", raise_error=False,
                                  body_producer=produce,
                                  headers={"Content-Type": "application/json"})
    assert resp.code == 413 and json.loads(resp.body)["code"] == "too_large", resp.body[:200]


@pytest.mark.gen_test(timeout=120)
async def test_the_worker_stops_at_the_frames_the_probe_allowed(ctx, api, testdata,
                                                                clip):  # noqa: F811
    from tests.test_tasks import frame_count, wait_state

    token, image, video = await prepare(api, testdata, clip, "budget")
    record = await ctx.repos.uploads.get(video)
    assert record["frames"] > 20 and record["duration"] == pytest.approx(1.0, abs=0.1)
    # as if the scan had found 12 frames in 0.4 s: the worker must stop after 12
    await ctx.repos.db.uploads.update_one({"filepath": video}, {"$set": {
        "frames": 12, "duration": 0.4}})
    code, reply = await swap(api, token, image, video, "cut", quality="fast")
    assert code == 200, reply
    view = await wait_state(api, token, reply["task_id"], ("finished", "failed"))
    assert view["state"] == "finished", view
    assert frame_count(ctx.media.root / "budget" / "cut.mp4") == 12
