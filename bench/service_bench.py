"""Service figures (not tests): upload throughput and memory, /healthz latency under
load, and progress latency from worker to WebSocket.

    .venv/bin/python bench/service_bench.py [--sizes-mb 1024,2048]

It starts the real server (embedded database) in a temporary data dir, as a user
would, and measures from a client in this process. The upload bodies are a real
fast-start MP4 (so the server accepts them after its content check) padded with
zeros to the wanted size. Figures are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import av
import tornado.httpclient
import tornado.websocket

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.media import cut_clip, multipart  # noqa: E402
from tests.serverproc import Server  # noqa: E402

TESTDATA = ROOT.parent / "shared" / "testdata"
CHUNK = 1024 * 1024


def faststart_copy(src: Path, dst: Path) -> bytes:
    with av.open(str(src)) as inp, av.open(str(dst), "w",
                                           options={"movflags": "faststart"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams
                   if s.type in ("video", "audio")}
        for packet in inp.demux():
            if packet.dts is not None and packet.stream.index in streams:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    return dst.read_bytes()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class MemoryWatch:
    """Samples a process's resident memory every 20 ms in a thread; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.pid, self.start, self.peak = pid, rss_kb(pid), 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kb(self.pid))
            time.sleep(0.02)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Client:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.http = tornado.httpclient.AsyncHTTPClient(max_body_size=10 * 1024**3)
        self.token = ""

    async def call(self, path: str, body: dict | None = None) -> dict:
        resp = await self.http.fetch(
            self.base + path, method="POST" if body is not None else "GET",
            body=json.dumps(body) if body is not None else None, raise_error=False,
            headers={"Authorization": f"Bearer {self.token}"})
        return json.loads(resp.body)

    async def login(self, username: str = "bench", password: str = "benchpass1") -> None:
        self.token = (await self.call("/api/mgr/customers", {
            "action": "login", "data": {"username": username, "password": password}}))["token"]

    async def swap_inputs(self, work: Path, seconds: float) -> tuple[str, str]:
        """Upload the face photo and a clip of ``seconds``; their filepaths."""
        image = (TESTDATA / "face_woman.jpg").read_bytes()
        body, ctype = multipart({"filetype": "image"}, "file", "f.jpg", image)
        resp = await self.http.fetch(self.base + "/video/upload", method="POST", body=body,
                                     headers={"Content-Type": ctype,
                                              "Authorization": f"Bearer {self.token}"})
        clip = cut_clip(TESTDATA / "talk_480sq_33s.mp4", work / "clip.mp4", seconds).read_bytes()
        _, reply = await self.upload(clip, len(clip) + 1024, "clip.mp4")
        return json.loads(resp.body)["filepath"], reply["filepath"]

    async def upload(self, video: bytes, size: int, name: str = "big.mp4") -> tuple[float, dict]:
        """Stream a multipart body of ``size`` bytes; returns (seconds, reply)."""
        head, ctype = multipart({"filetype": "video"}, "file", name, b"")
        boundary_tail = head[head.rindex(b"\r\n--"):]
        head = head[: head.rindex(b"\r\n--")]
        padding = max(0, size - len(head) - len(video) - len(boundary_tail))
        zeros = bytes(CHUNK)

        async def producer(write):
            await write(head)
            await write(video)
            left = padding
            while left:
                await write(zeros[: min(CHUNK, left)])
                left -= min(CHUNK, left)
            await write(boundary_tail)

        total = len(head) + len(video) + padding + len(boundary_tail)
        request = tornado.httpclient.HTTPRequest(
            self.base + "/video/upload", method="POST", body_producer=producer,
            request_timeout=3600,
            headers={"Content-Type": ctype, "Content-Length": str(total),
                     "Authorization": f"Bearer {self.token}"})
        started = time.perf_counter()
        resp = await self.http.fetch(request, raise_error=False)
        return time.perf_counter() - started, json.loads(resp.body)


async def healthz_latencies(client: Client, stop: asyncio.Event) -> list[float]:
    latencies = []
    while not stop.is_set():
        started = time.perf_counter()
        await client.http.fetch(client.base + "/healthz", raise_error=False)
        latencies.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.02)
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(server: Server, sizes_mb: list[int], work: Path) -> None:
    client = Client(server.port)
    await client.login()
    video = faststart_copy(TESTDATA / "talk_480sq_33s.mp4", work / "fs.mp4")

    print("== upload throughput (loopback, multipart, streamed to disk) ==")
    for size_mb in sizes_mb:
        with MemoryWatch(server.proc.pid) as memory:
            seconds, reply = await client.upload(video, size_mb * CHUNK)
        growth = (memory.peak - memory.start) / 1024
        print(f"{size_mb:6d} MB: {size_mb / seconds:7.1f} MB/s  ({seconds:.1f} s, "
              f"status {reply['status']}), server RSS growth {growth:.1f} MB "
              f"(start {memory.start / 1024:.0f} MB, peak {memory.peak / 1024:.0f} MB)")

    print("== /healthz latency while two swaps and an upload run ==")
    imagepath, videopath = await client.swap_inputs(work, 15.0)
    ws = await tornado.websocket.websocket_connect(
        client.base.replace("http", "ws") + f"/ws/tasks?token={client.token}")
    stop = asyncio.Event()
    probe = asyncio.create_task(healthz_latencies(client, stop))
    tasks = []
    for _ in range(2):
        reply = await client.call("/video/faceswap", {
            "imagepath": imagepath, "videopath": videopath,
            "swapname": f"bench-{uuid.uuid4().hex[:6]}"})
        tasks.append(reply["task_id"])
    upload = asyncio.create_task(client.upload(video, 500 * CHUNK))
    delays, finished = [], set()
    while len(finished) < len(tasks):
        message = json.loads(await ws.read_message())
        if message.get("reported_at") and message["state"] == "running":
            delays.append((time.time() - message["reported_at"]) * 1000)
        if message["state"] in ("finished", "failed", "cancelled"):
            finished.add(message["task_id"])
    await upload
    stop.set()
    latencies = await probe
    print(f"/healthz: {len(latencies)} requests, p50 {percentile(latencies, 0.5):.1f} ms, "
          f"p99 {percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms")
    print("== progress latency, worker report -> WebSocket message ==")
    print(f"{len(delays)} messages: median {statistics.median(delays):.1f} ms, "
          f"p99 {percentile(delays, 0.99):.1f} ms, max {max(delays):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-mb", default="1024,2048")
    args = parser.parse_args()
    with_server(run, [int(s) for s in args.sizes_mb.split(",")])


def with_server(run_fn, *args: object) -> None:
    """Run ``run_fn(server, *args, work)`` against a fresh server (admin ``bench``)."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "data"
        subprocess.run([sys.executable, str(ROOT / "server.py"), "create-admin", "bench",
                        "--password", "benchpass1", "--data-dir", str(data)], check=True,
                       capture_output=True)
        server = Server(data).start("--workers", "2")
        try:
            asyncio.run(run_fn(server, *args, work))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
