"""Run swap jobs on a Dask distributed cluster, behind the same three calls as
:class:`engine.dispatch.LocalDispatcher`.

Why Dask and not a home-made worker protocol: Dask already does worker discovery,
placement, failure detection (a dead worker's running tasks are rescheduled up to the
scheduler's ``allowed-failures`` times, then fail with ``KilledWorker``) and gives us
two channels that cross machines:

* **progress** — a worker calls ``Worker.log_event(TOPIC, ...)`` (batched, never
  blocks the swap); the scheduler forwards each event to the server's client, which
  subscribed to :data:`TOPIC`. Nothing goes through local pipes or queues;
* **cancellation** — one :class:`distributed.Event` per run, set by the server and
  polled by the job's ``should_cancel`` at most every :data:`CANCEL_POLL` seconds
  (one small scheduler round trip). ``future.cancel()`` is the fallback for a job
  that has not started yet or does not react; a job whose key the scheduler released
  also stops at its next poll.

Files are not shipped through Dask: a :class:`~engine.dispatch.Job` holds absolute
paths under the data dir, so every worker must mount the server's data dir at the
same path (docs/scaling.md). The engine writes ``out_path`` atomically inside
``<data>/tmp/task-<id>/``, which is therefore on the shared mount too.

Workers need this project importable (``engine`` and its dependencies), because the
submitted function is pickled by reference: :func:`run_job`. Start them with
``--preload engine.dask_dispatch`` to load the models once per worker process
(:func:`dask_setup`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from engine.dispatch import PROGRESS_INTERVAL, Job, JobFailed, ProgressCallback
from engine.errors import Cancelled, EngineError

if TYPE_CHECKING:  # distributed is imported lazily: ``--executor local`` never pays for it
    from distributed import Client, Future

log = logging.getLogger(__name__)

#: The one event topic all progress travels on (one topic keeps the scheduler's
#: per-topic event log bounded, whatever the number of tasks).
TOPIC = "faceswap-progress"
#: Seconds between two cancellation checks of a running job (each is a scheduler RPC).
CANCEL_POLL = 0.3
#: Seconds a cancelled job may take to stop on its own before its future is cancelled.
CANCEL_GRACE = 2.0
#: Seconds a cancelled-but-unresponsive job's event stays set on the scheduler.
EVENT_LINGER = 600.0
#: Seconds to wait for the scheduler at start-up.
CONNECT_TIMEOUT = 15.0

LOST_WORKER = "the worker running this task was lost"
SCHEDULER_LOST = "the connection to the Dask scheduler was lost; start the task again"


def scheduler_address(executor: str) -> str:
    """``dask://host:port`` → ``tcp://host:port``; ``tcp://`` and ``tls://`` pass through.

    ``dask://`` is the setting's own spelling so that ``--executor`` reads as a choice
    between engines; Dask itself only knows transport schemes.
    """
    if executor.startswith("dask://"):
        rest = executor[len("dask://"):]
        address = f"tcp://{rest}"
    elif executor.startswith(("tcp://", "tls://")):
        rest, address = executor.split("://", 1)[1], executor
    else:
        raise ValueError(f"executor must be 'local' or dask://host:port, not {executor!r}")
    if not rest or rest.startswith(":"):
        raise ValueError(f"executor {executor!r} has no scheduler host")
    if ":" not in rest.rsplit("]", 1)[-1]:
        address += ":8786"  # Dask's default scheduler port
    return address


# -- worker side ----------------------------------------------------------------------
def dask_setup(worker: Any) -> None:
    """Preload hook (``dask worker --preload engine.dask_dispatch``): load the models
    once per worker process, so the first swap on it does not pay for it."""
    with contextlib.suppress(Exception):
        from engine.pipeline import preload

        preload()


def run_job(job_fields: dict[str, Any], event_name: str, token: str) -> dict[str, Any]:
    """Run one swap on a Dask worker; progress goes out as scheduler events.

    Module-level so Dask pickles it by reference: the worker imports this module
    (the project must be installed there) instead of receiving code.
    """
    from distributed import Event, get_worker
    from distributed.worker import thread_state

    import engine

    worker = get_worker()
    key = getattr(thread_state, "key", None)
    task_id = job_fields["task_id"]
    base = {"task_id": task_id, "token": token}

    def report(message: dict[str, Any]) -> None:
        # Reporting must never fail the swap (e.g. the stream to a restarting scheduler).
        with contextlib.suppress(Exception):
            worker.log_event(TOPIC, {**base, **message})

    report({"kind": "started", "pid": os.getpid(), "worker": worker.address})
    event = Event(event_name)
    last = [0.0, -1]
    polled = [0.0, False]

    def progress(done: int, total: int, fps: float) -> None:
        now = time.monotonic()
        percent = int(100 * done / total) if total else 0
        if now - last[0] >= PROGRESS_INTERVAL or percent != last[1] or done == total:
            last[0], last[1] = now, percent
            report({"kind": "progress", "p": [int(done), int(total), float(fps), time.time()]})

    def should_cancel() -> bool:
        now = time.monotonic()
        if polled[1] or now - polled[0] < CANCEL_POLL:
            return polled[1]
        polled[0] = now
        with contextlib.suppress(Exception):  # an unreachable scheduler must not kill the job
            polled[1] = bool(event.is_set())
        if not polled[1] and key is not None:
            # The scheduler released the key (future cancelled, client gone): stop too,
            # so an orphaned job does not go on writing a task folder.
            with contextlib.suppress(Exception):
                state = worker.state.tasks.get(key)
                polled[1] = state is None or state.state in ("cancelled", "released")
        return polled[1]

    try:
        # every Job field (target kind, segment, ...) reaches the engine as it does locally
        return engine.run_swap(job_fields, progress=progress, should_cancel=should_cancel)
    except EngineError as exc:
        # Dask pickles the exception *with* its chain (tblib); a chained PyAV or OpenCV
        # error may not unpickle, and Dask would then send a bare Exception(repr(...))
        # instead of the engine's sentence. The sentence is all the server needs.
        exc.__cause__ = exc.__context__ = None
        raise
    finally:
        if polled[1]:
            with contextlib.suppress(Exception):
                event.clear()  # removes it from the scheduler


# -- server side ----------------------------------------------------------------------
class DaskDispatcher:
    """Jobs on a Dask cluster; ``slots`` follows the scheduler's total worker threads.

    Build it with :meth:`connect` (it needs the running event loop). Each ``run`` is
    one Dask task with a unique key; the task service keeps its own fair queue, so at
    most ``slots`` tasks are submitted at once.
    """

    def __init__(self, client: Client, *, own_client: bool = True) -> None:
        self._client = client
        self._own_client = own_client
        self._address: str = client.scheduler.address
        self._running: dict[str, tuple[str, Future, Any]] = {}  # task_id -> token, future, event
        self._listeners: dict[str, tuple[str, ProgressCallback]] = {}
        self._started: dict[str, dict[str, Any]] = {}  # task_id -> {"pid", "worker"}
        self._cancelled: set[str] = set()
        self.worker_restarts = 0  # workers lost mid-task: a run started again, or KilledWorker
        self._timers: set[asyncio.TimerHandle] = set()
        self._background: set[asyncio.Task] = set()  # referenced until done (no GC mid-run)
        client.subscribe_topic(TOPIC, self._on_event)

    @classmethod
    async def connect(cls, executor: str, timeout: float = CONNECT_TIMEOUT) -> DaskDispatcher:
        """Connect to the scheduler named by ``executor`` (``dask://host:port``)."""
        address = scheduler_address(executor)
        client = await cls._open_client(address, timeout)
        identity = await client.scheduler.identity(n_workers=0)
        log.info("dask scheduler %s: %d worker(s), %d thread(s)", address,
                 identity.get("n_workers", 0), identity.get("total_threads", 0))
        return cls(client)

    @staticmethod
    async def _open_client(address: str, timeout: float) -> Client:
        from distributed import Client

        try:
            return await Client(address, asynchronous=True, timeout=timeout,
                                set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise RuntimeError(f"cannot reach the Dask scheduler at {address}: {exc}") from exc

    async def _ready_client(self) -> Client:
        """The client, opened again if it gave up on a scheduler that went away
        (distributed closes a client that cannot reconnect within its timeout)."""
        if self._client.status in ("closing", "closed") and self._own_client:
            log.warning("reconnecting to the Dask scheduler at %s", self._address)
            try:
                client = await self._open_client(self._address, CONNECT_TIMEOUT)
            except RuntimeError as exc:
                raise JobFailed(SCHEDULER_LOST) from exc
            self._client = client
            client.subscribe_topic(TOPIC, self._on_event)
        return self._client

    @property
    def slots(self) -> int:
        """Worker threads the scheduler reports (refreshed by the client every ~2 s).

        At least 1, so that a task waits on the scheduler for a worker to join rather
        than the queue never starting.
        """
        info = self._client.scheduler_info() or {}
        return max(1, int(info.get("total_threads") or 0))

    @property
    def client(self) -> Client:
        """The asynchronous Dask client (for tests and diagnostics)."""
        return self._client

    def _on_event(self, event: tuple[float, dict[str, Any]]) -> None:
        _, message = event
        task_id = message.get("task_id")
        listener = self._listeners.get(task_id)
        if listener is None or listener[0] != message.get("token"):
            return  # a late message from a finished run, or another server's task
        if message.get("kind") == "started":
            if task_id in self._started:  # run again: the worker of the last attempt was lost
                self.worker_restarts += 1
            self._started[task_id] = {"pid": message.get("pid"),
                                      "worker": message.get("worker")}
        elif message.get("kind") == "progress":
            listener[1](*message["p"])

    async def run(self, job: Job, on_progress: ProgressCallback) -> dict[str, Any]:
        """Run ``job`` on the cluster; raise :class:`JobFailed` or :class:`Cancelled`."""
        from distributed import Event, KilledWorker
        from distributed.client import FutureCancelledError

        if job.task_id in self._cancelled:
            self._cancelled.discard(job.task_id)
            raise Cancelled("the task was cancelled")
        client = await self._ready_client()
        token = uuid.uuid4().hex[:12]
        event = Event(f"faceswap-cancel-{job.task_id}-{token}", client=client)
        future = client.submit(run_job, asdict(job), event.name, token,
                               key=f"faceswap-{job.task_id}-{token}", pure=False)
        self._running[job.task_id] = (token, future, event)
        self._listeners[job.task_id] = (token, on_progress)
        linger = False
        try:
            return await future
        except (Cancelled, EngineError):
            raise
        except KilledWorker:
            self.worker_restarts += 1
            raise JobFailed(LOST_WORKER) from None
        except asyncio.CancelledError:  # server shutdown: stop the remote job too
            linger = True
            self._stop_remote(future, event)
            raise
        except Exception as exc:
            if job.task_id in self._cancelled:  # future.cancel() by the fallback
                linger = True
                raise Cancelled("the task was cancelled") from None
            if isinstance(exc, FutureCancelledError):  # e.g. scheduler-connection-lost
                log.warning("task %s: %s", job.task_id, exc)
                raise JobFailed(SCHEDULER_LOST) from None
            log.exception("task %s failed on the Dask cluster", job.task_id)
            raise JobFailed(f"the Dask cluster failed to run the task "
                            f"({type(exc).__name__}: {exc})") from exc
        finally:
            self._running.pop(job.task_id, None)
            self._listeners.pop(job.task_id, None)
            self._started.pop(job.task_id, None)
            self._cancelled.discard(job.task_id)
            if linger:
                # The job may still be running and must see the event when it next
                # polls; it clears the event itself then, else this timer does.
                self._later(EVENT_LINGER, self._clear, event)
            else:
                await self._clear(event)
            future.release()

    def cancel(self, task_id: str) -> None:
        """Set the job's event; cancel its future if it has not started, or after
        :data:`CANCEL_GRACE` if it does not stop."""
        self._cancelled.add(task_id)
        running = self._running.get(task_id)
        if running is None:
            return
        token, future, event = running
        self._spawn(self._set(event))
        if task_id not in self._started:  # still waiting on the scheduler for a thread
            self._spawn(self._cancel_future(future))
        else:
            self._later(CANCEL_GRACE, self._cancel_if_still_running, task_id, token)

    async def _cancel_if_still_running(self, task_id: str, token: str) -> None:
        running = self._running.get(task_id)
        if running is not None and running[0] == token:
            log.warning("task %s ignored cancellation; cancelling its Dask future", task_id)
            await self._cancel_future(running[1])

    def _stop_remote(self, future: Future, event: Any) -> None:
        self._spawn(self._set(event))
        self._spawn(self._cancel_future(future))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _later(self, delay: float, coro_fn: Any, *args: Any) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            self._spawn(coro_fn(*args))

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    @staticmethod
    async def _cancel_future(future: Future) -> None:
        with contextlib.suppress(Exception):
            await future.cancel()

    @staticmethod
    async def _set(event: Any) -> None:
        with contextlib.suppress(Exception):
            await event.set()

    async def _clear(self, event: Any) -> None:
        if event.client is not self._client or self._client.status != "running":
            return  # the scheduler went away, and its events with it
        with contextlib.suppress(Exception):
            await asyncio.wait_for(event.clear(), 5)

    def worker_pid(self, task_id: str) -> int | None:
        """The pid of the worker process running ``task_id`` (for tests and diagnostics)."""
        return (self._started.get(task_id) or {}).get("pid")

    def worker_address(self, task_id: str) -> str | None:
        """The address of the Dask worker running ``task_id``."""
        return (self._started.get(task_id) or {}).get("worker")

    async def close(self) -> None:
        """Stop running jobs, then disconnect (the cluster itself keeps running)."""
        stops = []
        for _, future, event in list(self._running.values()):
            stops += [self._set(event), self._cancel_future(future)]
        await asyncio.gather(*stops)
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        with contextlib.suppress(Exception):
            self._client.unsubscribe_topic(TOPIC)
        if self._own_client:
            await self._client.close()
