"""Fixtures for the browser tests: the real server as a child process, headless Chromium
driven by Selenium, and small media files cut from the shared test data.

Chromium and chromedriver are Debian's (``apt-get install chromium chromium-driver``);
nothing downloads a browser of its own. Without them the tests skip with the reason.
Screenshots and browser logs go to ``artifacts/e2e/`` (ignored by git).

``FACESWAP_E2E_BASE_URL`` runs the tests against an already running service instead
(``FACESWAP_E2E_ADMIN=name:password`` then names an administrator for the admin test).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import testdata_dir
from tests.serverproc import ROOT, Server

CHROMIUM = os.environ.get("FACESWAP_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FACESWAP_CHROMEDRIVER", "/usr/bin/chromedriver")
ARTIFACTS = ROOT / "artifacts" / "e2e"
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--disable-extensions", "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
)


def _missing_browser() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return (f"{path} is absent: install Debian's chromium and chromium-driver "
                    "(apt-get install -y chromium chromium-driver) to run the browser tests")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed (make install)"
    return None


@dataclass
class Site:
    base_url: str
    admin: tuple[str, str] | None


@pytest.fixture(scope="session")
def browser_ok() -> None:
    reason = _missing_browser()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def media(browser_ok, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A face photo, a 1.5 s clip (stream copy of the start of the test talk) and a
    file that is not a video."""
    data = testdata_dir()
    photo, talk = data / "face_woman.jpg", data / "talk_480sq_33s.mp4"
    if not (photo.is_file() and talk.is_file()):
        pytest.skip(f"test media {photo} / {talk} absent (set FACESWAP_TESTDATA)")
    out = tmp_path_factory.mktemp("e2e_media")
    clip = out / "clip.mp4"
    _cut(talk, clip, seconds=1.5)
    long_clip = out / "long_clip.mp4"  # long enough to cancel while it runs
    _cut(talk, long_clip, seconds=12)
    bad = out / "not_a_video.mp4"
    bad.write_bytes(b"this is plain text, not a video\n" * 64)
    face = out / "face_woman.jpg"
    shutil.copy(photo, face)
    dog = data / "no_human_face_dog.jpg"
    return {"photo": face, "clip": clip, "long_clip": long_clip, "bad": bad,
            "no_face": dog if dog.is_file() else None}


def _cut(src: Path, dst: Path, seconds: float) -> None:
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        streams = [s for s in inp.streams if s.type in ("video", "audio")]
        mapping = {s.index: out.add_stream_from_template(s) for s in streams}
        for packet in inp.demux(streams):
            if packet.dts is None:
                continue
            if packet.pts is not None and packet.pts * packet.time_base >= seconds:
                continue
            packet.stream = mapping[packet.stream.index]
            out.mux(packet)


