"""Preview and people-finder figures (not tests): ``/video/preview`` latency idle and while a
swap runs, and ``/video/faces`` on a one-minute 720p video.

    .venv/bin/python bench/preview_bench.py [--n 20]

Starts the real server (embedded database, the default two swap slots) in a temporary
data dir, uploads a photo and 720p videos as a user would, and times requests from a
client in this process, end to end (HTTP, checks, the preview process, JPEG files):

* previews of talk_720p.mp4 (1280x720, one keyframe in 9 s: the worst case for seeking)
  at times spread over the video, on the idle server: the baseline;
* the same previews while a swap of a one-minute 720p video (talk_720p six times) runs,
  with a second task queued behind it: the ratio to the baseline is the figure that
  says the preview neither waits behind tasks nor starves next to them;
* ``/video/faces`` on that one-minute video on the idle server, first call (analysis)
  and second (kept).

Figures are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.media import multipart, repeat_clip  # noqa: E402
from tests.serverproc import Server, request  # noqa: E402

TESTDATA = ROOT.parent / "shared" / "testdata"


def upload(port: int, token: str, kind: str, name: str, data: bytes) -> str:
    body, ctype = multipart({"filetype": kind}, "file", name, data)
    req = urllib.request.Request(f"http://127.0.0.1:{port}/video/upload", data=body,
                                 headers={"Content-Type": ctype,
                                          "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())["filepath"]


def timed(port: int, path: str, body: dict, token: str, timeout: float = 60
          ) -> tuple[float, int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                 data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json",
                                          "Authorization": f"Bearer {token}"})
    t = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            code, reply = resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        code, reply = err.code, json.loads(err.read())
    return time.monotonic() - t, code, reply


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def previews(port: int, token: str, image: str, video: str, n: int, length: float,
             label: str) -> list[float]:
    times = []
    for i in range(n):
        at = round((0.37 + i * 0.61) % length, 2)
        seconds, code, reply = timed(port, "/video/preview", {
            "imagepath": image, "videopath": video, "at_s": at}, token)
        if code != 200:
            print(f"  {label}: preview at {at} s answered {code} {reply}")
            continue
        times.append(seconds)
    print(f"{label:<34} n={len(times):>2}  p50 {statistics.median(times):.3f} s  "
          f"p95 {pct(times, 0.95):.3f} s  max {max(times):.3f} s")
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20, help="previews per phase")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        minute = repeat_clip(TESTDATA / "talk_720p.mp4", folder / "minute.mp4", 6)
        server = Server(folder / "data").start("--workers", "2",
                                               "--preview-per-minute", "1000")
        try:
            request(server.port, "/api/mgr/customers", {
                "action": "add_customer", "data": {"username": "bench",
                                                   "password": "benchpass"}})
            _, login = request(server.port, "/api/mgr/customers", {
                "action": "login", "data": {"username": "bench", "password": "benchpass"}})
            token = login["token"]
            image = upload(server.port, token, "image", "face.jpg",
                           (TESTDATA / "face_woman.jpg").read_bytes())
            video = upload(server.port, token, "video", "talk.mp4",
                           (TESTDATA / "talk_720p.mp4").read_bytes())
            long_video = upload(server.port, token, "video", "minute.mp4",
                                minute.read_bytes())
            # the first call also waits for the preview process's start-up (models)
            first, code, _ = timed(server.port, "/video/preview", {
                "imagepath": image, "videopath": video, "at_s": 1.0}, token)
            print(f"first preview after start-up: {first:.3f} s ({code})")
            idle = previews(server.port, token, image, video, args.n, 9.0, "preview 720p, idle")
            seconds, code, reply = timed(server.port, "/video/faces",
                                         {"filepath": long_video}, token, timeout=120)
            print(f"faces of a 1-minute 720p video, idle: {seconds:.2f} s "
                  f"({code}, {len(reply.get('faces', []))} person(s))")
            kept, code, _ = timed(server.port, "/video/faces", {"filepath": long_video}, token)
            print(f"faces again (kept answer): {kept:.3f} s ({code})")
            for name in ("busy1", "busy2"):
                _, code, reply = timed(server.port, "/video/faceswap", {
                    "imagepath": image, "videopath": long_video, "swapname": name,
                    "quality": "balanced"}, token)
                assert code == 200, reply
            time.sleep(3.0)  # the swap is past its start-up
            busy = previews(server.port, token, image, video, args.n, 9.0,
                            "preview 720p, while a swap runs")
            _, _, view = timed(server.port, "/video/view_task",
                               {"task_id": reply["task_id"]}, token)
            print(f"  (second task still {view.get('state')}: previews did not wait for it)")
            print(f"ratio busy/idle: p50 {statistics.median(busy) / statistics.median(idle):.2f}"
                  f"  p95 {pct(busy, 0.95) / pct(idle, 0.95):.2f}")
        finally:
            server.stop_if_running()


if __name__ == "__main__":
    main()
