"""Swaps on a Dask cluster: a real ``distributed.LocalCluster`` with two separate worker
processes (nannies, one thread each), the real engine, and the service driven through
HTTP exactly as in tests/test_tasks.py — only the dispatcher differs.

The cluster runs on its own event-loop thread for the whole module (starting two
worker processes that import the engine costs a few seconds); each test connects its
own asynchronous client, as the server does at start-up.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tornado.gen
import tornado.websocket

from conf import Settings, parse
from engine.dispatch import Job
from services.context import AppContext
from storage.database import connect, ensure_indexes
from storage.embedded import free_port
from tests.media import talk_clips
from tests.test_tasks import (
    frame_count,
    messages_until_done,
    plant_interrupted_task,
    prepare,
    swap,
    upload,
    wait_state,
)

ROOT = Path(__file__).resolve().parent.parent

distributed = pytest.importorskip("distributed")
from engine.dask_dispatch import LOST_WORKER, DaskDispatcher, scheduler_address  # noqa: E402


@pytest.fixture(scope="module")
def clips(testdata: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return talk_clips(testdata, tmp_path_factory.mktemp("dask-clips"), 6.0)


@pytest.fixture(scope="module")
def cluster() -> Iterator[distributed.LocalCluster]:
    """Two worker processes, one thread each, models preloaded by the preload hook."""
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
        memory_limit=0, preload=["engine.dask_dispatch"], silence_logs=logging.ERROR)
    yield cluster
    cluster.close(timeout=30)


@pytest.fixture
def ctx(io_loop, settings: Settings, cluster) -> Iterator[AppContext]:
    """The conftest ``ctx`` with a DaskDispatcher in place of the LocalDispatcher."""
    cluster.scheduler.allowed_failures = 3  # Dask's default; a test may lower it
    settings.data_path.mkdir(parents=True, exist_ok=True)
    db = connect(settings.mongo_url, settings.db_name, settings.db_timeout_ms)
    io_loop.run_sync(lambda: ensure_indexes(db))
    address = cluster.scheduler_address.replace("tcp://", "dask://")
    dispatcher = io_loop.run_sync(lambda: DaskDispatcher.connect(address))
    context = AppContext.build(settings, db, dispatcher)
    yield context
    io_loop.run_sync(context.tasks.close, timeout=60)
    io_loop.run_sync(lambda: db.client.drop_database(settings.db_name))
    db.client.close()


async def wait_progress(api, token: str, task_id: str, timeout: float = 60) -> dict:
    """Poll view_task until the task reports frames (so it is really mid-run)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, view = await api.call("POST", "/video/view_task", {"task_id": task_id}, token=token)
        if view.get("frames_done") or view.get("state") not in ("queued", "running"):
            return view
        await tornado.gen.sleep(0.05)
    raise AssertionError(f"no progress from task {task_id}")


def test_executor_setting_and_scheduler_address() -> None:
    assert parse([]).executor == "local"
    assert parse(["--executor", "dask://sched:8786"]).executor == "dask://sched:8786"
    assert scheduler_address("dask://sched:8786") == "tcp://sched:8786"
    assert scheduler_address("dask://sched") == "tcp://sched:8786"
    assert scheduler_address("tls://10.0.0.5:9000") == "tls://10.0.0.5:9000"
    for wrong in ("spark://x:1", "dask://", "dask://:8786", "sched:8786"):
        with pytest.raises(ValueError):
            scheduler_address(wrong)