@pytest.fixture(scope="module")
def site(browser_ok, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    base = os.environ.get("FACESWAP_E2E_BASE_URL")
    if base:
        admin = os.environ.get("FACESWAP_E2E_ADMIN", "")
        _check_page(base.rstrip("/"))
        yield Site(base.rstrip("/"), tuple(admin.split(":", 1)) if ":" in admin else None)
        return
    data_dir = tmp_path_factory.mktemp("e2e_server") / "data"
    admin = ("e2e_admin", "admin-secret-1")
    env = {**os.environ, "FACESWAP_BCRYPT_ROUNDS": "6"}
    env.pop("FACESWAP_MONGO_URL", None)
    made = subprocess.run([sys.executable, str(ROOT / "server.py"), "create-admin", admin[0],
                           "--password", admin[1], "--data-dir", str(data_dir)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    srv = Server(data_dir).start()
    try:
        _check_page(f"http://127.0.0.1:{srv.port}")
        yield Site(f"http://127.0.0.1:{srv.port}", admin)
    finally:
        srv.stop_if_running()


def _check_page(base: str) -> None:
    """Fail with a clear sentence when the server does not serve the page at all."""
    try:
        with urllib.request.urlopen(base + "/", timeout=10) as resp:
            ctype, body = resp.headers.get("Content-Type", ""), resp.read(4096)
    except urllib.error.HTTPError as err:
        raise AssertionError(f"GET / answered HTTP {err.code}: the server does not serve "
                             "static/index.html at / yet") from None
    assert "text/html" in ctype and b"/assets/app.js" in body, (
        f"GET / did not return the page (Content-Type {ctype!r})")


ERRORS_JS = """
  const out = [];
  const banner = document.getElementById('msg');
  if (banner && !banner.hidden) out.push(document.getElementById('msg-text').textContent);
  for (const e of document.querySelectorAll('.field-error, .file-status.error')) {
    if (!e.hidden && e.textContent && !e.closest('[hidden]')) out.push(e.textContent);
  }
  return out.join(' | ');
"""


class Browser:
    """A thin helper around the Selenium driver for the page's ids."""

    def __init__(self, driver, base_url: str, downloads: Path) -> None:
        self.d = driver
        self.base = base_url
        self.downloads = downloads

    def open(self, path: str = "/") -> None:
        self.d.get(self.base + path)
        self.wait_js("return document.getElementById('loading').hidden === true", 20)

    def el(self, element_id: str):
        from selenium.webdriver.common.by import By

        return self.d.find_element(By.ID, element_id)

    def js(self, script: str, *args):
        return self.d.execute_script(script, *args)

    def wait_js(self, script: str, timeout: float = 20, *args):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.js(script, *args)
            if last:
                return last
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout}s waiting for: {script} "
                             f"(page message: {self.message()!r}, notice: {self.text('notice')!r})")

    def visible(self, element_id: str) -> bool:
        return bool(self.js("const e = document.getElementById(arguments[0]);"
                            "return !!e && !e.closest('[hidden]') && e.offsetParent !== null;",
                            element_id))

    def text(self, element_id: str) -> str:
        return self.js("const e = document.getElementById(arguments[0]);"
                       "return e ? e.textContent : null;", element_id) or ""

    def message(self) -> str:
        """Every error the page shows ('' if none): the banner, the error line next to a
        control, a refused file's status line."""
        return self.js(ERRORS_JS) or ""

    def error_at(self, element_id: str) -> str:
        """The text of one error place, '' while hidden."""
        return self.js("const e = document.getElementById(arguments[0]);"
                       "return e && !e.hidden ? e.textContent : '';", element_id) or ""

    def type(self, element_id: str, text: str) -> None:
        field = self.el(element_id)
        field.clear()
        field.send_keys(text)

    @contextlib.contextmanager
    def network(self, *, offline: bool = False, upload_bytes_per_s: int = -1,
                latency_ms: int = 0) -> Iterator[None]:
        """Emulate a slow or absent network (Chrome DevTools) inside the block."""
        self.d.execute_cdp_cmd("Network.enable", {})
        self.d.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": offline, "latency": latency_ms, "downloadThroughput": -1,
            "uploadThroughput": upload_bytes_per_s})
        try:
            yield
        finally:
            self.d.execute_cdp_cmd("Network.emulateNetworkConditions", {
                "offline": False, "latency": 0, "downloadThroughput": -1,
                "uploadThroughput": -1})

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.d.save_screenshot(str(path))
        return path

    def register(self, username: str, password: str) -> None:
        self.type("reg-username", username)
        self.type("reg-password", password)
        self.type("reg-password2", password)
        self.el("register-submit").click()
        self.wait_logged_in(username)

    def login(self, username: str, password: str) -> None:
        from selenium.webdriver.common.keys import Keys

        self.type("login-username", username)
        self.type("login-password", password)
        self.el("login-password").send_keys(Keys.ENTER)  # the keyboard way
        self.wait_logged_in(username)

    def wait_logged_in(self, username: str) -> None:
        self.wait_js("return !document.getElementById('whoami').hidden && "
                     "document.getElementById('whoami').textContent.includes(arguments[0])",
                     20, username)

    def logout(self) -> None:
        self.el("logout").click()
        self.wait_js("return !document.getElementById('auth-view').hidden", 20)


@pytest.fixture(scope="module")
def browser(site: Site, tmp_path_factory: pytest.TempPathFactory,
            request: pytest.FixtureRequest) -> Iterator[Browser]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tmp_path_factory.mktemp("chromium_profile")
    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument("--window-size=1280,1000")
    options.add_argument("--lang=zh-CN")
    options.add_experimental_option("prefs", {
        "download.default_directory": str(downloads),
        "download.prompt_for_download": False,
        "intl.accept_languages": "zh-CN,zh",
    })
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Both paths given: Selenium Manager is skipped and never downloads anything.
    service = Service(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": str(downloads)})
    try:
        yield Browser(driver, site.base_url, downloads)
    finally:
        try:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            logs = driver.get_log("browser")
            (ARTIFACTS / f"{request.module.__name__.rsplit('.', 1)[-1]}.console.json").write_text(
                json.dumps(logs, indent=1, ensure_ascii=False))
        except Exception:  # logs are a debugging aid only
            pass
        driver.quit()


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]
