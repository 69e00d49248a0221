"""server.py as a real process: embedded database lifecycle, restart, create-admin."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.serverproc import ROOT, Server, request, wait_gone


@pytest.fixture
def server(tmp_path: Path):
    srv = Server(tmp_path / "data")
    yield srv
    if srv.proc and srv.proc.poll() is None:
        srv.stop(signal.SIGKILL)


def test_data_survives_restart_and_sigterm_stops_the_database(server):
    server.start()
    code, body = request(server.port, "/api/mgr/customers", {
        "action": "add_customer", "data": {"username": "keeper", "password": "secret123"}})
    assert code == 200
    db_pid = server.db_pid()
    assert server.stop(signal.SIGTERM) == 0
    assert wait_gone(db_pid), "embedded database outlived the server"
    server.start()
    code, body = request(server.port, "/api/mgr/customers", {
        "action": "login", "data": {"username": "keeper", "password": "secret123"}})
    assert code == 200 and body["userdata"]["username"] == "keeper"
    code, again = request(server.port, "/api/mgr/customers", {
        "action": "add_customer", "data": {"username": "second", "password": "secret123"}})
    assert again["id"] > body["userdata"]["id"]  # the id sequence survived too


def test_killed_server_does_not_block_next_start(server):
    server.start()
    request(server.port, "/api/mgr/customers", {
        "action": "add_customer", "data": {"username": "survivor", "password": "secret123"}})
    db_pid = server.db_pid()
    server.stop(signal.SIGKILL)
    os.kill(db_pid, signal.SIGKILL)  # the worst case: both die without a checkpoint
    wait_gone(db_pid)
    server.start()
    code, _ = request(server.port, "/api/mgr/customers", {
        "action": "login", "data": {"username": "survivor", "password": "secret123"}})
    assert code == 200


def test_dead_database_reports_unhealthy_then_recovers(server):
    server.start()
    os.kill(server.db_pid(), signal.SIGKILL)
    deadline = time.monotonic() + 5
    seen_down = False
    while time.monotonic() < deadline and not seen_down:
        t0 = time.monotonic()
        code, body = request(server.port, "/healthz")
        assert time.monotonic() - t0 < 5, "health check hung"
        seen_down = code == 503 and body["status"] == 1
    assert seen_down
    deadline = time.monotonic() + 60
    while request(server.port, "/healthz")[0] != 200:
        assert time.monotonic() < deadline, "database was not restarted"
        time.sleep(0.3)


def test_create_admin_cli(tmp_path: Path):
    data = tmp_path / "data"
    cmd = [sys.executable, str(ROOT / "server.py"), "create-admin", "boss", "--password",
           "bosspass1", "--data-dir", str(data)]
    env = {**os.environ, "FACESWAP_BCRYPT_ROUNDS": "6"}
    env.pop("FACESWAP_MONGO_URL", None)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0 and "created administrator boss" in out.stdout, out.stderr
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert "promoted administrator boss" in out.stdout
    bad = subprocess.run(cmd[:3] + ["x", "--password", "p", "--data-dir", str(data)],
                         capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode == 2 and "username" in bad.stderr
    srv = Server(data).start()
    try:
        code, body = request(srv.port, "/api/mgr/customers", {
            "action": "login", "data": {"username": "boss", "password": "bosspass1"}})
        assert body["userdata"]["usertype"] == 3000
    finally:
        srv.stop()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_server_stopped_mid_task_runs_it_after_restart(server, testdata, tmp_path, sig):
    from tests.media import cut_clip, multipart

    server.start()
    request(server.port, "/api/mgr/customers", {
        "action": "add_customer", "data": {"username": "alice", "password": "secret123"}})
    _, login = request(server.port, "/api/mgr/customers", {
        "action": "login", "data": {"username": "alice", "password": "secret123"}})
    token = login["token"]
    paths = {}
    for kind, name, data in (
            ("image", "f.jpg", (testdata / "face_woman.jpg").read_bytes()),
            ("video", "v.mp4", cut_clip(testdata / "talk_480sq_33s.mp4", tmp_path / "v.mp4",
                                        6.0).read_bytes())):
        body, ctype = multipart({"filetype": kind}, "file", name, data)
        req = urllib.request.Request(f"http://127.0.0.1:{server.port}/video/upload", data=body,
                                     headers={"Content-Type": ctype,
                                              "Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            paths[kind] = json.loads(resp.read())["filepath"]
    _, task = request(server.port, "/video/faceswap", {
        "imagepath": paths["image"], "videopath": paths["video"], "swapname": "survivor"},
        token=token)
    deadline = time.monotonic() + 60
    while request(server.port, "/video/view_task", {"task_id": task["task_id"]},
                  token=token)[1].get("state") != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    stopping = time.monotonic()
    server.stop(sig)
    assert time.monotonic() - stopping < 10, "the server took too long to stop"
    server.start()
    deadline = time.monotonic() + 120
    while True:
        _, view = request(server.port, "/video/view_task", {"task_id": task["task_id"]},
                          token=token)
        if view["state"] in ("finished", "failed", "cancelled"):
            break
        assert time.monotonic() < deadline, view
        time.sleep(0.2)
    assert view["state"] == "finished" and view["filepath"] == "alice/survivor.mp4"
    assert not [p for p in (server.data_dir / "tmp").iterdir()]