@pytest.mark.gen_test(timeout=120)
async def test_two_swaps_run_concurrently_on_two_dask_workers(ctx, api, testdata, clips,
                                                              tmp_path):
    dispatcher = ctx.tasks.dispatcher
    assert dispatcher.slots == 2  # the scheduler's total worker threads
    users = [await prepare(api, testdata, clips["short"], name) for name in ("alice", "bob")]
    sockets = [await tornado.websocket.websocket_connect(
        api.base_url.replace("http", "ws") + f"/ws/tasks?token={token}")
        for token, _, _ in users]
    latencies: list[float] = []  # worker's time.time() at report -> service notified

    def measure(view: dict) -> None:
        if view["state"] == "running" and view["reported_at"]:
            latencies.append(time.time() - view["reported_at"])

    for token, _, _ in users:
        ctx.tasks.subscribe((await ctx.accounts.authenticate(token)).id, measure)
    started = time.monotonic()
    task_ids = []
    for token, image, video in users:
        code, reply = await swap(api, token, image, video, "dasked", quality="fast")
        assert code == 200 and reply["status"] == 0, reply
        task_ids.append(reply["task_id"])
    pids: dict[str, int] = {}
    states: set[tuple[str, ...]] = set()
    while len(pids) < 2 and time.monotonic() - started < 60:
        for task_id in task_ids:
            pid = dispatcher.worker_pid(task_id)
            if pid:
                pids[task_id] = pid
        states.add(tuple(ctx.tasks.live.get(t, {}).get("state", "done") for t in task_ids))
        await tornado.gen.sleep(0.02)
    assert len(set(pids.values())) == 2, pids  # two worker processes, one task each
    assert os.getpid() not in pids.values()
    assert ("running", "running") in states  # at the same time, not one after the other
    for ws, task_id in zip(sockets, task_ids, strict=True):
        messages = await messages_until_done(ws, task_id)
        ws.close()
        assert messages[-1]["state"] == "finished", messages[-1]
        running = [m for m in messages if m["state"] == "running" and m["frames_total"]]
        # progress came from the remote worker through Dask events
        assert running and running[-1]["frames_done"] > 0 and running[-1]["reported_at"]
        assert [m["progress"] for m in running] == sorted(m["progress"] for m in running)
    elapsed = time.monotonic() - started
    source = tmp_path / "in.mp4"
    source.write_bytes(clips["short"])
    for name in ("alice", "bob"):
        out = ctx.media.root / name / "dasked.mp4"
        assert frame_count(out) == frame_count(source)
    assert not list(ctx.media.tmp.iterdir())
    latencies.sort()
    print(f"two concurrent 1 s swaps on dask: {elapsed:.1f} s; {len(latencies)} progress "
          f"messages, worker->service latency median {1000 * latencies[len(latencies) // 2]:.1f}"
          f" ms, max {1000 * latencies[-1]:.1f} ms")


@pytest.mark.gen_test(timeout=180)
async def test_killed_dask_worker_is_retried_then_fails_clearly(ctx, api, testdata, clips,
                                                                cluster):
    dispatcher = ctx.tasks.dispatcher
    token, image, video = await prepare(api, testdata, clips["long"])
    # 1. Dask's own retry: the task is rescheduled on the surviving worker and finishes.
    _, reply = await swap(api, token, image, video, "retried", quality="fast")
    task_id = reply["task_id"]
    view = await wait_progress(api, token, task_id)
    victim = dispatcher.worker_pid(task_id)
    assert view["state"] == "running" and victim
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    while dispatcher.worker_pid(task_id) in (victim, None) and time.monotonic() - killed < 30:
        await tornado.gen.sleep(0.02)  # the "started" event of the second attempt
    rescheduled = time.monotonic() - killed
    assert dispatcher.worker_pid(task_id) not in (victim, None)  # really run again elsewhere
    view = await wait_state(api, token, task_id, ("finished", "failed"), timeout=90)
    assert view["state"] == "finished", view["progress"]
    assert dispatcher.worker_restarts == 1  # for the metrics
    print(f"killed worker: task restarted on another worker {rescheduled:.2f} s after kill")
    print(f"killed worker: retried task finished {time.monotonic() - killed:.1f} s after kill")
    assert (ctx.media.root / "alice" / "retried.mp4").stat().st_size > 1000
    # 2. No retries left: the task fails with a clear message.
    cluster.scheduler.allowed_failures = 0
    _, reply = await swap(api, token, image, video, "lost", quality="fast")
    task_id = reply["task_id"]
    await wait_progress(api, token, task_id)
    os.kill(dispatcher.worker_pid(task_id), signal.SIGKILL)
    killed = time.monotonic()
    view = await wait_state(api, token, task_id, ("finished", "failed"), timeout=60)
    assert view["state"] == "failed" and view["progress"] == LOST_WORKER, view["progress"]
    assert dispatcher.worker_restarts == 2
    print(f"killed worker, no retries: failed {time.monotonic() - killed:.2f} s after kill")
    assert not (ctx.media.root / "alice" / "lost.mp4").exists()
    assert not list(ctx.media.tmp.iterdir())
    # 3. The cluster (its nanny restarted the worker) takes the next task.
    short = await upload(api, token, "video", "s.mp4", clips["short"])
    _, reply = await swap(api, token, image, short, "after", quality="fast")
    view = await wait_state(api, token, reply["task_id"], ("finished", "failed"), timeout=60)
    assert view["state"] == "finished", view["progress"]


