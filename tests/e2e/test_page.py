"""The page in a real headless Chromium against the real server: accounts, language,
uploads (multipart and tus, with resume), a face swap with live progress to 100 %,
playback with seeking, download, the administrators' page and the phone layout.

The tests of this module share one browser and one server and run in file order."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request

import pytest

from tests.e2e.conftest import Browser

PASSWORD = "e2e-secret-1"
CJK = re.compile(r"[\u3400-\u9fff]")


@pytest.fixture(scope="module")
def user(browser: Browser) -> str:
    """A registered and logged-in user (registration through the page)."""
    import uuid

    name = "e2e_" + uuid.uuid4().hex[:8]
    browser.open("/")
    browser.register(name, PASSWORD)
    return name


def _post_json(base: str, path: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_page_serves_without_csp_violations(browser: Browser) -> None:
    browser.open("/")
    assert browser.visible("login-form") and browser.visible("register-form")
    assert browser.js("return document.documentElement.lang") == "zh-CN"  # Chinese default
    assert browser.text("login-title") == "登录"
    assert browser.js("return typeof window.tus === 'object' && window.tus.isSupported") is True
    # No CSP complaint in the console (inline script/style would be refused).
    logs = browser.d.get_log("browser")
    assert not [x for x in logs if "Content Security Policy" in x.get("message", "")], logs
    browser.shot("01_login_zh")


def test_register_validation_shows_message(browser: Browser) -> None:
    browser.open("/")
    browser.type("reg-username", "ab")  # too short
    browser.type("reg-password", "whatever1")
    browser.type("reg-password2", "whatever1")
    browser.el("register-submit").click()
    assert "3–32" in browser.error_at("register-error")  # next to the form that caused it
    assert browser.el("reg-username").get_attribute("aria-invalid") == "true"
    browser.type("login-username", "nobody_here")
    browser.type("login-password", "wrong-password")
    browser.el("login-submit").click()
    browser.wait_js("return !document.getElementById('login-error').hidden")
    assert browser.error_at("login-error") == "用户名或密码错误。"
    assert not browser.error_at("register-error")  # the earlier action's notice is gone
    assert browser.visible("login-form")  # still logged out, with a message
    browser.shot("02_login_failed")


def test_register_login_logout_and_session_memory(browser: Browser, user: str) -> None:
    assert browser.visible("swap-view")
    assert not browser.visible("nav-admin")  # not an administrator
    browser.open("/")  # reload: the session cookie keeps the user logged in
    browser.wait_logged_in(user)
    assert browser.visible("swap-view")
    browser.logout()
    assert browser.visible("login-form")
    browser.open("/")  # and stays logged out after a reload
    assert browser.visible("login-form")
    browser.login(user, PASSWORD)
    assert browser.visible("swap-view")
    assert browser.el("start").get_attribute("disabled") is not None  # nothing uploaded yet
    browser.shot("03_logged_in")


def test_language_switch_is_remembered(browser: Browser, user: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(browser.el("lang")).select_by_value("en")
    assert browser.text("tasks-title") == "My tasks"
    assert browser.js("return document.documentElement.lang") == "en"
    browser.open("/")
    assert browser.text("tasks-title") == "My tasks"
    browser.shot("04_english")
    Select(browser.el("lang")).select_by_value("zh")
    assert browser.text("tasks-title") == "我的任务"
    # Without a choice of its own the page follows the browser's language.
    browser.js("localStorage.removeItem('faceswap.lang')")
    agent = browser.js("return navigator.userAgent")
    try:
        browser.d.execute_cdp_cmd("Emulation.setUserAgentOverride",
                                  {"userAgent": agent, "acceptLanguage": "en-US,en"})
        browser.open("/")
        assert browser.js("return navigator.language") == "en-US"
        assert browser.text("tasks-title") == "My tasks"
    finally:
        browser.d.execute_cdp_cmd("Emulation.setUserAgentOverride",
                                  {"userAgent": agent, "acceptLanguage": "zh-CN,zh"})
    browser.open("/")
    assert browser.text("tasks-title") == "我的任务"


def test_failed_upload_shows_its_message(browser: Browser, user: str, media) -> None:
    browser.open("/")
    browser.el("video-file").send_keys(str(media["bad"]))
    browser.wait_js("return document.getElementById('video-status').classList.contains('error')",
                    30)
    msg = browser.message()
    assert msg and ("上传失败" in msg or "Upload failed" in msg), msg
    assert browser.el("start").get_attribute("disabled") is not None
    assert browser.el("video-file").is_enabled()  # can pick another file
    browser.shot("05_upload_failed")


def _upload(browser: Browser, element_id: str, path, timeout: float = 60) -> str:
    slot = "face" if element_id == "face-file" else "video"
    browser.el(element_id).send_keys(str(path))
    browser.wait_js(f"return !!window.faceswapPage.slots.{slot}.filepath || "
                    f"document.getElementById('{slot}-status').classList.contains('error')",
                    timeout)
    assert not browser.message(), browser.message()
    return browser.js(f"return window.faceswapPage.slots.{slot}.filepath")


def test_swap_progress_play_seek_and_download(browser: Browser, user: str, media) -> None:
    browser.open("/")
    face = _upload(browser, "face-file", media["photo"])
    assert face.startswith(user + "/")
    browser.wait_js("const i = document.getElementById('face-thumb');"
                    "return !i.hidden && i.complete && i.naturalWidth > 0")
    video = _upload(browser, "video-file", media["clip"])
    assert video.startswith(user + "/")
    browser.wait_js("return /\\d:\\d\\d/.test(document.getElementById('video-duration')"
                    ".textContent)")
    assert browser.el("start").is_enabled()
    browser.shot("06_ready_to_swap")
    browser.type("swapname", "e2e_result")
    from selenium.webdriver.support.ui import Select

    Select(browser.el("quality")).select_by_value("fast")
    browser.el("start").click()
    browser.wait_js("return !document.getElementById('current').hidden")
    deadline = time.monotonic() + 100
    while time.monotonic() < deadline:
        pct = browser.text("current-percent")
        if pct.strip() == "100 %":
            break
        assert not browser.message(), browser.message()
        time.sleep(0.2)
    else:
        raise AssertionError(f"progress stuck at {browser.text('current-percent')!r} "
                             f"{browser.text('current-state')!r}")
    browser.js("document.getElementById('current').scrollIntoView()")
    browser.shot("07_swap_finished")
    assert browser.js("return document.getElementById('current-progress').value") == 100
    assert browser.js("return window.faceswapPage.state.wsMessages") > 0  # pushed live
    # The result plays and seeks.
    browser.wait_js("return !document.getElementById('player-card').hidden", 20)
    browser.wait_js("return document.getElementById('player').readyState >= 1", 30)
    duration = browser.js("return document.getElementById('player').duration")
    assert 1.0 <= duration <= 2.5, duration
    target = round(duration / 2, 2)
    browser.js("const v = document.getElementById('player'); window.__seeked = false;"
               "v.addEventListener('seeked', () => { window.__seeked = true; }, {once: true});"
               "v.currentTime = arguments[0];", target)
    browser.wait_js("return window.__seeked === true", 20)
    browser.wait_js("return document.getElementById('player').readyState >= 2", 20)
    current = browser.js("return document.getElementById('player').currentTime")
    assert abs(current - target) < 0.25, (current, target)
    browser.js("document.getElementById('player-card').scrollIntoView()")
    browser.shot("08_result_playing")
    # The task list shows it finished; download the result.
    state = browser.js("const li = document.querySelector('#tasks li'); return li.dataset.state")
    assert state == "finished"
    browser.el("player-download").click()
    deadline = time.monotonic() + 30
    files = []
    while time.monotonic() < deadline:
        files = [p for p in browser.downloads.iterdir() if not p.name.endswith(".crdownload")]
        if files:
            break
        time.sleep(0.2)
    assert files, "the download did not arrive"
    head = files[0].read_bytes()[:16]
    assert b"ftyp" in head, head


def test_progress_falls_back_to_polling_when_the_socket_drops(browser: Browser, user: str,
                                                              media) -> None:
    browser.open("/")  # the face and the clip of the previous test are remembered
    browser.wait_js("return !!window.faceswapPage.slots.face.filepath && "
                    "!!window.faceswapPage.slots.video.filepath")
    browser.wait_js("return window.faceswapPage.state.wsLive === true")
    # Every new socket fails at once, and the open one drops.
    browser.js("""
      window.WebSocket = function () {
        const fake = {close() {}};
        setTimeout(() => fake.onclose && fake.onclose({code: 1006}), 5);
        return fake;
      };
      window.faceswapPage.state.ws.close();""")
    browser.wait_js("return window.faceswapPage.state.wsLive === false")
    received = browser.js("return window.faceswapPage.state.wsMessages")
    browser.type("swapname", "e2e_polled")
    browser.el("start").click()
    browser.wait_js("return document.getElementById('current-name').textContent === 'e2e_polled'")
    browser.wait_js("return document.getElementById('conn-state').textContent.length > 0 || "
                    "document.getElementById('current-percent').textContent === '100 %'")
    browser.wait_js("return document.getElementById('current-percent').textContent === '100 %'",
                    100)
    assert browser.js("return window.faceswapPage.state.polls") > 0
    assert browser.js("return window.faceswapPage.state.wsMessages") == received
    assert not browser.message(), browser.message()
    browser.wait_js("return !document.getElementById('player-card').hidden && "
                    "document.getElementById('player-name').textContent === 'e2e_polled'")
    browser.shot("09_polled_finished")


def test_cancel_a_running_task(browser: Browser, user: str, media) -> None:
    browser.open("/")
    browser.wait_js("return !!window.faceswapPage.slots.face.filepath")
    _upload(browser, "video-file", media["long_clip"])
    browser.type("swapname", "e2e_cancelled")
    browser.el("start").click()
    task_id = browser.wait_js("const t = [...window.faceswapPage.state.tasks.values()]"
                              ".find(x => x.swapname === 'e2e_cancelled'); return t && t.task_id")
    row = f"#tasks li[data-task-id='{task_id}']"
    browser.js(f"document.querySelector(\"{row} .task-cancel\").click()")
    browser.wait_js("return document.getElementById('confirm').open")  # asks first
    assert "e2e_cancelled" in browser.text("confirm-text")
    browser.el("confirm-yes").click()
    browser.wait_js(f"return document.querySelector(\"{row}\").dataset.state === 'cancelled'", 30)
    assert browser.js(f"return document.querySelector(\"{row} .task-cancel\").hidden")
    assert not browser.message(), browser.message()
    browser.wait_js("return document.getElementById('current-state').textContent.length > 0")
    browser.shot("10_task_cancelled")
    # The server agrees.
    browser.js("window.__tasks = null; fetch('/video/tasks').then(r => r.json())"
               ".then(d => { window.__tasks = d.tasks; })")
    tasks = browser.wait_js("return window.__tasks")
    assert [t["state"] for t in tasks if t["task_id"] == task_id] == ["cancelled"]


def test_failed_swap_shows_its_message(browser: Browser, user: str, media) -> None:
    """A photo without a face: the upload or the task fails, and the page says why."""
    if media["no_face"] is None:
        pytest.skip("no_human_face_dog.jpg absent from the test media")
    browser.open("/")
    browser.el("face-file").send_keys(str(media["no_face"]))
    browser.wait_js("return !!window.faceswapPage.slots.face.filepath || "
                    "document.getElementById('face-status').classList.contains('error')", 60)
    if browser.js("return !!window.faceswapPage.slots.face.filepath"):
        browser.wait_js("return !document.getElementById('start').disabled")
        browser.type("swapname", "e2e_no_face")
        browser.el("start").click()
        # Refused at start (the server checks the photo) or failed while running.
        browser.wait_js("return !document.getElementById('start-error').hidden || "
                        "document.querySelector(\"#tasks li[data-state='failed']\")", 100)
        failed = browser.js("return document.querySelector(\"#tasks li[data-state='failed'] "
                            ".task-detail\")?.textContent")
        if failed is not None:
            assert failed
            browser.wait_js("return !document.getElementById('current-error').hidden")
        else:  # refused at start: said under the Start button
            assert browser.error_at("start-error")
        # Refused by its code (API version 2): the photo is marked and Start waits for
        # another one; without a code the person can try again at once.
        refused = browser.js("return window.faceswapPage.slots.face.refused === true")
        assert browser.el("start").is_enabled() != refused
    message = browser.message()
    # In the page's language, never the server's English sentence.
    assert message and "人脸" in message and "face" not in message, message
    browser.shot("11_swap_failed")
    from selenium.webdriver.support.ui import Select

    Select(browser.el("lang")).select_by_value("en")  # the shown error follows the switch
    try:
        message = browser.message()
        assert "face" in message and not CJK.search(message), message
        browser.shot("11_swap_failed_en")
    finally:
        Select(browser.el("lang")).select_by_value("zh")


def test_upload_progress_shows_percent_and_speed(browser: Browser, user: str, media) -> None:
    browser.open("/")
    with browser.network(upload_bytes_per_s=40 * 1024, latency_ms=20):
        browser.el("face-file").send_keys(str(media["photo"]))
        text = browser.wait_js(
            "const t = document.getElementById('face-progress-text').textContent;"
            "const p = document.getElementById('face-progress').value;"
            "return !document.getElementById('face-up').hidden && p > 0 && p < 100 && "
            "/\\d+ %.*\\/(s|秒)/.test(t) && !/ 0 B\\//.test(t) ? t : null", 30)
        browser.shot("11b_upload_progress")
        assert "%" in text
        assert browser.el("face-abort").is_enabled()
        assert not browser.el("face-file").is_enabled()  # greyed while uploading
    browser.wait_js("return !!window.faceswapPage.slots.face.filepath", 60)
    assert not browser.message(), browser.message()


NET_HOOK = """
  // Test hook: record each Upload-Offset sent, and while window.__drop is set fail every
  // PATCH after the first as if the network had dropped.
  window.__patches = 0; window.__drop = arguments[0]; window.__offsets = [];
  const P = XMLHttpRequest.prototype, open = P.open, send = P.send, set = P.setRequestHeader;
  P.open = function (m) { this.__m = m; return open.apply(this, arguments); };
  P.setRequestHeader = function (k, v) {
    if (k.toLowerCase() === 'upload-offset') window.__offsets.push(Number(v));
    return set.apply(this, arguments);
  };
  P.send = function () {
    if (this.__m === 'PATCH' && ++window.__patches > 1 && window.__drop) {
      setTimeout(() => this.dispatchEvent(new ProgressEvent('error')), 10);
      return;
    }
    return send.apply(this, arguments);
  };
