"""Load figures (not tests): 50 WebSocket watchers, 20 concurrent 50 MB uploads and
4 queued swaps against one server on this machine.

    .venv/bin/python bench/load_bench.py [--watchers 50] [--uploads 20] [--upload-mb 50]

Prints the number of errors (any non-success answer or broken socket), /healthz
latency percentiles, aggregate upload throughput and the server's peak memory.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

import tornado.websocket

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_bench import (  # noqa: E402
    CHUNK,
    TESTDATA,
    Client,
    MemoryWatch,
    Server,
    faststart_copy,
    healthz_latencies,
    percentile,
    with_server,
)


async def watcher(url: str, stop: asyncio.Event, counts: dict[str, int]) -> None:
    try:
        ws = await tornado.websocket.websocket_connect(url)
    except Exception:
        counts["errors"] += 1
        return
    while not stop.is_set():
        try:
            message = await asyncio.wait_for(ws.read_message(), 0.5)
        except TimeoutError:
            continue
        if message is None:
            counts["errors"] += 1
            return
        counts["messages"] += 1
    ws.close()


async def run(server: Server, args: argparse.Namespace, work: Path) -> None:
    client = Client(server.port)
    await client.login()
    counts = {"errors": 0, "messages": 0}
    imagepath, videopath = await client.swap_inputs(work, 10.0)
    video = faststart_copy(TESTDATA / "talk_480sq_33s.mp4", work / "fs.mp4")

    stop = asyncio.Event()
    url = client.base.replace("http", "ws") + f"/ws/tasks?token={client.token}"
    watchers = [asyncio.create_task(watcher(url, stop, counts)) for _ in range(args.watchers)]
    probe = asyncio.create_task(healthz_latencies(client, stop))
    with MemoryWatch(server.proc.pid) as memory:
        task_ids = []
        for _ in range(4):
            reply = await client.call("/video/faceswap", {
                "imagepath": imagepath, "videopath": videopath,
                "swapname": f"load-{uuid.uuid4().hex[:6]}"})
            if reply.get("status") != 0:
                counts["errors"] += 1
            else:
                task_ids.append(reply["task_id"])
        started = time.perf_counter()
        results = await asyncio.gather(*[
            client.upload(video, args.upload_mb * CHUNK, f"u{i}.mp4")
            for i in range(args.uploads)], return_exceptions=True)
        upload_seconds = time.perf_counter() - started
        for result in results:
            if isinstance(result, BaseException) or result[1].get("status") != 0:
                counts["errors"] += 1
        states = {}
        deadline = time.monotonic() + 900
        while len(states) < len(task_ids) and time.monotonic() < deadline:
            for task_id in task_ids:
                view = await client.call("/video/view_task", {"task_id": task_id})
                if view.get("state") in ("finished", "failed", "cancelled"):
                    states[task_id] = view["state"]
            await asyncio.sleep(0.5)
        counts["errors"] += sum(1 for s in states.values() if s != "finished")
        counts["errors"] += len(task_ids) - len(states)
        stop.set()
        latencies = await probe
        await asyncio.gather(*watchers)
    total_mb = args.uploads * args.upload_mb
    print(f"watchers {args.watchers}, uploads {args.uploads} x {args.upload_mb} MB, swaps 4")
    print(f"errors: {counts['errors']}")
    print(f"websocket messages received: {counts['messages']}")
    print(f"/healthz: {len(latencies)} requests, p50 {percentile(latencies, 0.5):.1f} ms, "
          f"p99 {percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms")
    print(f"uploads: {total_mb} MB in {upload_seconds:.1f} s = "
          f"{total_mb / upload_seconds:.1f} MB/s aggregate")
    print(f"server memory: start {memory.start / 1024:.0f} MB, peak {memory.peak / 1024:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--watchers", type=int, default=50)
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--upload-mb", type=int, default=50)
    args = parser.parse_args()
    with_server(run, args)


if __name__ == "__main__":
    main()