@pytest.mark.gen_test(timeout=120)
async def test_cancel_running_dask_task_and_recover(ctx, api, testdata, clips):
    token, image, video = await prepare(api, testdata, clips["long"])
    _, reply = await swap(api, token, image, video, "stopped")
    task_id = reply["task_id"]
    await wait_progress(api, token, task_id)
    started = time.monotonic()
    code, _ = await api.call("POST", "/video/cancel_task", {"task_id": task_id}, token=token)
    assert code == 200
    view = await wait_state(api, token, task_id, ("cancelled", "failed", "finished"))
    took = time.monotonic() - started
    assert view["state"] == "cancelled" and took < 1.5, (view, took)
    print(f"dask cancel: cancelled {took:.2f} s after the request")
    assert not list(ctx.media.tmp.iterdir())
    assert not (ctx.media.root / "alice" / "stopped.mp4").exists()
    # restart recovery is dispatcher-agnostic: a task left 'running' runs again on Dask
    short = await upload(api, token, "video", "s.mp4", clips["short"])
    await plant_interrupted_task(ctx, token, image, short, "deadbeef000000d1")
    assert await ctx.tasks.recover() == 1
    view = await wait_state(api, token, "deadbeef000000d1", ("finished", "failed"))
    assert view["state"] == "finished", view["progress"]
    assert (ctx.media.root / "alice" / "resumed.mp4").stat().st_size > 1000


@pytest.mark.gen_test(timeout=60)
async def test_engine_errors_from_a_worker_keep_their_message(ctx, tmp_path):
    """An EngineError raised on a worker reaches the service as itself, not as a Dask
    error, so the task's message is the engine's sentence."""
    import engine

    job = Job(task_id="broken", image_path=str(tmp_path / "missing.jpg"),
              video_path=str(tmp_path / "missing.mp4"), out_path=str(tmp_path / "out.mp4"))
    with pytest.raises(engine.EngineError) as raised:
        await ctx.tasks.dispatcher.run(job, lambda *p: None)
    assert str(raised.value) and "Dask" not in str(raised.value)


@pytest.mark.gen_test(timeout=90)
async def test_segment_and_photo_jobs_reach_the_workers_with_their_fields(ctx, testdata, clips,
                                                                         tmp_path):
    """The new Job fields (``start_s``/``end_s``, ``target_kind``) travel through Dask as
    they do to a local worker: a 0.5 s cut of a 6 s clip and a photo target, at once."""
    import asyncio

    import cv2

    video = tmp_path / "six.mp4"
    video.write_bytes(clips["long"])
    face = str(testdata / "face_obama.jpg")
    cut = Job(task_id="cut", image_path=face, video_path=str(video),
              out_path=str(tmp_path / "cut.mp4"), quality="fast", start_s=4.0, end_s=4.5)
    photo = Job(task_id="photo", image_path=face, video_path=str(testdata / "face_woman.jpg"),
                out_path=str(tmp_path / "photo.jpg"), quality="fast", target_kind="image")
    done, shot = await asyncio.gather(ctx.tasks.dispatcher.run(cut, lambda *p: None),
                                      ctx.tasks.dispatcher.run(photo, lambda *p: None))
    assert done["frames"] == 15 == frame_count(tmp_path / "cut.mp4"), done
    assert shot["swapped_frames"] == 1
    assert cv2.imread(str(tmp_path / "photo.jpg")).shape == \
        cv2.imread(str(testdata / "face_woman.jpg")).shape


