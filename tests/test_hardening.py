"""Hostile input, access control across users, and faults (see also test_uploads.py,
test_tasks.py and test_server.py for crash, restart and traversal cases)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import socket
import subprocess

import pytest
import tornado.gen
import tornado.iostream
import tornado.tcpclient

from tests.media import multipart
from tests.test_tasks import prepare, swap, wait_state
from tests.test_uploads import clip, leftovers, until  # noqa: F401 - the clip fixture
from tests.test_uploads import upload as upload_reply

CUSTOMERS = "/api/mgr/customers"


def port_of(api) -> int:
    return int(api.base_url.rsplit(":", 1)[1])


async def login_attempt(api, username: str, password: str) -> int:
    code, _ = await api.call("POST", CUSTOMERS, {"action": "login", "data": {
        "username": username, "password": password}})
    return code


@pytest.mark.gen_test(timeout=60)
async def test_login_throttling_per_user_and_per_address(ctx, api):
    await api.register("alice", "secret123")
    for _ in range(5):
        assert await login_attempt(api, "alice", "wrongpass") == 401
    assert await login_attempt(api, "alice", "secret123") == 429  # even the right password
    code, body = await api.call("POST", CUSTOMERS, {"action": "login", "data": {
        "username": "alice", "password": "secret123"}})
    assert body["status"] == 1 and "try again" in body["msg"]
    ctx.accounts.throttle.failures.clear()
    # per address: many usernames from one client
    codes = [await login_attempt(api, f"ghost{i}", "nopass1") for i in range(21)]
    assert codes[:20] == [401] * 20 and codes[20] == 429


@pytest.mark.gen_test(timeout=30)
async def test_success_resets_the_user_counter(ctx, api):
    await api.register("bob", "secret123")
    for _ in range(4):
        await login_attempt(api, "bob", "wrongpass")
    assert await login_attempt(api, "bob", "secret123") == 200
    for _ in range(4):
        assert await login_attempt(api, "bob", "wrongpass") == 401


@pytest.mark.gen_test(timeout=30)
async def test_expired_sessions_are_refused(ctx, api):
    await api.register("carol")
    user = await ctx.repos.users.by_username("carol")
    token = await ctx.repos.sessions.create(user["id"], dt.timedelta(seconds=1))
    assert (await api.call("GET", "/api/session", token=token))[0] == 200
    await tornado.gen.sleep(1.2)
    code, body = await api.call("GET", "/api/session", token=token)
    assert code == 401 and body["status"] == 1
    assert await ctx.repos.db.sessions.count_documents({"user_id": user["id"]}) == 0


@pytest.mark.gen_test(timeout=30)
async def test_security_headers_and_no_cors(api):
    resp = await api.client.fetch(api.base_url + "/", raise_error=False)
    if resp.code == 200:
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert "_xsrf=" in resp.headers.get("Set-Cookie", "")
    for path in ("/", "/healthz", CUSTOMERS + "?action=list_customer"):
        resp = await api.client.fetch(api.base_url + path, raise_error=False,
                                      headers={"Origin": "https://evil.example"})
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert "Access-Control-Allow-Origin" not in resp.headers
    resp = await api.client.fetch(api.base_url + CUSTOMERS, method="OPTIONS", raise_error=False,
                                  headers={"Origin": "https://evil.example",
                                           "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in resp.headers and resp.code == 405


@pytest.mark.gen_test(timeout=30)
async def test_cross_site_websocket_with_cookie_is_refused(ctx, api):
    await api.register("dave")
    resp = await api.client.fetch(api.base_url + CUSTOMERS, method="POST", body=json.dumps(
        {"action": "login", "data": {"username": "dave", "password": "secret123"}}))
    cookie = "; ".join(c.split(";")[0] for c in resp.headers.get_list("Set-Cookie"))
    request = tornado.httpclient.HTTPRequest(
        api.base_url.replace("http", "ws") + "/ws/tasks",
        headers={"Cookie": cookie, "Origin": "https://evil.example"})
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await tornado.websocket.websocket_connect(request)
    assert refused.value.code == 403


@pytest.mark.gen_test(timeout=120)
async def test_another_user_reaches_nothing_by_any_route(ctx, api, testdata, clip):  # noqa: F811
    alice, image, video = await prepare(api, testdata, clip)
    bob = await api.user("bob")
    bob_ws = await tornado.websocket.websocket_connect(
        api.base_url.replace("http", "ws") + f"/ws/tasks?token={bob}")
    _, reply = await swap(api, alice, image, video, "private", quality="fast")
    task_id = reply["task_id"]
    await wait_state(api, alice, task_id, ("finished",))
    create = {"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {alice}",
              "Upload-Length": "10", "Upload-Metadata": "filetype dmlkZW8="}
    resp = await api.client.fetch(api.base_url + "/video/uploads/", method="POST", body=b"",
                                  headers=create)
    tus = resp.headers["Location"]
    attempts = [
        ("POST", "/video/view_task", {"task_id": task_id}),
        ("POST", "/video/cancel_task", {"task_id": task_id}),
        ("POST", "/video/view_task", {"task_id": task_id, "username": "alice"}),
        ("GET", "/static/media/alice/private.mp4", None),
        ("GET", "/static/media/alice/private.mp4?download=1", None),
        ("GET", "/video/test_resp/?path=/alice/private.mp4", None),
        ("GET", f"/static/media/{image}", None),
        ("POST", "/video/faceswap", {"imagepath": image, "videopath": video, "swapname": "x"}),
        ("POST", "/video/faceswap", {"username": "alice", "imagepath": image,
                                     "videopath": video, "swapname": "x"}),
    ]
    for method, path, body in attempts:
        code, answer = await api.call(method, path, body, token=bob)
        assert code in (403, 404) and answer["status"] in (1, 2), (path, code, answer)
    for method in ("HEAD", "DELETE", "PATCH"):
        resp = await api.client.fetch(
            api.base_url + tus, method=method, raise_error=False,
            body=b"x" if method == "PATCH" else None, allow_nonstandard_methods=True,
            headers={"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {bob}",
                     "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
        assert resp.code == 404, method
    code, listing = await api.call("GET", "/video/tasks", token=bob)
    assert listing["tasks"] == []
    with pytest.raises(tornado.util.TimeoutError):  # bob's socket heard nothing of alice
        await asyncio.wait_for(asyncio.shield(bob_ws.read_message()), 0.5)
    bob_ws.close()


@pytest.mark.gen_test(timeout=60)
async def test_hostile_multipart_names_and_many_fields(ctx, api, testdata):
    token = await api.user("eve")
    image = (testdata / "face_woman.jpg").read_bytes()
    for filename in ("\x01\x02evil\t\x7f.jpg", "../../../etc/passwd", "名字 .jpg", "",
                     ".hidden.jpg", "a" * 500 + ".jpg", "a;b=c.jpg"):
        code, body = await upload_reply(api, token, "image", filename, image)
        assert code == 200, (filename, body)
        name = body["filepath"].split("/", 1)[1]
        assert name[0] not in "./" and len(name) < 100 and "\x01" not in name, body
    # non-UTF-8 bytes in the part headers: a clear 400, nothing kept
    kept = leftovers(ctx)
    body, ctype = multipart({"filetype": "image"}, "file", "X", image)
    body = body.replace(b'filename="X"', b'filename="\xff\xfe\xfa.jpg"')
    code, reply = await api.call("POST", "/video/upload", raw=body, token=token,
                                 headers={"Content-Type": ctype})
    assert code == 400 and reply["msg"] == "malformed multipart body", reply
    assert leftovers(ctx) == kept
    # a part header of 20 MB is refused before the parser buffers it
    body, ctype = multipart({"filetype": "image"}, "file", "a.jpg", image)
    body = body.replace(b"Content-Type: application/octet-stream",
                        b"X-Huge: " + b"a" * 20_000_000, 1)
    code, reply = await api.call("POST", "/video/upload", raw=body, token=token,
                                 headers={"Content-Type": ctype})
    assert code == 400 and "headers are too large" in reply["msg"], reply
    assert leftovers(ctx) == kept
    # thousands of fields around the file part
    fields = {f"f{i}": "v" * 10 for i in range(5000)}
    body, ctype = multipart({"filetype": "image", **fields}, "file", "a.jpg", image)
    code, reply = await api.call("POST", "/video/upload", raw=body, token=token,
                                 headers={"Content-Type": ctype})
    assert code == 200, reply


def raw_request(port: int, data: bytes, timeout: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
        return b"".join(chunks)


@pytest.mark.gen_test(timeout=60)
async def test_lying_and_slow_clients_leave_the_server_responsive(ctx, api, io_loop):
    token = await api.user("frank")
    port = port_of(api)
    # a slow client trickling its headers does not hold up anyone else
    slow = await tornado.tcpclient.TCPClient().connect("127.0.0.1", port)
    await slow.write(b"POST /video/upload HTTP/1.1\r\nHost: x\r\n")
    # (a server blocked by the slow client would not answer at all: the wait is bounded)
    code, _ = await asyncio.wait_for(api.call("GET", "/healthz"), 10)
    assert code == 200
    # a body shorter than its Content-Length, then the client gives up: nothing is kept
    body, ctype = multipart({"filetype": "video"}, "file", "v.mp4", b"\1" * 50_000)
    liar = await tornado.tcpclient.TCPClient().connect("127.0.0.1", port)
    await liar.write((f"POST /video/upload HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
                      f"Authorization: Bearer {token}\r\n"
                      f"Content-Length: {len(body) * 3}\r\n\r\n").encode() + body)
    await tornado.gen.sleep(0.3)
    liar.close()
    # a body longer than its Content-Length: the rest is not a valid next request
    extra = await asyncio.to_thread(raw_request, port, (
        b"POST /api/mgr/customers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5\r\nConnection: close\r\n\r\n{\"action\": \"logout\"}"))
    assert extra.startswith(b"HTTP/1.1 4")
    # headers beyond 64 KB: Tornado drops the connection; the server carries on
    dropped = await asyncio.to_thread(raw_request, port, b"GET /healthz HTTP/1.1\r\nX-Big: " +
                                      b"a" * 100_000 + b"\r\n\r\n")
    assert not dropped.startswith(b"HTTP/1.1 2")
    slow.close()
    await until(lambda: not leftovers(ctx), attempts=40)
    assert leftovers(ctx) == []
    assert (await api.call("GET", "/healthz"))[0] == 200


@pytest.mark.gen_test(timeout=60)
async def test_client_leaving_mid_download_does_not_hurt(ctx, api):
    token = await api.user("gina")
    folder = ctx.media.user_dir("gina")
    (folder / "big.mp4").write_bytes(os.urandom(20 * 1024 * 1024))
    stream = await tornado.tcpclient.TCPClient().connect("127.0.0.1", port_of(api))
    await stream.write(f"GET /static/media/gina/big.mp4 HTTP/1.1\r\nHost: x\r\n"
                       f"Authorization: Bearer {token}\r\n\r\n".encode())
    await stream.read_bytes(100_000, partial=True)
    stream.close()
    await tornado.gen.sleep(0.2)
    resp = await api.client.fetch(api.base_url + "/static/media/gina/big.mp4",
                                  headers={"Authorization": f"Bearer {token}",
                                           "Range": "bytes=-10"})
    assert resp.code == 206 and len(resp.body) == 10


@pytest.fixture
def small_disk(settings):
    """A 1 MB tmpfs over the upload temp folder (needs root and mount; skipped otherwise)."""
    tmp = settings.data_path / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(tmp)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield tmp
    subprocess.run(["umount", "-l", str(tmp)], check=False)


@pytest.mark.gen_test(timeout=60)
async def test_disk_full_during_upload_is_507_without_debris(small_disk, ctx, api):
    token = await api.user("hank")
    body, ctype = multipart({"filetype": "video"}, "file", "v.mp4", os.urandom(3_000_000))
    code, reply = await api.call("POST", "/video/upload", raw=body, token=token,
                                 headers={"Content-Type": ctype})
    assert code == 507 and reply["status"] == 1, reply
    assert list(small_disk.iterdir()) == []
    assert (await api.call("GET", "/healthz"))[0] == 200


@pytest.mark.gen_test(timeout=30)
async def test_retention_removes_old_results(ctx, api, testdata, clip):  # noqa: F811
    token, image, video = await prepare(api, testdata, clip, "ivy")
    _, reply = await swap(api, token, image, video, "old", quality="fast")
    await wait_state(api, token, reply["task_id"], ("finished",))
    assert await ctx.tasks.expire_results(0) == 0  # 0 keeps results forever
    assert await ctx.tasks.expire_results(30) == 0
    await ctx.repos.tasks.update(reply["task_id"], {
        "finished": dt.datetime.now(dt.UTC) - dt.timedelta(days=31)})
    assert await ctx.tasks.expire_results(30) == 1
    assert not (ctx.media.root / "ivy" / "old.mp4").exists()
    code, view = await api.call("POST", "/video/view_task", {"task_id": reply["task_id"]},
                                token=token)
    assert view["status"] == 2 and view["state"] == "expired"