"""
CHUNK = 16384


def _tus_keys(browser: Browser) -> bool:
    return browser.js("return Object.keys(localStorage).some(k => k.startsWith('tus::'))")


def test_tus_upload_resumes_after_dropped_connection_and_reload(browser: Browser, user: str,
                                                                media) -> None:
    """Force tus with small chunks. (1) The connection drops after the first chunk and
    comes back: the page retries and continues from the server's offset. (2) It drops
    and the page is reloaded: picking the same file again continues the upload."""
    assert media["clip"].stat().st_size > 2 * CHUNK
    browser.open("/")
    browser.js("localStorage.setItem('faceswap.tus_threshold', '1');"
               f"localStorage.setItem('faceswap.tus_chunk', '{CHUNK}');")
    try:
        # (1) dropped connection, same page
        browser.open("/")
        browser.js(NET_HOOK, True)
        browser.el("video-file").send_keys(str(media["clip"]))
        browser.wait_js("return window.__patches >= 3", 30)  # first chunk + 2 failed tries
        browser.js("window.__drop = false")  # the network is back
        browser.wait_js("return !!window.faceswapPage.slots.video.filepath || "
                        "document.getElementById('video-status').classList.contains('error')",
                        40)
        assert not browser.message(), browser.message()
        offsets = browser.js("return window.__offsets")
        assert offsets[:2] == [0, CHUNK] and offsets[-1] > CHUNK, offsets
        assert CHUNK in offsets[2:], offsets  # the retry continued at the server's offset
        assert not _tus_keys(browser)  # the finished upload is forgotten
        # (2) dropped connection, then a page reload
        browser.open("/")
        browser.js(NET_HOOK, True)
        browser.el("video-file").send_keys(str(media["clip"]))
        browser.wait_js("return window.__patches >= 2", 30)
        assert _tus_keys(browser)
        browser.open("/")  # page reload mid-upload
        browser.wait_js("return !document.getElementById('resume-hint').hidden")
        browser.shot("12_tus_resume_hint")
        browser.js(NET_HOOK, False)
        path = _upload(browser, "video-file", media["clip"])
        assert path and path.startswith(user + "/")
        offsets = browser.js("return window.__offsets")
        assert offsets and offsets[0] == CHUNK, offsets  # resumed, not restarted
        assert not _tus_keys(browser)
        assert browser.visible("video-preview")
    finally:
        browser.js("localStorage.removeItem('faceswap.tus_threshold');"
                   "localStorage.removeItem('faceswap.tus_chunk');")


def test_phone_width_layout(browser: Browser, user: str) -> None:
    browser.d.set_window_size(375, 812)
    try:
        browser.open("/")
        width = browser.js("return window.innerWidth")
        assert browser.js("return document.documentElement.scrollWidth") <= width
        browser.shot("13_phone_swap")
        browser.logout()
        assert browser.js("return document.documentElement.scrollWidth") <= width
        browser.shot("14_phone_login")
        browser.login(user, PASSWORD)
    finally:
        browser.d.set_window_size(1280, 1000)


def test_admin_lists_searches_and_changes_type(browser: Browser, site, user: str) -> None:
    if site.admin is None:
        pytest.skip("no administrator account given (FACESWAP_E2E_ADMIN)")
    prefix = "e2e_page_" + user[-4:]
    for i in range(21):  # enough customers for a second page of 20
        code, body = _post_json(site.base_url, "/api/mgr/customers", {
            "action": "add_customer",
            "data": {"username": f"{prefix}_{i:02d}", "password": PASSWORD}})
        assert code == 200, body
    browser.open("/")
    browser.logout()
    browser.login(*site.admin)
    assert browser.visible("nav-admin")
    browser.el("nav-admin").click()
    browser.wait_js("return !document.getElementById('admin-view').hidden")
    browser.wait_js("return document.querySelectorAll('#customers-body tr').length >= 2")
    assert browser.el("page-prev").get_attribute("disabled") is not None
    # Paging through a search of the 21 extra customers: 20 + 1.
    browser.type("admin-keywords", prefix)
    browser.el("admin-search-btn").click()
    only_prefix = ("const rows = [...document.querySelectorAll('#customers-body tr')];"
                   "return rows.length === arguments[1] && !document.getElementById("
                   "'admin-search-btn').disabled && rows.every(r => r.querySelector("
                   "'.cust-name').textContent.startsWith(arguments[0]));")
    browser.wait_js(only_prefix, 20, prefix, 20)
    assert browser.el("page-next").is_enabled()
    browser.el("page-next").click()
    browser.wait_js(only_prefix, 20, prefix, 1)
    assert "2 / 2" in browser.text("page-info") or "2 of 2" in browser.text("page-info")
    assert browser.el("page-next").get_attribute("disabled") is not None
    browser.el("page-prev").click()
    browser.wait_js(only_prefix, 20, prefix, 20)
    browser.type("admin-keywords", user)
    browser.el("admin-search-btn").click()
    browser.wait_js("const rows = document.querySelectorAll('#customers-body tr');"
                    "return rows.length === 1 && rows[0].textContent.includes(arguments[0])",
                    20, user)
    row_id = browser.js("return document.querySelector('#customers-body tr').dataset.userid")
    from selenium.webdriver.support.ui import Select

    Select(browser.el(f"type-{row_id}")).select_by_value("2000")
    browser.js("document.querySelector('#customers-body tr button').click()")
    browser.wait_js("return document.getElementById('notice').textContent.includes(arguments[0])",
                    20, user)
    assert not browser.message()
    browser.open("/#admin")
    browser.type("admin-keywords", user)
    browser.el("admin-search-btn").click()
    browser.wait_js("const s = document.getElementById('type-' + arguments[0]);"
                    "return s && s.value === '2000'", 20, row_id)
    browser.shot("15_admin")
    browser.d.set_window_size(375, 812)
    try:
        browser.shot("16_phone_admin")
        assert browser.js("return document.documentElement.scrollWidth") <= browser.js(
            "return window.innerWidth")
    finally:
        browser.d.set_window_size(1280, 1000)
    browser.logout()
