"""The embedded MongoDB: a secantusdb server run as a child process.

secantusdb is GPL-2.0, so it is only ever *run* (``secantusd-py``), never imported.
The child is started on a free loopback port with its WiredTiger files under
``<data-dir>/db`` and ``--sync-on-commit``, so every acknowledged write is in the
journal and a hard kill loses nothing. That is why it is asked to die with us by
SIGKILL (``PR_SET_PDEATHSIG``): secantusd's own SIGTERM handler was seen to hang
without a parent. Its pid is written next to the data so a child that survives
anyway is stopped before the next start instead of blocking it.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pymongo

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _executable() -> str:
    """``secantusd-py`` from this interpreter's environment, else from PATH."""
    local = Path(sys.executable).with_name("secantusd-py")
    if local.exists():
        return str(local)
    found = shutil.which("secantusd-py")
    if not found:
        raise RuntimeError("secantusd-py not found: install requirements.txt (secantusdb)")
    return found


class EmbeddedMongo:
    """Start, watch and stop one secantusdb server for ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.db_path = self.data_dir / "db"
        self.pid_file = self.data_dir / "secantusd.pid"
        self.log_file = self.data_dir / "secantusd.log"
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 60.0) -> str:
        """Start the server (reusing the last port when it is free) and wait for ping."""
        self.db_path.mkdir(parents=True, exist_ok=True)
        self._stop_orphan()
        self.port = self.port or free_port()
        log_handle = open(self.log_file, "ab")
        try:
            self.process = subprocess.Popen(
                [_executable(), "--host", "127.0.0.1", "--port", str(self.port),
                 "--storage-path", str(self.db_path), "--log-level", "WARNING",
                 "--sync-on-commit"],
                cwd=self.data_dir, stdin=subprocess.DEVNULL, stdout=log_handle,
                stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        finally:
            log_handle.close()
        # "pid port": create-admin finds a live server's database by it (live_url)
        self.pid_file.write_text(f"{self.process.pid} {self.port}")
        self._wait_ready(timeout)
        log.info("embedded database (pid %d) on port %d", self.process.pid, self.port)
        return self.url

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client = pymongo.MongoClient(self.url, serverSelectionTimeoutMS=500, connect=False)
        try:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(
                        f"embedded database exited with status {self.process.returncode}; "
                        f"see {self.log_file}")
                try:
                    client.admin.command("ping")
                    return
                except pymongo.errors.PyMongoError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError("embedded database did not answer ping in time") \
                            from None
                    time.sleep(0.1)
        finally:
            client.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, wait, then SIGKILL: WiredTiger gets its chance to checkpoint."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("embedded database ignored SIGTERM; killing it")
                proc.kill()
                proc.wait()
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()

    def _recorded(self) -> tuple[int, int | None] | None:
        """``(pid, port)`` of a secantusd on our data that is still running, else None."""
        try:
            fields = self.pid_file.read_text().split()
            pid = int(fields[0])
            port = int(fields[1]) if len(fields) > 1 else None
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (FileNotFoundError, ValueError, IndexError, ProcessLookupError,
                PermissionError):
            return None
        if "secantusd" not in cmdline or str(self.db_path) not in cmdline:
            return None
        return pid, port

    @staticmethod
    def _parent(pid: int) -> int:
        try:  # field 4 of /proc/<pid>/stat, after the parenthesised command name
            return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ValueError, IndexError):
            return 0

    def owner(self) -> int | None:
        """The pid of the live process (a running server) whose database this is, or None
        when none runs or only an orphan is left (its server was killed)."""
        recorded = self._recorded()
        if recorded is None:
            return None
        parent = self._parent(recorded[0])
        if parent <= 1 or parent == os.getpid():
            return None
        try:  # an orphan is adopted by init or a subreaper, not by a Python server
            cmdline = Path(f"/proc/{parent}/cmdline").read_bytes()
        except (FileNotFoundError, PermissionError):
            return None
        return parent if b"python" in cmdline else None

    def live_url(self) -> str | None:
        """The URL of the database a running server keeps on this data dir, or None."""
        recorded = self._recorded()
        if recorded is None or recorded[1] is None or self.owner() is None:
            return None
        return f"mongodb://127.0.0.1:{recorded[1]}/"

    def _stop_orphan(self) -> None:
        """Stop a secantusd left running on our data by a server that was killed; refuse
        to touch one whose server is alive (RuntimeError): that database is in use."""
        recorded = self._recorded()
        if recorded is None:
            return
        pid = recorded[0]
        owner = self.owner()
        if owner is not None:
            raise RuntimeError(
                f"the database in {self.db_path} is in use by a running server (pid {owner}); "
                f"stop that server first, or use its database with --mongo-url")
        log.warning("stopping embedded database %d left by an earlier run", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        for _ in range(150):
            if not Path(f"/proc/{pid}").exists():
                return
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
