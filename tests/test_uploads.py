"""Uploads (multipart and tus) and media access against the real database and disk."""

from __future__ import annotations

import base64
import os
import urllib.parse
from pathlib import Path

import pytest
import tornado.gen
import tornado.httpclient

import conf
from tests.media import cut_clip, multipart


@pytest.fixture(scope="module")
def clip(testdata: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = cut_clip(testdata / "talk_480sq_33s.mp4", tmp_path_factory.mktemp("clip") / "c.mp4",
                    1.0)
    return path.read_bytes()


def leftovers(ctx) -> list[str]:
    """Files in tmp/ and media/ (what a failed upload must not leave)."""
    return sorted(str(p.relative_to(ctx.settings.data_path))
                  for p in ctx.settings.data_path.rglob("*") if p.is_file()
                  and p.name != "cookie_secret")


async def until(check, attempts: int = 50, delay: float = 0.05) -> None:
    """Poll ``check()`` until it is true or the attempts run out (the caller then asserts)."""
    for _ in range(attempts):
        if check():
            return
        await tornado.gen.sleep(delay)


async def upload(api, token: str, filetype: str, filename: str, content: bytes,
                 **fields: str) -> tuple[int, dict]:
    body, ctype = multipart({"filetype": filetype, **fields}, "file", filename, content)
    return await api.call("POST", "/video/upload", raw=body, token=token,
                          headers={"Content-Type": ctype})


@pytest.mark.gen_test(timeout=30)
async def test_upload_image_and_video_are_checked_stored_and_recorded(ctx, api, testdata, clip):
    token = await api.user("alice")
    code, body = await upload(api, token, "image", "../../evil name.jpg",
                              (testdata / "face_woman.jpg").read_bytes(), username="alice")
    assert code == 200 and body["status"] == 0, body
    assert body["filepath"].startswith("alice/evil_name-") and body["filepath"].endswith(".jpg")
    assert body["upload"]["kind"] == "image" and body["upload"]["width"] > 0
    code, video = await upload(api, token, "video", "clip.mp4", clip)
    assert code == 200 and video["upload"]["duration"] == pytest.approx(1.0, abs=0.2)
    record = await ctx.repos.uploads.get(video["filepath"])
    assert record["owner_id"] == (await ctx.accounts.authenticate(token)).id
    assert record["size"] == len(clip) and record["width"] == 480
    assert leftovers(ctx) == sorted(["media/" + body["filepath"], "media/" + video["filepath"],
                                     "thumbs/" + body["filepath"] + ".jpg",
                                     "thumbs/" + video["filepath"] + ".jpg"])
    assert body["upload"]["thumbnail"] == f"/static/thumbs/{body['filepath']}.jpg"


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("filetype, name, content, code", [
    ("video", "x.mp4", b"\x00\x00\x00\x18ftypmp42" + os.urandom(5000), 415),  # corrupt video
    ("video", "x.mp4", b"", 400),  # zero-length
    ("image", "x.jpg", b"not an image at all", 415),
    ("video", "dog.jpg", None, 415),  # an image is not a video
    ("audio", "x.mp3", b"abc", 400),  # unknown filetype
])
async def test_bad_uploads_leave_nothing(ctx, api, testdata, filetype, name, content, code):
    token = await api.user("alice")
    if content is None:
        content = (testdata / "no_human_face_dog.jpg").read_bytes()
    got, body = await upload(api, token, filetype, name, content)
    assert got == code and body["status"] == 1 and body["msg"], body
    assert leftovers(ctx) == []
    assert await ctx.repos.db.uploads.count_documents({}) == 0


@pytest.mark.gen_test(timeout=30)
async def test_upload_requires_login_and_matching_username(ctx, api, testdata):
    image = (testdata / "face_woman.jpg").read_bytes()
    body, ctype = multipart({"filetype": "image"}, "file", "a.jpg", image)
    code, reply = await api.call("POST", "/video/upload", raw=body,
                                 headers={"Content-Type": ctype})
    assert code == 401
    token = await api.user("alice")
    await api.register("bob")
    code, reply = await upload(api, token, "image", "a.jpg", image, username="bob")
    assert code == 403 and leftovers(ctx) == []


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("case", ["no_boundary", "truncated", "no_file", "garbage"])
async def test_malformed_multipart_is_400_and_leaves_nothing(ctx, api, testdata, case):
    token = await api.user("alice")
    image = (testdata / "face_woman.jpg").read_bytes()
    body, ctype = multipart({"filetype": "image"}, "file", "a.jpg", image)
    if case == "no_boundary":
        ctype = "multipart/form-data"
    elif case == "truncated":
        body = body[: len(body) // 2]
    elif case == "no_file":
        body, ctype = multipart({"filetype": "image"})
    else:
        body = os.urandom(2000)
    code, reply = await api.call("POST", "/video/upload", raw=body, token=token,
                                 headers={"Content-Type": ctype})
    assert 400 <= code < 500 and reply["status"] == 1, reply
    assert leftovers(ctx) == []


@pytest.mark.gen_test(timeout=60)
async def test_oversize_upload_is_413_declared_and_streamed(ctx, api, monkeypatch):
    token = await api.user("alice")
    small = conf.Limits(upload_bytes=200_000, video_seconds=60, output_height=720,
                        concurrent_tasks=1)
    monkeypatch.setitem(conf.LIMITS, conf.FREE, small)
    body, ctype = multipart({"filetype": "video"}, "file", "big.mp4", b"\0" * 400_000)
    code, reply = await api.call("POST", "/video/upload", raw=body, token=token,
                                 headers={"Content-Type": ctype})
    assert code == 413 and reply["status"] == 1

    async def producer(write):  # chunked: no Content-Length to refuse up front
        await write(body[:300])  # a valid start of the multipart body, then far too much
        for _ in range(40):
            await write(b"\0" * 16384)

    request = tornado.httpclient.HTTPRequest(
        api.base_url + "/video/upload", method="POST", body_producer=producer,
        headers={"Content-Type": ctype, "Authorization": f"Bearer {token}"})
    try:
        resp = await api.client.fetch(request, raise_error=False)
        assert resp.code in (413, 599)  # 599: the server closed the connection mid-body
    except (tornado.iostream.StreamClosedError, OSError):
        pass
    assert leftovers(ctx) == []


@pytest.mark.gen_test(timeout=30)
async def test_interrupted_upload_leaves_nothing(ctx, api, io_loop):
    token = await api.user("alice")
    body, ctype = multipart({"filetype": "video"}, "file", "v.mp4", b"\1" * 300_000)
    stream = await tornado.tcpclient.TCPClient().connect("127.0.0.1",
                                                         int(api.base_url.rsplit(":", 1)[1]))
    head = (f"POST /video/upload HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nAuthorization: Bearer {token}\r\n\r\n").encode()
    await stream.write(head + body[:150_000])
    # wait until the server has started writing the part file
    await until(lambda: list((ctx.settings.data_path / "tmp").iterdir()))
    stream.close()
    await until(lambda: not leftovers(ctx))
    assert leftovers(ctx) == []


def tus_headers(token: str, **extra: str) -> dict[str, str]:
    return {"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}", **extra}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.gen_test(timeout=30)
async def test_tus_upload_resumes_and_ends_in_a_filepath(ctx, api, clip):
    token = await api.user("alice")
    code, _ = await api.call("OPTIONS", "/video/uploads/")
    assert code == 204
    resp = await api.client.fetch(api.base_url + "/video/uploads/", method="POST", body=b"",
                                  headers=tus_headers(token, **{
                                      "Upload-Length": str(len(clip)),
                                      "Upload-Metadata": f"filename {b64('片段.mp4')},"
                                                         f"filetype {b64('video')}"}))
    assert resp.code == 201
    location = resp.headers["Location"]
    half = len(clip) // 2
    patch = {"Content-Type": "application/offset+octet-stream"}
    resp = await api.client.fetch(api.base_url + location, method="PATCH", body=clip[:half],
                                  headers=tus_headers(token, **patch, **{"Upload-Offset": "0"}))
    assert resp.code == 204 and resp.headers["Upload-Offset"] == str(half)
    # a wrong offset is refused, the other user cannot see the upload
    code, _ = await api.call("PATCH", location, raw=clip[half:], headers=tus_headers(
        token, **patch, **{"Upload-Offset": "0"}))
    assert code == 409
    other = await api.user("mallory")
    resp = await api.client.fetch(api.base_url + location, method="HEAD", raise_error=False,
                                  headers=tus_headers(other))
    assert resp.code == 404
    resp = await api.client.fetch(api.base_url + location, method="HEAD",
                                  headers=tus_headers(token))
    assert resp.headers["Upload-Offset"] == str(half)
    resp = await api.client.fetch(api.base_url + location, method="PATCH", body=clip[half:],
                                  headers=tus_headers(token, **patch,
                                                      **{"Upload-Offset": str(half)}))
    filepath = urllib.parse.unquote(resp.headers["Upload-Filepath"])
    assert resp.code == 204 and filepath.startswith("alice/") and filepath.endswith(".mp4")
    assert (ctx.media.root / filepath).read_bytes() == clip
    assert leftovers(ctx) == ["media/" + filepath, "thumbs/" + filepath + ".jpg"]
    resp = await api.client.fetch(api.base_url + location, method="HEAD",
                                  headers=tus_headers(token))
    assert urllib.parse.unquote(resp.headers["Upload-Filepath"]) == filepath


@pytest.mark.gen_test(timeout=30)
async def test_tus_termination_expiry_and_bad_file(ctx, api):
    token = await api.user("alice")
    create = tus_headers(token, **{"Upload-Length": "1000",
                                   "Upload-Metadata": f"filetype {b64('video')}"})
    resp = await api.client.fetch(api.base_url + "/video/uploads/", method="POST", body=b"",
                                  headers=create)
    location = resp.headers["Location"]
    resp = await api.client.fetch(api.base_url + location, method="DELETE",
                                  headers=tus_headers(token))
    assert resp.code == 204 and leftovers(ctx) == []
    # a complete upload that is not a video: 415, nothing kept
    resp = await api.client.fetch(api.base_url + "/video/uploads/", method="POST", body=b"",
                                  headers=create)
    code, body = await api.call("PATCH", resp.headers["Location"], raw=os.urandom(1000),
                                headers=tus_headers(token, **{
                                    "Content-Type": "application/offset+octet-stream",
                                    "Upload-Offset": "0"}))
    assert code == 415 and body["status"] == 1 and leftovers(ctx) == []
    # an expired partial upload is removed by the clean-up
    resp = await api.client.fetch(api.base_url + "/video/uploads/", method="POST", body=b"",
                                  headers=create)
    await ctx.repos.db.tus_uploads.update_many({}, {"$set": {"expires": ctx_past()}})
    assert await ctx.uploads.expire_partial() == 1 and leftovers(ctx) == []
    for bad in ({"Upload-Length": "abc"}, {"Upload-Length": "10"},
                {"Upload-Length": str(10**12), "Upload-Metadata": f"filetype {b64('video')}"}):
        code, body = await api.call("POST", "/video/uploads/", raw=b"",
                                    headers=tus_headers(token, **bad))
        assert code in (400, 413) and body["status"] == 1, bad
    code, _ = await api.call("POST", "/video/uploads/", raw=b"", token=token)
    assert code == 412  # no Tus-Resumable header


def ctx_past():
    import datetime as dt

    return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)


@pytest.mark.gen_test(timeout=30)
async def test_media_access_is_owner_only_and_safe(ctx, api, testdata, clip):
    alice = await api.user("alice")
    bob = await api.user("bob")
    await ctx.accounts.ensure_admin("root", "rootpass1")
    admin = await api.login("root", "rootpass1")
    code, video = await upload(api, alice, "video", "clip.mp4", clip)
    path = video["filepath"]
    # the owner can download, with Range, and as an attachment
    resp = await api.client.fetch(f"{api.base_url}/static/media/{path}?download=1",
                                  headers={"Authorization": f"Bearer {alice}"})
    assert resp.body == clip and "attachment" in resp.headers["Content-Disposition"]
    resp = await api.client.fetch(f"{api.base_url}/video/test_resp/?path=/{path}",
                                  headers={"Authorization": f"Bearer {alice}",
                                           "Range": "bytes=100-199"})
    assert resp.code == 206 and resp.body == clip[100:200]
    assert resp.headers["Content-Type"] == "video/mp4"
    assert "Content-Disposition" not in resp.headers
    code, _ = await api.call("GET", f"/static/media/{path}", token=admin)
    assert code == 200
    # everyone else, and every trick, is refused
    os.symlink(testdata / "face_woman.jpg", ctx.media.root / "alice" / "link.jpg")
    (ctx.media.root / "secret.txt").write_text("x")
    attempts = [
        (bob, f"/static/media/{path}", 403),
        (None, f"/static/media/{path}", 401),
        (bob, f"/video/test_resp/?path=/{path}", 403),
        (alice, "/static/media/alice/../bob/x.mp4", 400),
        (alice, "/static/media/alice/%2e%2e%2fsecret.txt", 400),
        (alice, "/static/media/alice%2f..%2fsecret.txt", 400),
        (alice, "/static/media//etc/passwd", 400),
        (alice, "/static/media/alice/link.jpg", 404),
        (alice, "/static/media/alice/missing.mp4", 404),
        (alice, "/static/media/secret.txt", 400),
        (alice, "/video/test_resp/?path=/alice/../../secret.mp4", 400),
        (alice, "/video/test_resp/?path=/etc/passwd", 400),
        (alice, "/video/test_resp/?path=alice/clip.txt", 400),
    ]
    for token, url, expected in attempts:
        code, body = await api.call("GET", url, token=token)
        assert code == expected and body["status"] == 1, (url, code, body)
