"""Figures for the hardening work (issue 14): a real ``server.py`` on loopback, attacked
with the crafted files and parallel requests of the issue; prints the server's RSS
before and after each bomb and the outcome of each race.

    python bench/attack_figures.py [--root PATH_OF_A_CHECKOUT] [--skip-bombs] [--skip-races]
                                  [--skip-parallel]

``--root`` runs another checkout's server (e.g. the previous release) with the same
attacks, for a before/after comparison. Only 127.0.0.1 is contacted; every loop is
bounded. Peak RSS is the server process's VmHWM, reset (``clear_refs``) before each bomb;
probe and worker processes are children and are reported separately where they exist.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import http.client
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from tests.media import (  # noqa: E402
    claim_mp4_samples,
    cut_clip,
    encode_video,
    png_bomb,
    repeat_clip,
    set_mp4_durations,
    set_mp4_sample_deltas,
)
from tests.serverproc import Server  # noqa: E402

MB = 1024 * 1024


def call(port: int, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = 300) -> tuple[int, dict, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        raw = resp.read()
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            payload = {"_raw": raw[:200].decode(errors="replace")}
        return resp.status, payload, dict(resp.getheaders())
    except (ConnectionError, http.client.HTTPException, TimeoutError) as exc:
        return 0, {"error": type(exc).__name__}, {}
    finally:
        conn.close()


def jcall(port: int, path: str, data: dict, token: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    code, body, _ = call(port, "POST", path, json.dumps(data).encode(), headers)
    return code, body


def user(port: int, name: str, password: str = "secret123") -> str:
    jcall(port, "/api/mgr/customers", {"action": "add_customer",
                                        "data": {"username": name, "password": password}})
    code, body = jcall(port, "/api/mgr/customers", {"action": "login", "data": {
        "username": name, "password": password}})
    assert code == 200, body
    return body["token"]


def upload(port: int, token: str, kind: str, name: str, content: bytes) -> tuple[int, dict]:
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="filetype"\r\n\r\n{kind}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + \
        f"\r\n--{boundary}--\r\n".encode()
    code, payload, _ = call(port, "POST", "/video/upload", body, {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Authorization": f"Bearer {token}"})
    return code, payload


def rss(pid: int) -> tuple[int, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"]


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def bombs(port: int, pid: int, token: str, files: dict[str, tuple[str, str, bytes]]) -> None:
    print(f"{'file':<34} {'bytes':>9} {'answer':<32} {'RSS before':>10} {'peak':>8} "
          f"{'after':>8}  (MB, server process)")
    for label, (kind, name, content) in files.items():
        reset_peak(pid)
        before, _ = rss(pid)
        code, body = upload(port, token, kind, name, content)
        after, peak = rss(pid)
        answer = f"{code} {body.get('code') or body.get('filepath') or body.get('error')}"
        print(f"{label:<34} {len(content):>9} {answer[:32]:<32} {before / MB:>10.0f} "
              f"{peak / MB:>8.0f} {after / MB:>8.0f}")


def parallel_bombs(port: int, pid: int, token: str, content: bytes, count: int = 2) -> None:
    reset_peak(pid)
    before, _ = rss(pid)
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        answers = list(pool.map(lambda _: upload(port, token, "image", "b.png", content),
                                range(count)))
    after, peak = rss(pid)
    print(f"{count} PNG bombs at once: {[(c, b.get('code')) for c, b in answers]}"
          f" RSS before {before / MB:.0f} MB, peak {peak / MB:.0f} MB, after {after / MB:.0f} MB")


def tus_create(port: int, token: str, length: int) -> tuple[int, str]:
    code, _, headers = call(port, "POST", "/video/uploads/", b"", {
        "Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}",
        "Upload-Length": str(length),
        "Upload-Metadata": "filetype " + base64.b64encode(b"video").decode()})
    return code, headers.get("Location", "")


def races(port: int, clip: bytes) -> None:
    pool = concurrent.futures.ThreadPoolExecutor(64)
    # two PATCHes at one offset of one upload
    token = user(port, "race_tus")
    _, location = tus_create(port, token, len(clip))
    patch = {"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}",
             "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
    results = list(pool.map(lambda _: call(port, "PATCH", location, clip, patch)[0:3:2],
                            range(2)))
    _, _, head = call(port, "HEAD", location, None, {"Tus-Resumable": "1.0.0",
                                                     "Authorization": f"Bearer {token}"})
    print("2 parallel PATCHes at offset 0:", sorted(code for code, _ in results),
          "| stored Upload-Offset", head.get("Upload-Offset"), "of", len(clip))
    # DELETE during a PATCH: a slow PATCH (body sent in two parts) and a DELETE between
    _, location = tus_create(port, token, len(clip))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.putrequest("PATCH", location)
    for key, value in {**patch, "Content-Length": str(len(clip))}.items():
        conn.putheader(key, value)
    conn.endheaders()
    conn.send(clip[:1000])
    time.sleep(0.5)
    deleted = call(port, "DELETE", location, None, {"Tus-Resumable": "1.0.0",
                                                    "Authorization": f"Bearer {token}"})[0]
    try:
        conn.send(clip[1000:])
        patched = conn.getresponse().status
    except (ConnectionError, http.client.HTTPException) as exc:
        patched = type(exc).__name__
    conn.close()
    print("DELETE during a PATCH: DELETE", deleted, "| PATCH", patched)
    # 3 parallel faceswaps with one swapname
    token = user(port, "race_swap")
    face = (Path(HERE.parent / "shared" / "testdata" / "face_woman.jpg")).read_bytes()
    image = upload(port, token, "image", "face.jpg", face)[1]["filepath"]
    video = upload(port, token, "video", "clip.mp4", clip)[1]["filepath"]
    replies = list(pool.map(lambda _: jcall(port, "/video/faceswap", {
        "imagepath": image, "videopath": video, "swapname": "same", "quality": "fast"},
        token), range(3)))
    print("3 parallel faceswaps, one swapname:",
          sorted(f"{c} {b.get('code', '')}".strip() for c, b in replies))
    for code, body in replies:
        if code == 200:
            jcall(port, "/video/cancel_task", {"task_id": body["task_id"]}, token)
    # 300 unfinished tus uploads for one free user
    token = user(port, "race_hoard")
    codes = list(pool.map(lambda _: tus_create(port, token, 100)[0], range(300)))
    print("300 tus creations by one free user:", {c: codes.count(c) for c in set(codes)})
    # usernames that differ by case or compatibility form
    codes = [jcall(port, "/api/mgr/customers", {"action": "add_customer", "data": {
        "username": n, "password": "secret123"}})[0] for n in ("Carol", "carol", "ＣＡＲＯＬ")]
    print("register Carol, carol, ＣＡＲＯＬ:", codes)
    # 16 parallel logins for one user, 15 wrong then the right one; 40 wrong ones
    jcall(port, "/api/mgr/customers", {"action": "add_customer", "data": {
        "username": "race_login", "password": "secret123"}})
    attempts = ["wrongpass"] * 15 + ["secret123"]
    codes = list(pool.map(lambda p: jcall(port, "/api/mgr/customers", {
        "action": "login", "data": {"username": "race_login", "password": p}})[0], attempts))
    print("16 parallel logins (15 wrong, 1 right):", {c: codes.count(c) for c in set(codes)},
          "| the right one:", codes[-1])
    codes = list(pool.map(lambda i: jcall(port, "/api/mgr/customers", {
        "action": "login", "data": {"username": f"ghost{i}", "password": "wrongpass"}})[0],
        range(40)))
    print("40 parallel wrong logins (one address):", {c: codes.count(c) for c in set(codes)})
    pool.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default=str(HERE), help="checkout whose server.py to attack")
    parser.add_argument("--skip-races", action="store_true")
    parser.add_argument("--skip-bombs", action="store_true")
    parser.add_argument("--skip-parallel", action="store_true",
                        help="no two bombs at once (against a server that decodes them)")
    args = parser.parse_args()
    testdata = HERE.parent / "shared" / "testdata"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        talk = testdata / "talk_480sq_33s.mp4"
        clip = cut_clip(talk, folder / "clip.mp4", 1.0).read_bytes()
        long = repeat_clip(talk, folder / "long.mp4", 3).read_bytes()  # 101 s
        files = {
            "PNG 30000x30000 (1-bit)": ("image", "bomb.png", png_bomb(30000, 30000)),
            "PNG 100000x100000 (truncated)": ("image", "huge.png",
                                              png_bomb(100000, 100000, rows=4)),
            "MP4 claiming 80M samples": ("video", "s.mp4", claim_mp4_samples(clip, 80_000_000)),
            "H.264 3 frames 16000x16000": ("video", "v.mp4", encode_video(
                folder / "huge.mp4", 16000, 16000, 3).read_bytes()),
            "MP4 101 s claiming 9 s (limit 60)": ("video", "l.mp4", set_mp4_durations(long, 9.0)),
            "MP4 101 s, sample deltas all 1": ("video", "d.mp4", set_mp4_sample_deltas(long, 1)),
            "normal photo (face_woman.jpg)": ("image", "f.jpg",
                                              (testdata / "face_woman.jpg").read_bytes()),
        }
        root = Path(args.root).resolve()
        import tests.serverproc as serverproc

        serverproc.ROOT = root  # the checkout under attack
        server = Server(folder / "data").start()
        try:
            assert server.proc is not None
            print(f"server {root.name}: pid {server.proc.pid}, port {server.port}")
            token = user(server.port, "bomber")
            if not args.skip_bombs:
                bombs(server.port, server.proc.pid, token, files)
            if not args.skip_parallel and not args.skip_bombs:
                parallel_bombs(server.port, server.proc.pid, token,
                               files["PNG 30000x30000 (1-bit)"][2])
            if not args.skip_races:
                races(server.port, clip)
            print("server alive at the end:", call(server.port, "GET", "/healthz")[0] == 200)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
