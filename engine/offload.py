"""The per-frame swap in a helper process, so that one task uses both cores.

In one process the tracker (dlib, which holds the GIL) and the swap (OpenCV
calls with numpy and Python glue between them) take turns on one GIL: the
threaded pipeline reached about 1.5 busy cores. The swap needs only the box
around the faces: that crop goes through a shared buffer to a spawned helper
(the pipe carries only the landmarks and a reply, so the hand-over costs two
copies of the crop), which swaps it in place while the calling process
decodes, tracks and encodes the neighbouring frames.

The helper exits when its pipe closes, and the kernel kills it when the task's
process dies (:mod:`engine.procs`). Processes that may not have children (a
daemonic Dask worker) swap in a thread instead: :func:`available` says which.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from multiprocessing.connection import Connection
from typing import NamedTuple

import cv2
import numpy as np

from .errors import EngineError
from .procs import die_with_parent
from .source import SourceFace
from .swap import faces_crop, swap_faces, swap_one


def available() -> bool:
    """True when this process may start a helper (daemonic processes may not)."""
    return not mp.current_process().daemon


class SwapHelper:
    """A started helper process, fed from one thread.

    Up to :attr:`depth` crops are in flight, each in its own slot of the shared
    buffer, so the helper already has the next crop while the calling thread
    waits for the GIL to copy the previous one back. Replies come in order.
    """

    depth = 2

    def __init__(self, width: int, height: int) -> None:
        """Start the helper for frames of at most ``width`` x ``height`` (even-padded)."""
        ctx = mp.get_context("spawn")  # never fork a process that runs threads
        self._conn, child = ctx.Pipe()
        self._slot = (width + 2) * (height + 2) * 3 // 2
        shared = ctx.RawArray("B", self._slot * self.depth)
        self._buf = np.frombuffer(shared, np.uint8)
        self._proc = ctx.Process(target=_serve, args=(child, shared, self._slot, os.getpid()),
                                 name="faceswap-helper", daemon=True)
        self._proc.start()
        child.close()
        self._has_source = False
        self._sent = 0

    def submit(self, y: np.ndarray, u: np.ndarray, v: np.ndarray, faces: list[np.ndarray],
               source: SourceFace, *, morph: float, keep_mouth: bool,
               eye_refs: list | None = None, views: list | None = None,
               covers: list | None = None, liquify: int = cv2.INTER_LINEAR) -> Job | None:
        """Start :func:`swap.swap_faces` on these planes (``liquify``: the task's, see
        ``swap.liquify_for``).

        Returns the job to pass to :meth:`wait`, or None when the frame needs
        nothing more (no face inside it, or swapped here: too large for a slot).
        At most :attr:`depth` jobs may be outstanding.
        """
        found = faces_crop(y, u, v, faces)
        if found is None:
            return None
        crop, local = found
        h, w = crop[0].shape
        if h * w * 3 // 2 > self._slot:  # larger than the stream header said
            swap_faces(y, u, v, faces, source, morph=morph, keep_mouth=keep_mouth,
                       eye_refs=eye_refs, views=views, covers=covers, liquify=liquify)
            return None
        slot = self._sent % self.depth
        bufs = _views(self._buf, slot * self._slot, h, w)
        for view, plane in zip(bufs, crop, strict=True):
            view[...] = plane
        try:
            if not self._has_source:
                self._conn.send(source)
                self._has_source = True
            self._conn.send((slot, local, eye_refs or [None] * len(local), (h, w), morph,
                             keep_mouth, views or [None] * len(local),
                             covers or [None] * len(local), liquify))
        except OSError as exc:
            raise _stopped() from exc
        self._sent += 1
        return Job(crop, bufs)

    def wait(self, job: Job) -> None:
        """Wait for the oldest outstanding job (``job``) and copy its result into the frame."""
        try:
            error = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise _stopped() from exc
        if error is not None:
            raise EngineError(error)
        for plane, view in zip(job.crop, job.views, strict=True):
            plane[...] = view

    def close(self) -> None:
        """Stop the helper (closing the pipe ends it); kill it if it does not exit."""
        self._conn.close()
        self._proc.join(2.0)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()


class Job(NamedTuple):
    """One crop in flight: the frame's planes to write to, and their slot in the buffer."""

    crop: tuple[np.ndarray, np.ndarray, np.ndarray]
    views: tuple[np.ndarray, np.ndarray, np.ndarray]


def _stopped() -> EngineError:
    return EngineError("processing failed: the swap helper process stopped")


def _views(buf: np.ndarray, at: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Y, U, V) planes of an h x w crop laid out one after another from ``buf[at]``."""
    n, q = h * w, (h // 2) * (w // 2)
    return (buf[at:at + n].reshape(h, w), buf[at + n:at + n + q].reshape(h // 2, w // 2),
            buf[at + n + q:at + n + 2 * q].reshape(h // 2, w // 2))


def _serve(conn: Connection, shared, slot_size: int, parent: int) -> None:
    """Helper main loop: receive the source once, then swap crops until the pipe closes."""
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    import cv2

    from .malloc import keep_freed_memory

    cv2.setNumThreads(1)
    keep_freed_memory()
    buf = np.frombuffer(shared, np.uint8)
    try:
        source: SourceFace = conn.recv()
        while True:
            slot, faces, refs, (h, w), morph, keep_mouth, views, covers, liquify = conn.recv()
            y, u, v = _views(buf, slot * slot_size, h, w)
            try:  # the crop is already the faces' union region (swap.faces_crop)
                for pts, ref, view, cover in zip(faces, refs, views, covers, strict=True):
                    swap_one(y, u, v, pts, source, view, morph=morph, keep_mouth=keep_mouth,
                             eye_ref=ref, cover=cover, liquify=liquify)
            except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
                conn.send(f"processing failed: {type(exc).__name__}: {exc}".splitlines()[0])
                continue
            conn.send(None)
    except (EOFError, OSError, KeyboardInterrupt):
        pass  # the task ended (or its process died): nothing left to do
