"""Run ``server.py`` as a real child process for tests that need the whole service."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from storage.embedded import free_port

ROOT = Path(__file__).resolve().parent.parent


def request(port: int, path: str, body: dict | None = None, token: str | None = None
            ) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


class Server:
    """One ``server.py`` child on its own port and data dir (embedded database)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self, *extra_args: str) -> Server:
        env = {**os.environ, "FACESWAP_BCRYPT_ROUNDS": "6"}
        env.pop("FACESWAP_MONGO_URL", None)
        # The log goes to a file: a pipe nobody reads fills up and blocks the server.
        self.log = self.data_dir.parent / f"server-{self.port}.log"
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "server.py"), "--port", str(self.port),
                 "--data-dir", str(self.data_dir), "--workers", "1", *extra_args],
                env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if request(self.port, "/healthz")[0] == 200:
                    return self
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.2)
        raise AssertionError("server did not become healthy")

    def db_pid(self) -> int:
        return int((self.data_dir / "secantusd.pid").read_text().split()[0])

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(30)

    def stop_if_running(self) -> None:
        """Stop a server a test left running (SIGTERM, then SIGKILL if it hangs)."""
        if self.proc and self.proc.poll() is None:
            try:
                self.stop()
            except subprocess.TimeoutExpired:
                self.stop(signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def wait_gone(pid: int, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not alive(pid)
