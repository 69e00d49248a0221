"""Every error path that can be provoked through the API answers with the envelope and a
``code`` that docs/api.md lists; and every code docs/api.md lists is provoked here, or is
named there as one this walk cannot reach (with the reason). Real server, database,
probes and uploads; the limits are lowered where a refusal needs a large input."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from pathlib import Path

import cv2
import pytest
import tornado.httpclient

import conf
from tests.conftest import ROOT
from tests.media import cut_clip, multipart
from tests.test_accounts import make_admin
from tests.test_files import plant_task
from tests.test_uploads import b64, tus_headers

API_MD = ROOT / "docs" / "api.md"
CUSTOMERS = "/api/mgr/customers"


def documented_codes() -> tuple[set[str], set[str]]:
    """(every code in the "Error codes" section, those marked as not walked)."""
    text = API_MD.read_text()
    section = text.split("## Error codes", 1)[1].split("\n## ", 1)[0]
    fallbacks = section.split("Named causes:", 1)[0]  # "<code> <status>" for each status
    codes = set(re.findall(r"`([a-z][a-z0-9_]*)` [0-9]{3}", fallbacks))
    for line in section.splitlines():  # the table: codes in its first column
        if line.startswith("| `"):
            codes |= set(re.findall(r"`([a-z][a-z0-9_]*)`", line.split("|")[1]))
    unwalked_line = next(line for line in section.splitlines()
                         if line.startswith("Not provoked by the walk"))
    unwalked = set(re.findall(r"`([a-z][a-z0-9_]*)`", unwalked_line))
    return codes, unwalked


@pytest.fixture(scope="module")
def files(testdata: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    import av

    folder = tmp_path_factory.mktemp("codes")
    clip = cut_clip(testdata / "talk_480sq_33s.mp4", folder / "c.mp4", 1.0)
    fast = folder / "fast.mp4"  # fast start: the index first, so a cut copy still opens
    with av.open(str(clip)) as inp, av.open(str(fast), "w",
                                            options={"movflags": "faststart"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux(list(inp.streams)):
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    woman = cv2.imread(str(testdata / "face_woman.jpg"))
    tiny = cv2.resize(woman, None, fx=0.1, fy=0.1, interpolation=cv2.INTER_AREA)
    return {"clip": clip.read_bytes(), "truncated": fast.read_bytes()[: fast.stat().st_size // 2],
            "photo": (testdata / "face_woman.jpg").read_bytes(),
            "dog": (testdata / "no_human_face_dog.jpg").read_bytes(),
            "tiny": cv2.imencode(".jpg", tiny)[1].tobytes(),
            "small": cv2.imencode(".jpg", cv2.resize(woman, (120, 120)))[1].tobytes()}


class Walk:
    def __init__(self, api, documented: set[str]) -> None:
        self.api = api
        self.documented = documented
        self.seen: dict[str, str] = {}

    def check(self, where: str, code: int, body: dict, status: int, reason: str) -> None:
        assert (code, body.get("code")) == (status, reason), (where, code, body)
        assert body["status"] in (1, 2) and isinstance(body["msg"], str) and body["msg"], body
        assert reason in self.documented, f"{where}: code {reason!r} is not in docs/api.md"
        self.seen.setdefault(reason, where)

    async def call(self, where: str, status: int, reason: str, method: str, path: str,
                   body=None, **kw) -> dict:
        code, answer = await self.api.call(method, path, body, **kw)
        self.check(where, code, answer, status, reason)
        return answer

    async def upload(self, where: str, status: int, reason: str, token: str, filetype: str,
                     name: str, content: bytes) -> dict:
        body, ctype = multipart({"filetype": filetype}, "file", name, content)
        return await self.call(where, status, reason, "POST", "/video/upload", raw=body,
                               token=token, headers={"Content-Type": ctype})


async def ok_upload(api, token: str, filetype: str, name: str, content: bytes) -> str:
    body, ctype = multipart({"filetype": filetype}, "file", name, content)
    code, reply = await api.call("POST", "/video/upload", raw=body, token=token,
                                 headers={"Content-Type": ctype})
    assert code == 200, reply
    return reply["filepath"]


def lower(monkeypatch, **limits) -> None:
    monkeypatch.setitem(conf.LIMITS, conf.FREE,
                        dataclasses.replace(conf.LIMITS[conf.FREE], **limits))


@pytest.mark.gen_test(timeout=120)
async def test_every_error_path_has_a_documented_code(ctx, api, files, monkeypatch):
    documented, unwalked = documented_codes()
    w = Walk(api, documented)
    admin = await make_admin(ctx, api)
    alice, bob = await api.user("alice"), await api.user("bob")

    # -- conventions: routes, methods, bodies, sessions, cross-site requests -----------
    await w.call("unknown route", 404, "not_found", "GET", "/nowhere", token=alice)
    await w.call("PUT on a GET route", 405, "method_not_allowed", "PUT", "/video/files",
                 raw=b"", token=alice)
    await w.call("no session", 401, "not_logged_in", "GET", "/video/files")
    await w.call("bad JSON", 400, "bad_json", "POST", "/video/view_task", raw=b"{nope",
                 token=alice, headers={"Content-Type": "application/json"})
    await w.call("lone surrogate", 400, "bad_text", "POST", "/video/cancel_task",
                 raw=b'{"task_id": "\\ud800"}', token=alice,
                 headers={"Content-Type": "application/json"})
    await w.call("text body", 415, "unsupported_media_type", "POST", "/video/cancel_task",
                 raw=b"task_id", token=alice, headers={"Content-Type": "text/plain"})
    await w.call("big body", 413, "too_large", "POST", "/video/cancel_task",
                 raw=b"{" + b" " * (ctx.settings.body_bytes + 1) + b"}", token=alice,
                 headers={"Content-Type": "application/json"})
    await w.call("cross-site", 403, "cross_site", "POST", CUSTOMERS,
                 {"action": "logout"}, headers={"Sec-Fetch-Site": "cross-site"})
    await w.call("missing field", 400, "bad_request", "POST", "/video/cancel_task", {},
                 token=alice)

    # -- accounts --------------------------------------------------------------------
    await w.call("short name", 400, "bad_username", "POST", CUSTOMERS, {
        "action": "add_customer", "data": {"username": "a", "password": "secret123"}})
    await w.call("taken name", 409, "name_taken", "POST", CUSTOMERS, {
        "action": "add_customer", "data": {"username": "ALICE", "password": "secret123"}})
    for _ in range(ctx.settings.login_failures_per_user):
        await w.call("wrong password", 401, "wrong_credentials", "POST", CUSTOMERS, {
            "action": "login", "data": {"username": "bob", "password": "not-his"}})
    await w.call("throttled", 429, "too_many_attempts", "POST", CUSTOMERS, {
        "action": "login", "data": {"username": "bob", "password": "not-his"}})
    await w.call("admin action", 403, "admin_only", "GET",
                 CUSTOMERS + "?action=list_customer", token=alice)
    await w.call("demote oneself", 409, "conflict", "POST", "/common/modifytype",
                 {"userid": (await ctx.accounts.authenticate(admin)).id, "newtype": 1},
                 token=admin)
    await w.call("wrong password to delete", 403, "wrong_password", "POST", CUSTOMERS, {
        "action": "delete_account", "data": {"password": "not-hers"}}, token=alice)
    mallory = await api.user("mallory")
    code, _ = await api.call("POST", CUSTOMERS, {"action": "disable_customer", "data": {
        "id": (await ctx.accounts.authenticate(mallory)).id}}, token=admin)
    assert code == 200
    await w.call("disabled login", 403, "account_disabled", "POST", CUSTOMERS, {
        "action": "login", "data": {"username": "mallory", "password": "secret123"}})
    await w.call("another's folder", 403, "forbidden", "POST", "/video/faceswap", {
        "username": "alice", "imagepath": "alice/a.jpg", "videopath": "alice/b.mp4",
        "swapname": "x"}, token=bob)

    # -- uploads: content, limits, quota -----------------------------------------------
    await w.upload("not an image", 415, "not_an_image", alice, "image", "x.jpg", b"plain text")
    await w.upload("not a video", 415, "not_a_video", alice, "video", "x.mp4", b"plain text")
    await w.upload("cut short", 415, "truncated_video", alice, "video", "t.mp4",
                   files["truncated"])
    for limits, reason, kind, content in (
            ({"video_seconds": 0.5, "upload_seconds": 0.5}, "too_long", "video", files["clip"]),
            ({"photo_pixels": 1000}, "photo_too_large", "image", files["photo"]),
            ({"video_pixels": 1000}, "video_too_large", "video", files["clip"]),
            ({"storage_bytes": 10}, "over_quota", "image", files["photo"])):
        with monkeypatch.context() as m:
            lower(m, **limits)
            await w.upload(f"limit {limits}", 413, reason, alice, kind, "f", content)
    for setting, value, status, reason in (("samples_per_second", 1, 413, "too_many_samples"),
                                           ("max_frame_rate", 1.0, 415, "bad_timestamps"),
                                           ("probe_timeout_s", 0.001, 413, "probe_limit")):
        with monkeypatch.context() as m:
            lower(m, upload_seconds=10, video_seconds=10)  # max_samples: 10 x the setting
            m.setattr(ctx.uploads, "settings",
                      dataclasses.replace(ctx.uploads.settings, **{setting: value}))
            await w.upload(f"setting {setting}", status, reason, alice, "video", "v.mp4",
                           files["clip"])

    # -- tus ---------------------------------------------------------------------------
    await w.call("no tus version", 412, "tus_version", "POST", "/video/uploads/", raw=b"",
                 token=alice)
    create = tus_headers(alice, **{"Upload-Length": str(len(files["small"])),
                                   "Upload-Metadata": f"filetype {b64('image')}"})
    with monkeypatch.context() as m:
        lower(m, open_uploads=0)
        await w.call("open uploads", 429, "too_many_uploads", "POST", "/video/uploads/",
                     raw=b"", headers=create)
    resp = await api.client.fetch(api.base_url + "/video/uploads/", method="POST", body=b"",
                                  headers=create)
    location = resp.headers["Location"]
    patch = {"Content-Type": "application/offset+octet-stream"}
    await w.call("no offset", 400, "bad_offset", "PATCH", location, raw=b"x",
                 headers=tus_headers(alice, **patch))
    await w.call("wrong offset", 409, "offset_mismatch", "PATCH", location, raw=b"x",
                 headers=tus_headers(alice, **patch, **{"Upload-Offset": "7"}))
    # a PATCH in flight holds the upload: a second one is locked out, a DELETE ends it
    release = asyncio.Event()

    async def slow(write):
        await write(files["small"][:100])
        await release.wait()
        await write(files["small"][100:200])

    first = asyncio.ensure_future(api.client.fetch(tornado.httpclient.HTTPRequest(
        api.base_url + location, method="PATCH", body_producer=slow,
        headers=tus_headers(alice, **patch, **{"Upload-Offset": "0",
                                               "Content-Length": str(200)})),
        raise_error=False))
    for _ in range(100):
        if ctx.uploads.tus_locks:
            break
        await asyncio.sleep(0.02)
    await w.call("second PATCH", 423, "locked", "PATCH", location, raw=b"x",
                 headers=tus_headers(alice, **patch, **{"Upload-Offset": "0"}))
    code, _ = await api.call("DELETE", location, headers=tus_headers(alice))
    assert code == 204
    release.set()
    answer = await first
    w.check("PATCH after DELETE", answer.code, json.loads(answer.body), 410, "terminated")
    resp = await api.client.fetch(api.base_url + "/video/uploads/", method="POST", body=b"",
                                  headers=create)
    done = resp.headers["Location"]
    resp = await api.client.fetch(api.base_url + done, method="PATCH", body=files["small"],
                                  headers=tus_headers(alice, **patch, **{"Upload-Offset": "0"}))
    assert resp.code == 204
    await w.call("finished upload", 409, "upload_complete", "PATCH", done, raw=b"x",
                 headers=tus_headers(alice, **patch, **{"Upload-Offset": "0"}))

    # -- media -------------------------------------------------------------------------
    image = await ok_upload(api, alice, "image", "face.jpg", files["photo"])
    video = await ok_upload(api, alice, "video", "clip.mp4", files["clip"])
    await w.call("encoded slash", 400, "bad_path", "GET", "/static/media/alice%2fx.jpg",
                 token=alice)
    await w.call("past the end", 416, "range_not_satisfiable", "GET",
                 f"/static/media/{image}", token=alice,
                 headers={"Range": f"bytes={len(files['photo']) + 10}-"})

    # -- faceswap and tasks --------------------------------------------------------------
    swap = {"imagepath": image, "videopath": video, "swapname": "out"}
    await w.call("bad swapname", 400, "bad_swapname", "POST", "/video/faceswap",
                 {**swap, "swapname": "../x"}, token=alice)
    dog = await ok_upload(api, alice, "image", "dog.jpg", files["dog"])
    await w.call("no face", 400, "no_face_in_photo", "POST", "/video/faceswap",
                 {**swap, "imagepath": dog}, token=alice)
    tiny = await ok_upload(api, alice, "image", "tiny.jpg", files["tiny"])
    await w.call("tiny face", 400, "photo_face_too_small", "POST", "/video/faceswap",
                 {**swap, "imagepath": tiny}, token=alice)
    for extra, reason in (({"start_s": -1}, "bad_segment"), ({"end_s": "soon"}, "bad_segment"),
                          ({"start_s": 0, "end_s": 0.001}, "segment_too_short"),
                          ({"videopath": dog}, "no_face_in_target"),
                          ({"target_face": "x"}, "bad_face_id"),
                          ({"target_face": "1"}, "unknown_face"),
                          ({"imagepath": [image] * 11}, "too_many_photos")):
        status = 404 if reason == "unknown_face" else 400
        await w.call(f"faceswap {extra}", status, reason, "POST", "/video/faceswap",
                     {**swap, **extra}, token=alice)
    with monkeypatch.context() as m:
        lower(m, unfinished_tasks=0)
        await w.call("unfinished tasks", 429, "too_many_tasks", "POST", "/video/faceswap",
                     swap, token=alice)
    await plant_task(ctx, alice, image, video, "00000000000000f1", state="failed")
    await plant_task(ctx, alice, image, video, "00000000000000f2", state="queued")
    await w.call("cancel an ended task", 409, "task_done", "POST", "/video/cancel_task",
                 {"task_id": "00000000000000f1"}, token=alice)
    await w.call("retry a queued task", 409, "task_active", "POST", "/video/retry_task",
                 {"task_id": "00000000000000f2"}, token=alice)
    await w.call("delete a file in use", 409, "in_use", "POST", "/video/delete_file",
                 {"filepath": video}, token=alice)
    await w.call("another's task", 404, "not_found", "POST", "/video/delete_task",
                 {"task_id": "00000000000000f1"}, token=bob)
    code, body = await api.call("POST", "/video/view_task", {"task_id": "nope"}, token=alice)
    w.check("view_task envelope", code, body, 404, "not_found")
    assert body["status"] == 2 and body["progress"]

    assert not list(ctx.media.tmp.iterdir()), "a refused request left bytes behind"

    # -- the documentation's side ------------------------------------------------------
    missing = documented - set(w.seen) - unwalked
    assert not missing, f"documented codes this walk never provoked: {sorted(missing)}"
    walked_anyway = unwalked & set(w.seen)
    assert not walked_anyway, f"marked as not walked, yet provoked: {sorted(walked_anyway)}"
