"""``python -m engine swap`` leaves nothing of itself running, however it ends.

The CLI runs in a session (process group) of its own, from a folder outside the
checkout and without PYTHONPATH (the project is imported from its installation); after
it exits, the group is inspected through /proc: its helper process and
multiprocessing's resource tracker must be gone, not running on nor left to init.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def group(pgid: int) -> list[tuple[int, str, str]]:
    """(pid, state, command line) of every process in process group ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid:
            members.append((int(entry), fields[0], cmdline.replace(b"\0", b" ").decode()))
    return members


def _sigint_default() -> None:
    """SIGINT as in a terminal: a test run started in the background by a shell without
    job control inherits it ignored, and a Ctrl-C would then be lost."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Cli:
    """One CLI run in its own session; records what its group ran while it was watched."""

    def __init__(self, media, tmp_path: Path, image: str = "face_woman.jpg",
                 *extra: str) -> None:
        self.out_dir = tmp_path / "out"
        self.out_dir.mkdir()
        elsewhere = tmp_path / "cwd"
        elsewhere.mkdir()
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "swap", "--image", media(image),
             "--video", media("talk_480sq_33s.mp4"), "--out", str(self.out_dir / "out.mp4"),
             "--quality", "fast", *extra],
            cwd=elsewhere, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, preexec_fn=_sigint_default)
        self.seen: dict[int, str] = {}

    def watch(self) -> list[tuple[int, str, str]]:
        members = group(self.proc.pid)
        for pid, _, cmd in members:
            # A zombie (or a process not yet exec'd) reads an empty command line:
            # it must not hide what the same pid was seen running.
            if pid != self.proc.pid and (cmd or pid not in self.seen):
                self.seen[pid] = cmd
        return members

    def helpers_seen(self) -> list[int]:
        return [pid for pid, cmd in self.seen.items() if "spawn_main" in cmd]

    def wait_until(self, condition, what: str, attempts: int = 1200) -> None:
        """Watch the group every 50 ms until ``condition()`` (bounded: about a minute)."""
        for _ in range(attempts):
            self.watch()
            if condition():
                return
            assert self.proc.poll() is None, (what, self.proc.communicate())
            time.sleep(0.05)
        raise AssertionError(f"never: {what}")

    def written(self) -> int:
        """Bytes of output written so far (the engine's temp file, until it is renamed)."""
        total = 0
        for entry in os.scandir(self.out_dir):
            try:
                total += entry.stat().st_size
            except FileNotFoundError:
                continue  # renamed meanwhile
        return total

    def mid_swap(self) -> None:
        """Until the helper runs and encoded frames reach the output: the swap's threads
        are all running then. (A signal while they start hits a gap in engine/pipeline.py:
        its clean-up joins a thread that has not started yet, RuntimeError.)"""
        self.wait_until(lambda: self.helpers_seen() and self.written() > 0,
                        "the helper started and frames are written")

    def finish(self) -> tuple[int, str, str]:
        while self.proc.poll() is None:
            self.watch()
            time.sleep(0.05)
        out, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, out.decode(), err.decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


@pytest.fixture
def cli(media, tmp_path):
    runs: list[Cli] = []

    def start(*args, **kwargs) -> Cli:
        runs.append(Cli(media, tmp_path, *args, **kwargs))
        return runs[-1]

    yield start
    for run in runs:
        run.kill()


def test_a_finished_swap_leaves_no_process_in_its_group(cli):
    run = cli("face_woman.jpg", "--max-frames", "60")
    code, out, err = run.finish()
    assert code == 0, err
    assert '"frames": 60' in out
    assert run.helpers_seen(), run.seen  # the swap did use a helper process
    assert group(run.proc.pid) == []  # nothing runs on, and nothing is left to init


def test_a_failed_swap_leaves_no_process_in_its_group(cli):
    run = cli("no_human_face_dog.jpg")  # the helper starts before the image is read
    code, _, err = run.finish()
    assert code == 2 and err.strip().splitlines()[-1] == "error: no face found in the image"
    assert group(run.proc.pid) == []


@pytest.mark.parametrize("how", ["SIGTERM to the CLI", "SIGHUP to the CLI",
                                 "Ctrl-C (SIGINT to the group)", "SIGTERM to the group"])
def test_a_stopped_swap_leaves_no_process_in_its_group(cli, how):
    run = cli()
    run.mid_swap()
    sig = signal.Signals[how.split()[0].removeprefix("Ctrl-C").strip("()") or "SIGINT"]
    if "group" in how:
        os.killpg(run.proc.pid, sig)
    else:
        run.proc.send_signal(sig)
    code, out, err = run.finish()
    assert code == 2 and out == "", err
    last = err.strip().splitlines()[-1]
    assert last in ("error: interrupted",
                    "error: processing failed: the swap helper process stopped"), err
    assert group(run.proc.pid) == []
    assert os.listdir(run.out_dir) == []  # the partial output went with it


def test_a_killed_cli_takes_its_helper_with_it(cli):
    """SIGKILL runs no clean-up: the kernel kills the helper with its parent, and the
    tracker ends once both are gone. What is left are zombies for init to reap."""
    run = cli()
    run.mid_swap()
    helpers = run.helpers_seen()
    run.proc.kill()
    run.proc.wait(30)
    still_running = None
    for _ in range(200):  # bounded: 10 s
        still_running = [m for m in group(run.proc.pid) if m[1] != "Z"]
        if not still_running:
            break
        time.sleep(0.05)
    assert still_running == [], still_running
    assert all(not Path(f"/proc/{pid}").exists() or
               Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
               for pid in helpers)
