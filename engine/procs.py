"""Child processes of a swap: they die with their parent, and none outlives the CLI.

A swap may start two processes: the helper (:mod:`engine.offload`) and, because the
helper is started with multiprocessing's ``spawn``, multiprocessing's resource
tracker. The helper ends when its pipe closes, but only once it next reads the
pipe (an interpreter still importing OpenCV reads nothing), and the tracker ends
when the last process holding its pipe has exited, i.e. *after* the CLI. So the
helper asks the kernel to kill it with its parent (:func:`die_with_parent`), and a
command-line run stops the tracker before it exits (:func:`stop_resource_tracker`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when ``parent`` (its creator) exits;
    exit at once if it already has.

    The signal is bound to the creating thread: callers start their children from
    a thread that outlives them (the thread that runs the swap, or a pool's main
    thread). A no-op where ``prctl`` is missing (not Linux).
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def stop_resource_tracker() -> None:
    """Stop multiprocessing's resource tracker if this process started it, and reap it.

    For a process about to exit after its helpers ended (the CLI): the tracker
    would otherwise run on for a moment after the exit and be left to init to reap
    (Python 3.11 does not stop it at exit).
    A process that did not start the tracker (a service worker, which shares the
    server's) leaves it alone.
    """
    import multiprocessing
    from multiprocessing import resource_tracker

    tracker = resource_tracker._resource_tracker
    if getattr(tracker, "_pid", None) is None or multiprocessing.active_children():
        return  # not ours; or a child still holds the tracker's pipe: waiting could hang
    with contextlib.suppress(Exception):  # stops by closing its pipe, then waitpid
        tracker._stop()
