"""A worker process for the interactive engine calls: a preview frame, the people of a file.

A user waiting on the page must not wait behind queued swaps, and the server must not
run dlib on its own threads. So each kind of interactive call has one dedicated
process of its own (not a slot of :class:`engine.dispatch.LocalDispatcher`): spawned,
models loaded by its initializer, capped at ``memory_mb`` of address space, killed
with the server, at normal priority (the swap workers run at niceness 10, so a
preview wins the CPU from a running swap). A call that takes longer than its timeout
gets its process killed; a crashed or killed process is replaced on the next call
(and at once, warm, by :meth:`InteractiveWorker.start`).

Calls are serialised on the one process: the services bound how many wait (rate
limits, one analysis per file at a time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from engine.errors import EngineError
from engine.procs import die_with_parent

log = logging.getLogger(__name__)


class WorkerTimeout(EngineError):
    """The call took longer than its timeout; its process was killed."""


class WorkerCrashed(EngineError):
    """The process died during the call (out of memory, a crash in native code)."""


def _init(memory_mb: int, server_pid: int, warm: str) -> None:
    if memory_mb > 0:
        import resource

        cap = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server handles Ctrl-C
    die_with_parent(server_pid)
    with contextlib.suppress(Exception):
        _call(warm, (), {})


def _call(name: str, args: tuple, kwargs: dict) -> Any:
    """Run ``module:function`` (an engine entry point) in the worker."""
    import importlib

    module, _, function = name.partition(":")
    return getattr(importlib.import_module(module), function)(*args, **kwargs)


def _pid() -> int:
    return os.getpid()


def _alive(executor: ProcessPoolExecutor) -> bool:
    """Whether the executor's process (if started) is still running; ``is_alive`` reaps
    a dead one, which the executor itself notices only a moment later."""
    processes = getattr(executor, "_processes", None) or {}
    return all(p.is_alive() for p in list(processes.values()))


class InteractiveWorker:
    """One warm process running engine calls one at a time (see the module docstring)."""

    def __init__(self, name: str, *, memory_mb: int = 0,
                 warm: str = "engine.interactive:warm_models") -> None:
        self.name = name
        self.memory_mb = memory_mb
        self.warm = warm
        self.restarts = 0
        self._mp = multiprocessing.get_context("spawn")
        self._executor: ProcessPoolExecutor | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    1, mp_context=self._mp, initializer=_init,
                    initargs=(self.memory_mb, os.getpid(), self.warm))
                self._pid = None
            return self._executor

    async def start(self) -> None:
        """Start the process and load its models now (server start-up), not on first use."""
        executor = self._ensure()
        with contextlib.suppress(Exception):
            self._pid = await asyncio.wrap_future(executor.submit(_pid))

    async def call(self, function: str, *args: Any, timeout: float = 30.0,
                   **kwargs: Any) -> Any:
        """``function(*args, **kwargs)`` in the worker; raises what it raises, or
        :class:`WorkerTimeout` / :class:`WorkerCrashed`."""
        for attempt in range(2):
            executor = self._ensure()
            if not _alive(executor):  # killed since the last call: not this call's fault
                self._discard()
                executor = self._ensure()
            try:
                # A round trip first (~1 ms): a process killed a moment ago (its death
                # not yet noticed) fails here, and the call goes to a new one instead.
                self._pid = await asyncio.wrap_future(executor.submit(_pid))
                future = executor.submit(_call, function, args, kwargs)
                break
            except BrokenProcessPool:
                self._discard()
                if attempt:
                    raise WorkerCrashed(f"the {self.name} process does not start") from None
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except TimeoutError:
            log.warning("%s worker: %s took over %.0f s; killing it", self.name, function,
                        timeout)
            self._kill()
            raise WorkerTimeout(f"the {self.name} took too long") from None
        except BrokenProcessPool:
            self._discard()
            raise WorkerCrashed(f"the {self.name} process crashed") from None

    def _kill(self) -> None:
        pid = self._pid
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._discard()

    def _discard(self) -> None:
        with self._lock:
            executor, self._executor, self._pid = self._executor, None, None
        if executor is not None:
            self.restarts += 1
            executor.shutdown(wait=False, cancel_futures=True)

    def pid(self) -> int | None:
        """The worker's process id, once it has started (tests and diagnostics)."""
        return self._pid

    async def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)


def warm_models() -> None:
    """Load what previews and the people finder need (the ``balanced`` quality's models
    and the descriptor network), so the first user call does not pay for it."""
    from . import models
    from .pipeline import preload

    preload()
    models.face_encoder()


#: For tests: a callable that crashes the worker process.
def crash() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def sleep(seconds: float) -> float:
    """For tests: a call that takes ``seconds``."""
    import time

    time.sleep(seconds)
    return seconds



def sleep_none() -> None:
    """For tests: a warm-up that loads nothing."""
