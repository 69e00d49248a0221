"""Run swap jobs in worker processes and bring their progress back.

The service talks to a :class:`Dispatcher`: ``run(job, on_progress)`` awaits one job,
``cancel(task_id)`` asks it to stop, ``close()`` shuts down. :class:`LocalDispatcher` is
the single-machine implementation; a distributed one can stand behind the same three
calls.

Why one single-worker ``ProcessPoolExecutor`` per slot instead of one pool of N: when a
worker of a shared pool dies, the executor breaks and fails *every* job in it. With
one executor per slot a crash (``kill -9``, a segfault in native code) fails exactly
the job on that slot; the slot's executor is rebuilt and the others go on.

Progress and cancellation use multiprocessing primitives handed to each worker at
start: a pipe per worker process for ``(task_id, kind, payload)`` messages (read by a
thread and handed to the event loop), and a shared array in which slot ``i`` holds
the sequence number of the job that must stop. A pipe, not one queue shared by all
workers: a ``multiprocessing.Queue`` writes under a lock shared between processes, and
a worker killed while its feeder thread held it left the lock taken for good. Every
later worker then hung at exit (joining its feeder thread), and the server's shutdown
with it (seen once in CI, after the test that kills a worker). A pipe has one writer
and dies with its worker's executor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from engine.errors import Cancelled, EngineError
from engine.procs import die_with_parent

log = logging.getLogger(__name__)

#: Seconds between progress messages from a worker (plus one per whole percent).
PROGRESS_INTERVAL = 0.25
#: Scheduling niceness of worker processes (higher = yields to the server).
WORKER_NICENESS = 10
#: Seconds a cancelled job may take to stop on its own before its process is killed.
CANCEL_GRACE = 2.0


@dataclass(frozen=True)
class Job:
    """A picklable description of one swap: paths and options only."""

    task_id: str
    image_path: str | tuple[str, ...]  # one photo, or several photos of one person
    video_path: str
    out_path: str
    many_faces: bool = False
    keep_mouth: bool = False
    quality: str = "balanced"
    max_height: int | None = None
    max_frames: int | None = None
    face_video: str | None = None  # a short video of the person instead of photos
    #: "video" (MP4 out) or "image" (a photo target: JPEG/PNG out, see engine.still)
    target_kind: str = "video"
    #: the segment to swap and output, seconds from the video's start (None: its ends)
    start_s: float | None = None
    end_s: float | None = None
    #: The only person to swap (a descriptor from ``engine.people``), and the box of
    #: the photo's face to use; None: the largest face of each.
    target: tuple[float, ...] | None = None
    source_box: tuple[int, ...] | None = None


#: ``(frames_done, frames_total, fps, sent_at)``; ``sent_at`` is the worker's
#: ``time.time()`` when it reported, so latency to the client can be measured.
ProgressCallback = Callable[[int, int, float, float], None]


class JobFailed(Exception):
    """The job ended with an error; ``str()`` is the user-facing reason."""


class Dispatcher(Protocol):
    slots: int
    #: Worker processes lost while running a job, since start (for the metrics).
    worker_restarts: int

    async def run(self, job: Job, on_progress: ProgressCallback) -> dict[str, Any]: ...

    def cancel(self, task_id: str) -> None: ...

    async def close(self) -> None: ...


# -- worker side ----------------------------------------------------------------------
_worker: dict[str, Any] = {}


def _init_worker(slot: int, conn: Any, cancel_flags: Any, server_pid: int,
                 memory_mb: int = 0) -> None:
    """Pool initializer: keep the channels and warm the models once per process.

    A worker must not outlive a server killed with SIGKILL: it would go on writing a
    task that the restarted server has already queued again. ``memory_mb`` caps its
    address space (and its swap helper's, which inherits it): a task that needs more
    fails with MemoryError or is killed, which fails that task alone.
    """
    if memory_mb > 0:
        import resource

        cap = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server handles Ctrl-C
    # Swaps are batch work: the event loop answering requests must win the CPU.
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)
    die_with_parent(server_pid)
    lock = threading.Lock()  # the pipeline's threads report progress: one send at a time

    def send(message: tuple[str, str, Any]) -> None:
        with lock:
            conn.send(message)

    _worker.update(slot=slot, send=send, cancel=cancel_flags, pid=os.getpid())
    with contextlib.suppress(Exception):
        from engine.pipeline import preload

        preload()


def _run_job(job_fields: dict[str, Any], seq: int) -> dict[str, Any]:
    import engine

    send, cancel, slot = _worker["send"], _worker["cancel"], _worker["slot"]
    task_id = job_fields["task_id"]
    send((task_id, "started", os.getpid()))
    last = [0.0, -1]

    def progress(done: int, total: int, fps: float) -> None:
        now = time.monotonic()
        percent = int(100 * done / total) if total else 0
        if now - last[0] >= PROGRESS_INTERVAL or percent != last[1] or done == total:
            last[0], last[1] = now, percent
            send((task_id, "progress", (done, total, fps, time.time())))

    return engine.run_swap(job_fields, progress=progress,
                           should_cancel=lambda: cancel[slot] == seq)


# -- server side ----------------------------------------------------------------------
class LocalDispatcher:
    """Jobs on ``slots`` local worker processes, one single-worker executor each."""

    def __init__(self, slots: int, loop: asyncio.AbstractEventLoop | None = None,
                 memory_mb: int = 0) -> None:
        self.slots = max(1, slots)
        self.memory_mb = memory_mb
        self._mp = multiprocessing.get_context("spawn")  # no fork of a threaded server
        self._cancel = self._mp.Array("q", self.slots, lock=False)
        self._executors: list[ProcessPoolExecutor | None] = [None] * self.slots
        self._stops: list[threading.Event | None] = [None] * self.slots  # their pipes' readers
        self._free: asyncio.Queue[int] = asyncio.Queue()
        for slot in range(self.slots):
            self._free.put_nowait(slot)
        self._seq = 0
        self._running: dict[str, tuple[int, int]] = {}  # task_id -> (slot, seq)
        self._pids: dict[str, int] = {}
        self._listeners: dict[str, ProgressCallback] = {}
        self._cancelled: set[str] = set()
        self.worker_restarts = 0
        self._loop = loop or asyncio.get_running_loop()

    def _executor(self, slot: int) -> ProcessPoolExecutor:
        executor = self._executors[slot]
        if executor is None:
            reader, writer = self._mp.Pipe(duplex=False)
            executor = ProcessPoolExecutor(
                1, mp_context=self._mp, initializer=_init_worker,
                initargs=(slot, writer, self._cancel, os.getpid(), self.memory_mb))
            stop = threading.Event()
            threading.Thread(target=self._read_pipe, args=(reader, writer, stop),
                             name=f"progress-reader-{slot}", daemon=True).start()
            self._executors[slot], self._stops[slot] = executor, stop
        return executor

    def _read_pipe(self, reader: Any, writer: Any, stop: threading.Event) -> None:
        """Hand one worker's messages to the event loop until its executor is gone.

        Runs on its own thread. The server keeps the pipe's write end open (a worker
        the executor starts later inherits it), so the end is told by ``stop``.
        """
        try:
            while not stop.is_set():
                if not reader.poll(0.5):
                    continue
                message = reader.recv()
                with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                    self._loop.call_soon_threadsafe(self._on_message, message)
        except Exception:  # noqa: BLE001 - a worker killed mid-message: its pipe is done
            pass
        finally:
            reader.close()
            writer.close()

    def _on_message(self, message: tuple[str, str, Any]) -> None:
        task_id, kind, payload = message
        if kind == "started":
            self._pids[task_id] = payload
        elif kind == "progress" and task_id in self._listeners:
            self._listeners[task_id](*payload)

    async def run(self, job: Job, on_progress: ProgressCallback) -> dict[str, Any]:
        """Run ``job`` on the next free slot; raise :class:`JobFailed` or :class:`Cancelled`."""
        slot = await self._free.get()
        self._seq += 1
        seq = self._seq
        self._running[job.task_id] = (slot, seq)
        self._listeners[job.task_id] = on_progress
        try:
            if job.task_id in self._cancelled:
                raise Cancelled("the task was cancelled")
            future = self._executor(slot).submit(_run_job, asdict(job), seq)
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:  # the server is stopping: stop the worker too
            self._cancel[slot] = seq
            raise
        except BrokenProcessPool:
            self.worker_restarts += 1  # the slot gets a new process for its next job
            self._discard(slot)
            if job.task_id in self._cancelled:
                raise Cancelled("the task was cancelled") from None
            raise JobFailed("the worker process running this task crashed") from None
        except (Cancelled, EngineError):
            raise
        except Exception as exc:  # the engine's own bug: one task fails, not the server
            log.exception("task %s failed unexpectedly", job.task_id)
            raise JobFailed(f"internal error in the swap engine ({type(exc).__name__})") from exc
        finally:
            self._running.pop(job.task_id, None)
            self._listeners.pop(job.task_id, None)
            self._pids.pop(job.task_id, None)
            self._cancelled.discard(job.task_id)
            self._free.put_nowait(slot)

    def _discard(self, slot: int) -> None:
        executor, self._executors[slot] = self._executors[slot], None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        self._stop_reader(slot)

    def _stop_reader(self, slot: int) -> None:
        stop, self._stops[slot] = self._stops[slot], None
        if stop is not None:
            stop.set()

    def cancel(self, task_id: str) -> None:
        """Ask the job to stop between frames; kill its process if it does not."""
        self._cancelled.add(task_id)
        if task_id not in self._running:
            return
        slot, seq = self._running[task_id]
        self._cancel[slot] = seq
        self._loop.call_later(CANCEL_GRACE, self._kill_if_still_running, task_id, seq)

    def _kill_if_still_running(self, task_id: str, seq: int) -> None:
        running = self._running.get(task_id)
        pid = self._pids.get(task_id)
        if running and running[1] == seq and pid:
            log.warning("task %s ignored cancellation; killing worker %d", task_id, pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def worker_pid(self, task_id: str) -> int | None:
        """The pid of the process running ``task_id`` (for tests and diagnostics)."""
        return self._pids.get(task_id)

    async def close(self) -> None:
        for task_id in list(self._running):
            self.cancel(task_id)
        for slot in range(self.slots):
            executor, self._executors[slot] = self._executors[slot], None
            if executor is not None:
                await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
            self._stop_reader(slot)
