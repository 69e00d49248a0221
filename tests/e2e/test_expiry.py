"""A result past its retention period, as the page shows it: the real server makes a
swap, is restarted with a retention period shorter than the result's age, its
housekeeping marks the task ``expired``, and the page shows it as ended: a translated
label, no progress bar, no Cancel, no polling."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Browser, Site
from tests.serverproc import Server

PASSWORD = "e2e-secret-3"
OWNER: list[str] = []  # the user of the module's server


def _call(base: str, path: str, token: str | None = None, body: dict | None = None,
          data: bytes | None = None, ctype: str = "application/json") -> dict:
    raw = data if data is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=raw, headers={"Content-Type": ctype})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _upload(base: str, token: str, kind: str, path: Path) -> str:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="filetype"\r\n\r\n{kind}\r\n',
             f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
             f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n']
    body = "".join(parts).encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    answer = _call(base, "/video/upload", token, data=body,
                   ctype=f"multipart/form-data; boundary={boundary}")
    return answer["filepath"]


def _wait(what, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError("timed out")


@pytest.fixture(scope="module")
def site(browser_ok, media, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A server whose one user has one task, finished and then expired."""
    data_dir = tmp_path_factory.mktemp("e2e_expiry") / "data"
    srv = Server(data_dir).start()
    base = f"http://127.0.0.1:{srv.port}"
    name = "exp_" + uuid.uuid4().hex[:8]
    _call(base, "/api/mgr/customers", body={"action": "add_customer",
                                            "data": {"username": name, "password": PASSWORD}})
    token = _call(base, "/api/mgr/customers", body={
        "action": "login", "data": {"username": name, "password": PASSWORD}})["token"]
    face = _upload(base, token, "image", media["photo"])
    video = _upload(base, token, "video", media["clip"])
    task_id = _call(base, "/video/faceswap", token, body={
        "imagepath": face, "videopath": video, "swapname": "soon_expired",
        "quality": "fast"})["task_id"]
    _wait(lambda: _call(base, "/video/view_task", token,
                        body={"task_id": task_id})["status"] == 1)
    srv.stop()
    # 0.00001 days = 0.864 s: a second later the result is older than the retention
    # period, and the restarted server's first housekeeping round expires it.
    time.sleep(1.0)
    srv = Server(data_dir)
    srv.start("--result-retention-days", "0.00001")
    try:
        base = f"http://127.0.0.1:{srv.port}"
        token = _call(base, "/api/mgr/customers", body={
            "action": "login", "data": {"username": name, "password": PASSWORD}})["token"]
        _wait(lambda: [t["state"] for t in _call(base, "/video/tasks", token)["tasks"]]
              == ["expired"], 60)
        OWNER.append(name)
        yield Site(base, None)
    finally:
        srv.stop_if_running()


@pytest.mark.parametrize("lang, label, detail", [
    ("en", "Expired", "The result was deleted after the retention period."),
    ("zh", "已过期", "结果已超过保存期限，已被删除。")])
def test_expired_task_is_shown_as_ended(browser: Browser, site: Site, lang: str,
                                        label: str, detail: str) -> None:
    browser.open("/")
    if not browser.visible("swap-view"):
        browser.login(OWNER[0], PASSWORD)
    from selenium.webdriver.support.ui import Select

    Select(browser.el("lang")).select_by_value(lang)
    row = "#tasks li[data-state='expired']"
    browser.wait_js(f"return !!document.querySelector(\"{row}\")")
    assert browser.js(f"return document.querySelector(\"{row} .badge\").textContent") == label
    assert browser.js(f"return document.querySelector(\"{row} progress\").hidden")
    assert browser.js(f"return document.querySelector(\"{row} .task-cancel\").hidden")
    assert browser.js(f"return document.querySelector(\"{row} .task-play\").hidden")
    assert browser.js(f"return document.querySelector(\"{row} .task-detail\").textContent"
                      ) == detail  # the page's sentence, not the server's English one
    assert "state_expired" not in browser.js("return document.body.innerText")
    assert browser.js("return window.faceswapPage.state.pollTimer") is None  # nothing polled
    assert browser.js("return document.getElementById('current').hidden")  # not "active"
    browser.shot(f"r2_expired_real_{lang}")
