"""The interactive worker process: a call over its timeout gets its process killed, a
process that died (during a call or between calls) is replaced, engine errors come back."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from engine.errors import EngineError
from engine.interactive import InteractiveWorker, WorkerCrashed, WorkerTimeout


def test_timeout_kills_and_crash_replaces() -> None:
    async def run() -> None:
        worker = InteractiveWorker("test worker", memory_mb=1024,
                                   warm="engine.interactive:sleep_none")
        try:
            assert await worker.call("engine.interactive:sleep", 0.01) == 0.01
            first = worker.pid()
            with pytest.raises(WorkerTimeout):
                await worker.call("engine.interactive:sleep", 5.0, timeout=0.5)
            await asyncio.sleep(0.2)
            with pytest.raises(ProcessLookupError):
                os.kill(first, 0)  # killed, not left running
            assert await worker.call("engine.interactive:sleep", 0.01) == 0.01
            second = worker.pid()
            assert second not in (None, first)
            with pytest.raises(WorkerCrashed):
                await worker.call("engine.interactive:crash")
            # killed from outside between calls: the next call still answers
            assert await worker.call("engine.interactive:sleep", 0.01) == 0.01
            os.kill(worker.pid(), signal.SIGKILL)
            assert await worker.call("engine.interactive:sleep", 0.01) == 0.01
            # an engine error comes back as itself
            with pytest.raises(EngineError):
                await worker.call("engine:find_people", "/nonexistent/file.mp4")
            assert worker.restarts == 3
        finally:
            await worker.close()

    asyncio.run(run())