def documented_commands() -> dict[str, list[str]]:
    """The ``dask scheduler`` and ``dask worker`` command lines of docs/scaling.md, as words."""
    text = (ROOT / "docs" / "scaling.md").read_text()
    commands: dict[str, list[str]] = {}
    for line in text.replace("\\\n", " ").splitlines():
        if line.startswith(".venv/bin/dask "):
            words = shlex.split(line)
            commands.setdefault(words[1], words)
    return commands


def start_documented(words: list[str], ports: dict[str, int], folder: Path
                     ) -> subprocess.Popen:
    """Run a documented command with this venv's own executable, loopback addresses and
    free ``ports`` for the documented ones, from a folder outside the checkout and without
    PYTHONPATH: what it imports must come from the installed project."""
    mapped = {"SCHEDULER": "127.0.0.1", "WORKER": "127.0.0.1",
              **{doc: str(free) for doc, free in ports.items()}}
    pattern = re.compile("|".join(map(re.escape, mapped)))
    argv = [str(Path(sys.executable).with_name("dask"))]
    argv += [pattern.sub(lambda m: mapped[m.group(0)], word) for word in words[1:]]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    log = open(folder / f"{words[1]}.log", "wb")  # noqa: SIM115 - closed with the process
    try:
        return subprocess.Popen(argv, cwd=folder, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        log.close()


def log_tails(folder: Path) -> str:
    return "\n".join(f"{log.name}: {log.read_text()[-1500:]}" for log in folder.glob("*.log"))


def listening_addresses(procs: list[subprocess.Popen]) -> set[str]:
    """The addresses that any process of these commands' process groups listens on."""
    import psutil

    groups = {proc.pid for proc in procs}
    found = set()
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(process.pid) in groups:
                found |= {c.laddr.ip for c in process.net_connections("inet")
                          if c.status == psutil.CONN_LISTEN}
    return found


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the command's own process group (a worker's nanny has children), then
    SIGKILL what is left after a bounded wait."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def swap_over_http(server, image: bytes, clip: bytes, swapname: str) -> dict:
    """Register, upload a face and a clip, start a swap and poll it to an end state."""
    import urllib.request

    from tests.media import multipart
    from tests.serverproc import request

    body = {"username": "carol", "password": "secret123"}
    assert request(server.port, "/api/mgr/customers",
                   {"action": "add_customer", "data": body})[0] == 200
    _, reply = request(server.port, "/api/mgr/customers", {"action": "login", "data": body})
    token = reply["token"]
    paths = []
    for kind, name, content in (("image", "face.jpg", image), ("video", "clip.mp4", clip)):
        data, ctype = multipart({"filetype": kind}, "file", name, content)
        req = urllib.request.Request(
            f"http://127.0.0.1:{server.port}/video/upload", data=data,
            headers={"Content-Type": ctype, "Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            paths.append(json.loads(resp.read())["filepath"])
    code, reply = request(server.port, "/video/faceswap", {
        "imagepath": paths[0], "videopath": paths[1], "swapname": swapname,
        "quality": "fast"}, token=token)
    assert code == 200, reply
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        _, view = request(server.port, "/video/view_task", {"task_id": reply["task_id"]},
                          token=token)
        if view["state"] in ("finished", "failed", "cancelled"):
            break
        time.sleep(0.1)
    return view


def test_cluster_started_as_documented_runs_a_swap_through_the_server(testdata, clips,
                                                                      tmp_path) -> None:
    """docs/scaling.md's ``dask scheduler`` and ``dask worker`` as separate processes of
    this venv, and ``server.py --executor dask://...`` as a real child process: the task
    graph is unpickled by a scheduler that is not this test's process, so the project
    must be installed, not merely on this process's sys.path."""
    from tests.serverproc import Server

    commands = documented_commands()
    assert set(commands) >= {"scheduler", "worker"}, commands
    assert "--executor dask://SCHEDULER:8786" in (ROOT / "docs" / "scaling.md").read_text()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ports = {"8786": free_port(), "8787": free_port()}
    port = ports["8786"]
    procs = [start_documented(commands["scheduler"], ports, elsewhere)]
    server = None
    try:
        procs.append(start_documented(commands["worker"], ports, elsewhere))
        with distributed.Client(f"tcp://127.0.0.1:{port}", timeout=60) as client:
            for _ in range(60):  # bounded; a worker that cannot import the project exits
                assert all(p.poll() is None for p in procs), log_tails(elsewhere)
                with contextlib.suppress(distributed.TimeoutError):
                    client.wait_for_workers(2, timeout=2)
                    break
            workers = client.scheduler_info()["workers"]
        assert len(workers) == 2, log_tails(elsewhere)
        assert all(w.startswith("tcp://127.0.0.1:") for w in workers), workers
        listening = listening_addresses(procs)
        assert listening and listening <= {"127.0.0.1"}, listening
        server = Server(tmp_path / "data").start("--executor", f"dask://127.0.0.1:{port}")
        view = swap_over_http(server, (testdata / "face_woman.jpg").read_bytes(),
                              clips["short"], "documented")
        assert view["state"] == "finished", view["progress"]
        out = tmp_path / "data" / "media" / "carol" / "documented.mp4"
        source = tmp_path / "in.mp4"
        source.write_bytes(clips["short"])
        assert frame_count(out) == frame_count(source)
    finally:
        if server is not None:
            assert server.stop() == 0
        for proc in reversed(procs):
            stop_group(proc)
    scheduler_log = (elsewhere / "scheduler.log").read_text()
    assert "deserializ" not in scheduler_log.lower(), scheduler_log[-3000:]
    assert "ModuleNotFoundError" not in scheduler_log + (elsewhere / "worker.log").read_text()


@pytest.mark.gen_test(timeout=60)
async def test_scheduler_loss_fails_running_tasks_and_the_dispatcher_reconnects(tmp_path):
    """Running tasks fail with a clear message when the scheduler goes away; once a
    scheduler answers at the same address again, the next task runs without a restart."""
    import engine
    from engine.dask_dispatch import SCHEDULER_LOST
    from engine.dispatch import JobFailed

    first = await distributed.Scheduler(port=0, dashboard_address=":0")
    port = first.port
    dispatcher = await DaskDispatcher.connect(f"dask://127.0.0.1:{port}", timeout=2)
    job = Job(task_id="waits", image_path=str(tmp_path / "missing.jpg"),
              video_path=str(tmp_path / "missing.mp4"), out_path=str(tmp_path / "out.mp4"))
    try:
        running = tornado.gen.convert_yielded(dispatcher.run(job, lambda *p: None))
        await tornado.gen.sleep(0.3)  # submitted; no worker, so it waits on the scheduler
        await first.close()
        with pytest.raises(JobFailed) as failed:
            await running
        assert str(failed.value) == SCHEDULER_LOST
        for _ in range(100):  # distributed gives up reconnecting after the timeout
            if dispatcher.client.status == "closed":
                break
            await tornado.gen.sleep(0.1)
        async with distributed.Scheduler(port=port, dashboard_address=":0") as second, \
                distributed.Worker(second.address, nthreads=1, dashboard_address=":0"):
            with pytest.raises(engine.EngineError):  # ran on the new cluster's worker
                await dispatcher.run(job, lambda *p: None)
            assert dispatcher.slots == 1
    finally:
        await dispatcher.close()
