"""The page's controls for the version 2 API in a real headless Chromium against the real
server: the library of my files (reuse after a reload, delete with a confirmation, 409
in_use, storage used of the quota), the one-frame preview on a scrubber, the face pickers
(people in the video, faces in a group photo), the trim control for a video longer than
the limit, photo targets, several photos and a face video as the face, retry / delete /
paging of tasks, the before/after comparison, and the administrators' storage, tasks,
disable/enable and delete. Every view in both languages at phone and desktop size is
checked by axe-core and for overflow (``check_view`` of test_round2).

A flow whose route the server does not have yet skips and names the route. The tests
share one browser, one server and one user and run in file order (later tests use the
files and tasks of earlier ones)."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.conftest import testdata_dir as shared_media
from tests.e2e.conftest import Browser
from tests.e2e.test_round2 import CJK, axe_check, check_view, set_lang, set_size

PASSWORD = "e2e-secret-3"

FETCH_JS = """
  const [method, url, body, done] = [arguments[0], arguments[1], arguments[2],
                                     arguments[arguments.length - 1]];
  const m = document.cookie.match(/(?:^|;\\s*)_xsrf=([^;]*)/);
  const headers = {'Content-Type': 'application/json',
                   'X-XSRFToken': m ? decodeURIComponent(m[1]) : ''};
  fetch(url, {method, headers, credentials: 'same-origin',
              body: method === 'GET' ? undefined : JSON.stringify(body)})
    .then(r => r.text().then(t => done([r.status, t])), e => done([0, String(e)]));
"""


def call(browser: Browser, method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    """A request from the page (its cookie and XSRF token)."""
    status, text = browser.d.execute_async_script(FETCH_JS, method, url, body or {})
    try:
        return status, json.loads(text)
    except ValueError:
        return status, {"raw": text}


def need_route(browser: Browser, method: str, url: str, body: dict | None = None) -> None:
    """Skip, naming the route, when the server does not have it (its 404 'no such route')."""
    status, answer = call(browser, method, url, body)
    if status == 404 and answer.get("msg") == "no such route":
        pytest.skip(f"the server has no {method} {url.split('?')[0]} yet")


def need_action(browser: Browser, action: str, data: dict) -> None:
    status, answer = call(browser, "POST", "/api/mgr/customers", {"action": action, "data": data})
    if status == 400 and "unknown action" in str(answer.get("msg")):
        pytest.skip(f"the server has no customers action {action} yet")


def record_requests(browser: Browser) -> None:
    """Keep the JSON requests the page sends and their answers
    (window.__sent: [[url, body, status, answer text]...])."""
    browser.js("""
      if (window.__sentHooked) { window.__sent = []; return; }
      window.__sentHooked = true; window.__sent = [];
      const real = window.fetch;
      window.fetch = (url, init) => {
        if (!(init && typeof init.body === 'string')) return real(url, init);
        const entry = [String(url), JSON.parse(init.body), null, null];
        window.__sent.push(entry);
        return real(url, init).then(r => { entry[2] = r.status;
          r.clone().text().then(t => { entry[3] = t; }); return r; });
      };""")


def sent(browser: Browser, url: str) -> list[dict]:
    return [e[1] for e in browser.js("return window.__sent || []") if e[0].startswith(url)]


def start_task(browser: Browser, name: str, old_refusal: str | None = None,
               feature: str = "") -> None:
    """Press Start with the output name `name` and wait until the task is listed. A
    refusal whose answer contains `old_refusal` (what a server without `feature` says)
    skips, naming the feature."""
    record_requests(browser)
    browser.type("swapname", name)
    browser.el("start").click()
    browser.wait_js("return [...window.faceswapPage.state.tasks.values()].some(t => "
                    "t.swapname === arguments[0]) || "
                    "!document.getElementById('start-error').hidden", 30, name)
    if browser.error_at("start-error"):
        answers = [e[3] or "" for e in browser.js("return window.__sent")
                   if e[0] == "/video/faceswap"]
        if old_refusal and answers and old_refusal in answers[-1]:
            pytest.skip(f"the server does not take {feature} yet: {answers[-1]}")
        raise AssertionError(f"Start refused: {browser.error_at('start-error')} {answers}")


def wait_task_state(browser: Browser, name: str, states: tuple[str, ...], timeout: float = 120):
    return browser.wait_js("""
      const t = [...window.faceswapPage.state.tasks.values()]
        .find(x => x.swapname === arguments[0]);
      return t && arguments[1].includes(t.state) ? t : null;""", timeout, name, list(states))


def confirm(browser: Browser, yes: bool = True) -> str:
    browser.wait_js("return document.getElementById('confirm').open")
    text = browser.text("confirm-text")
    browser.el("confirm-yes" if yes else "confirm-no").click()
    browser.wait_js("return !document.getElementById('confirm').open")
    return text


def library_row(filepath: str) -> str:
    """A script returning the library's row of `filepath`."""
    selector = f"#library li.file[data-filepath={json.dumps(filepath)}]"
    return f"return document.querySelector('{selector}')"


@pytest.fixture(scope="module")
def clips(media) -> dict:
    """The clips of conftest, the multi-person stage scene (9 s: two people from 3 s on)
    for the face picker, photos."""
    stage = shared_media() / "stage_multi_360p.mp4"
    found = {"clip": media["clip"], "long_clip": media["long_clip"], "photo": media["photo"]}
    if stage.is_file():
        found["stage"] = stage
    for name in ("two_people.jpg", "face_obama.jpg"):
        if (shared_media() / name).is_file():
            found[name] = shared_media() / name
    return found


@pytest.fixture(scope="module")
def user(browser: Browser) -> str:
    name = "v2_" + uuid.uuid4().hex[:8]
    browser.d.set_window_size(1366, 900)
    browser.open("/")
    set_lang(browser, "en")
    browser.register(name, PASSWORD)
    return name


def upload(browser: Browser, slot: str, path) -> str:
    browser.el(f"{slot}-file").send_keys(str(path))
    return browser.wait_js(f"const s = window.faceswapPage.slots.{slot};"
                           "return !s.busy && s.filepath", 90)


def test_library_fills_the_slots_after_a_reload(browser: Browser, user: str, clips) -> None:
    browser.open("/")
    need_route(browser, "GET", "/video/files")
    set_lang(browser, "en")
    face = upload(browser, "face", clips["photo"])
    video = upload(browser, "video", clips["clip"])
    # A new tab: nothing remembered in this tab's storage, the library remembers.
    browser.js("window.sessionStorage.clear()")
    browser.open("/")
    assert not browser.js("return window.faceswapPage.slots.face.filepath")
    browser.wait_js("return document.querySelectorAll('#library li.file').length >= 2", 30)
    thumbs = browser.wait_js("""
      const imgs = [...document.querySelectorAll('#library li.file img')];
      return imgs.length >= 2 && imgs.every(i => i.complete)
        ? imgs.map(i => [i.naturalWidth, i.alt]) : null;
    """, 30)
    assert all(w > 0 and alt for w, alt in thumbs), thumbs  # real thumbnails, described
    browser.js(library_row(face) + ".querySelector('.use-face').click()")
    browser.js(library_row(video) + ".querySelector('.use-video').click()")
    slots = browser.js("const s = window.faceswapPage.slots;"
                       "return [s.face.filepath, s.video.filepath]")
    assert slots == [face, video], slots
    assert browser.visible("face-thumb") and browser.visible("video-preview")
    assert browser.el("start").is_enabled()
    # Storage used of the quota, from /api/session.
    storage = browser.text("storage-text")
    if not browser.visible("storage"):
        pytest.skip("/api/session reports no usage_bytes / quota_bytes yet")
    assert "Storage used:" in storage and " of " in storage, storage
    set_lang(browser, "zh")
    assert "已用存储" in browser.text("storage-text")
    browser.js("document.getElementById('library-card').scrollIntoView()")
    check_view(browser, "v2_library", "zh", "desktop")


def test_delete_a_file_asks_and_in_use_is_refused(browser: Browser, user: str, clips) -> None:
    browser.open("/")
    need_route(browser, "POST", "/video/delete_file", {"filepath": ""})
    set_lang(browser, "en")
    browser.wait_js("return document.querySelectorAll('#library li.file').length >= 2", 30)
    # An unused copy of the photo: "go back" keeps it; confirmed, it is gone.
    extra = upload(browser, "face", clips.get("face_obama.jpg", clips["photo"]))
    row = library_row(extra)
    browser.wait_js(row, 30)
    browser.js(row + ".querySelector('.file-delete').click()")
    text = confirm(browser, yes=False)
    assert "cannot be undone" in text, text
    assert browser.js(row)
    browser.js(row + ".querySelector('.file-delete').click()")
    confirm(browser)
    browser.wait_js("return !(" + row[len("return "):] + ")", 20)
    assert browser.text("notice").startswith("File deleted:")
    assert not browser.js("return window.faceswapPage.slots.face.filepath")  # it was the face
    # A video a running task uses: 409 in_use, said in the file's row.
    upload(browser, "face", clips["photo"])
    long_path = upload(browser, "video", clips["long_clip"])
    start_task(browser, "v2_in_use")
    wait_task_state(browser, "v2_in_use", ("queued", "running"), 20)
    row = library_row(long_path)
    browser.wait_js(row, 30)
    browser.js(row + ".querySelector('.file-delete').click()")
    confirm(browser)
    shown = browser.wait_js("const e = " + row[len("return "):] + ".querySelector('.field-error');"
                            "return e && !e.hidden && e.textContent", 20)
    assert "queued or running task uses this file" in shown, shown
    browser.shot("v2_in_use_en")
    # Delete the task (it runs: asks to stop it) to free the file.
    need_route(browser, "POST", "/video/delete_task", {"task_id": ""})
    browser.js("document.querySelector('#tasks li.task[data-state] .task-delete').click()")
    assert "has not ended" in confirm(browser)
    browser.wait_js("return ![...window.faceswapPage.state.tasks.values()]"
                    ".some(t => t.swapname === 'v2_in_use')", 30)


def test_trim_and_target_face(browser: Browser, user: str, clips) -> None:
    """A video over the limit (the limit lowered in the page) offers a trim; the swap
    runs on that segment, only the chosen person."""
    browser.open("/")
    set_lang(browser, "en")
    upload(browser, "face", clips["photo"])
    # The stage scene (several people from 3 s on) or else the 12 s clip, over a limit of
    # 1 s (a short segment: a short swap).
    source = clips.get("stage", clips["long_clip"])
    limit, start, end = (1, 3.0, 4.0) if "stage" in clips else (1, 0.5, 1.5)
    browser.js("window.faceswapPage.state.limits.video_seconds = arguments[0]", limit)
    upload(browser, "video", source)
    browser.wait_js("return !document.getElementById('trim').hidden", 20)
    assert f"swaps at most {limit} second" in browser.text("trim-hint"), browser.text("trim-hint")
    browser.type("trim-end", str(end + 0.5))  # too long a segment: said, Start waits
    assert "too long" in browser.error_at("trim-error")
    assert browser.el("start").get_attribute("disabled") is not None
    browser.type("trim-start", str(start))
    browser.type("trim-end", str(end))
    assert not browser.error_at("trim-error")
    def tenths(x: float) -> str:
        return f"0:{int(x):02d}.{round(x * 10) % 10}"

    expected = f"Swapping {tenths(start)} – {tenths(end)} ({tenths(end - start)})"
    assert browser.text("trim-info") == expected, browser.text("trim-info")
    assert browser.el("start").is_enabled()
    browser.shot("v2_trim_en")
    need_route(browser, "POST", "/video/faces", {"filepath": ""})
    browser.el("find-faces").click()
    browser.wait_js("return !window.faceswapPage.slots.video.busy && "
                    "!document.getElementById('find-faces').disabled && "
                    "document.getElementById('target-faces-status').textContent !== '' || "
                    "!document.getElementById('target-faces-error').hidden", 60)
    assert not browser.error_at("target-faces-error"), browser.error_at("target-faces-error")
    assert browser.visible("target-faces"), browser.text("target-faces-status")
    options = browser.js("return [...document.querySelectorAll('#target-faces-list input')]"
                         ".map(i => i.value)")
    assert options[0] == "" and len(options) >= 2, options  # "automatic", then people
    assert browser.wait_js("return [...document.querySelectorAll('#target-faces-list img')]"
                           ".every(i => i.complete && i.naturalWidth > 0)", 20)
    assert browser.js("return document.activeElement.name") == "target-faces-choice"  # keyboard
    browser.js("document.querySelectorAll('#target-faces-list input')[1].click()")
    check_view(browser, "v2_faces", "en", "desktop")
    start_task(browser, "v2_segment", "field 'start_s'", "start_s / end_s")
    body = sent(browser, "/video/faceswap")[-1]
    assert body["target_face"] == options[1], body
    assert (body["start_s"], body["end_s"]) == (start, end), body
    task = wait_task_state(browser, "v2_segment", ("finished", "failed"), 150)
    assert task["state"] == "finished", browser.text("current-state")


def test_several_photos_of_the_face(browser: Browser, user: str, clips) -> None:
    """A second photo of the same person from the library: imagepath becomes a list."""
    browser.open("/")
    need_route(browser, "GET", "/video/files")
    set_lang(browser, "en")
    upload(browser, "face", clips["photo"])
    upload(browser, "video", clips["clip"])
    browser.wait_js("return !!document.querySelector('#library .add-face')", 30)
    browser.js("document.querySelector('#library .add-face').click()")
    assert browser.text("face-extras-title") == "Photos of the same person: 2 of 10"
    assert "2 of 10" in browser.text("notice")
    try:
        start_task(browser, "v2_two_photos", "field 'imagepath' must be a string",
                   "a list of photos as imagepath")
        body = sent(browser, "/video/faceswap")[-1]
        assert isinstance(body["imagepath"], list) and len(body["imagepath"]) == 2, body
        task = wait_task_state(browser, "v2_two_photos", ("finished", "failed"), 120)
        assert task["state"] == "finished", browser.text("current-state")
    finally:
        # The extra photo is removable (its chip's button); the next tests use one photo.
        browser.js("document.querySelector('#face-extras .chip-remove').click()")
        assert browser.js("return document.getElementById('face-extras-box').hidden")


def test_group_photo_face_picker(browser: Browser, user: str, clips) -> None:
    if "two_people.jpg" not in clips:
        pytest.skip("two_people.jpg is absent from the test media")
    browser.open("/")
    need_route(browser, "POST", "/video/faces", {"filepath": ""})
    set_lang(browser, "zh")
    upload(browser, "face", clips["two_people.jpg"])
    browser.wait_js("return !document.getElementById('source-faces').hidden", 30)
    labels = browser.js("return [...document.querySelectorAll('#source-faces-list label')]"
                        ".map(l => l.textContent)")
    assert len(labels) >= 3 and all(CJK.search(x) for x in labels), labels
    browser.js("document.querySelectorAll('#source-faces-list input')[2].click()")
    assert browser.js("return window.faceswapPage.state.sourceFace")
    browser.js("document.getElementById('face-title').scrollIntoView()")
    check_view(browser, "v2_group_photo", "zh", "desktop")


def test_preview_of_one_frame(browser: Browser, user: str, clips) -> None:
    set_size(browser, "phone")
    try:
        browser.open("/")
        need_route(browser, "POST", "/video/preview", {})
        set_lang(browser, "zh")
        upload(browser, "face", clips["photo"])
        upload(browser, "video", clips["clip"])
        record_requests(browser)
        browser.wait_js("return Number(document.getElementById('scrub').max) > 0")
        browser.js("const s = document.getElementById('scrub'); s.value = '0.8';"
                   "s.dispatchEvent(new Event('input'))")
        assert browser.text("scrub-time") == "0:00.8"
        browser.el("preview-btn").click()
        browser.wait_js("return !document.getElementById('preview-out').hidden || "
                        "!document.getElementById('preview-error').hidden", 30)
        assert not browser.error_at("preview-error"), browser.error_at("preview-error")
        sizes = browser.wait_js("const a = document.getElementById('preview-original'),"
                                " b = document.getElementById('preview-result');"
                                "return a.complete && b.complete && a.naturalWidth &&"
                                " b.naturalWidth"
                                " ? [a.naturalWidth, b.naturalWidth] : null", 20)
        assert sizes[0] == sizes[1], sizes
        body = sent(browser, "/video/preview")[-1]
        assert body["at_s"] == 0.8 and body["videopath"] and body["imagepath"], body
        assert browser.js("const r = document.getElementById('preview-out')"
                          ".getBoundingClientRect();"
                          "return r.top < window.innerHeight && r.bottom > 0")  # in view
        check_view(browser, "v2_preview", "zh", "phone")
    finally:
        browser.d.set_window_size(1366, 900)


def test_photo_target(browser: Browser, user: str, clips) -> None:
    """A photo as the target gives a photo; the comparison shows both."""
    browser.open("/")
    set_lang(browser, "en")
    upload(browser, "face", clips["photo"])
    assert browser.js("return window.faceswapPage.slots.face.fileKind") == "image"
    target = clips.get("face_obama.jpg", clips["photo"])
    upload(browser, "video", target)
    assert browser.visible("video-thumb") and not browser.visible("video-preview")
    start_task(browser, "v2_photo", "is not an uploaded video", "a photo as videopath")
    task = wait_task_state(browser, "v2_photo", ("finished", "failed"), 90)
    assert task["state"] == "finished", browser.text("current-state")
    assert task["filepath"].endswith(".jpg"), task
    browser.wait_js("const i = document.getElementById('player-image');"
                    "return !i.hidden && i.complete && i.naturalWidth > 0", 20)
    assert not browser.visible("player")
    from selenium.webdriver.support.ui import Select

    Select(browser.el("compare-mode")).select_by_value("slider")
    assert browser.wait_js("const i = document.getElementById('player-original-image');"
                           "return !i.hidden && i.complete && i.naturalWidth > 0", 20)
    clip = browser.js("return document.querySelector('.compare-original').style.clipPath")
    assert clip.startswith("inset(0px 50%"), clip
    browser.js("document.getElementById('player-card').scrollIntoView()")
    check_view(browser, "v2_photo_result", "en", "desktop")
    Select(browser.el("compare-mode")).select_by_value("off")


def test_face_video(browser: Browser, user: str, clips) -> None:
    """A short video of the person as the face (uploaded as a video in the face slot)."""
    browser.open("/")
    set_lang(browser, "en")
    upload(browser, "face", clips["clip"])
    assert browser.js("return window.faceswapPage.slots.face.fileKind") == "video"
    assert browser.visible("face-video")
    upload(browser, "video", clips["clip"])
    start_task(browser, "v2_face_video", "is not an uploaded image", "a face video as imagepath")
    task = wait_task_state(browser, "v2_face_video", ("finished", "failed"), 120)
    assert task["state"] == "finished", browser.text("current-state")


def test_compare_side_by_side_plays_in_sync(browser: Browser, user: str, clips) -> None:
    from selenium.webdriver.support.ui import Select

    browser.open("/")
    set_lang(browser, "en")
    if not browser.js("return [...window.faceswapPage.state.tasks.values()].some(t => "
                      "t.state === 'finished' && /\\.mp4$/.test(t.filepath))"):
        upload(browser, "face", clips["photo"])
        upload(browser, "video", clips["clip"])
        start_task(browser, "v2_compare")
        wait_task_state(browser, "v2_compare", ("finished",), 120)
    browser.wait_js("return !!document.querySelector(\"#tasks li[data-state='finished']"
                    " .task-play\") && [...window.faceswapPage.state.tasks.values()]"
                    ".some(t => t.state === 'finished' && /\\.mp4$/.test(t.filepath)"
                    " && t.videopath)", 30)
    browser.js("const li = [...document.querySelectorAll(\"#tasks li[data-state='finished']\")]"
               ".find(li => { const t = window.faceswapPage.state.tasks.get(li.dataset.taskId);"
               " return /\\.mp4$/.test(t.filepath); }); li.querySelector('.task-play').click()")
    Select(browser.el("compare-mode")).select_by_value("side")
    browser.wait_js("return document.getElementById('player-original').readyState >= 2 && "
                    "document.getElementById('player').readyState >= 2", 30)
    browser.js("document.getElementById('player').play()")
    browser.wait_js("return document.getElementById('player').currentTime > 0.4", 20)
    browser.js("document.getElementById('player').pause()")
    drift = browser.wait_js("""
      const v = document.getElementById('player'), o = document.getElementById('player-original');
      const t = window.faceswapPage.state.tasks.get(window.faceswapPage.state.playingId);
      return o.paused ? [Math.abs(o.currentTime - v.currentTime - (t.start_s || 0))] : null;""", 10)
    assert drift[0] < 0.25, drift
    boxes = browser.js("return ['player', 'player-original'].map(id => "
                       "document.getElementById(id).getBoundingClientRect().left)")
    assert boxes[0] != boxes[1]  # side by side, not stacked on one another
    browser.js("document.getElementById('player-card').scrollIntoView()")
    check_view(browser, "v2_compare", "en", "desktop")
    set_size(browser, "phone")
    try:
        browser.js("document.getElementById('player-card').scrollIntoView()")
        check_view(browser, "v2_compare", "en", "phone")
    finally:
        browser.d.set_window_size(1366, 900)


def test_retry_delete_and_pages_of_tasks(browser: Browser, user: str) -> None:
    browser.open("/")
    need_route(browser, "POST", "/video/retry_task", {"task_id": ""})
    set_lang(browser, "en")
    browser.wait_js("return !!document.querySelector(\"#tasks li[data-state='finished']\")", 30)
    before = browser.js("return window.faceswapPage.state.tasks.size")
    # The quickest to do again: a photo result if there is one.
    browser.js("""
      const rows = [...document.querySelectorAll("#tasks li[data-state='finished']")];
      const photo = rows.find(li => /\\.(jpe?g|png)$/.test(
        window.faceswapPage.state.tasks.get(li.dataset.taskId).filepath || ''));
      (photo || rows[0]).querySelector('.task-retry').click();""")
    browser.wait_js("return window.faceswapPage.state.tasks.size === arguments[0] + 1", 20, before)
    assert "started again as" in browser.text("notice")
    fresh = browser.js("return window.faceswapPage.state.currentId")
    browser.wait_js("return ['finished', 'failed'].includes(window.faceswapPage.state.tasks"
                    ".get(arguments[0]).state)", 120, fresh)
    assert browser.js("return window.faceswapPage.state.tasks.get(arguments[0]).state",
                      fresh) == "finished", browser.text("current-state")
    # Pages of 1: "Load older tasks" brings the next page (before=<oldest shown>).
    browser.js("window.localStorage.setItem('faceswap.task_page', '1')")
    try:
        browser.open("/")
        browser.wait_js("return document.querySelectorAll('#tasks li.task').length === 1", 20)
        browser.wait_js("return !document.getElementById('tasks-more').hidden", 20)
        first = browser.js("return document.querySelector('#tasks li.task').dataset.taskId")
        assert first == fresh  # newest first
        browser.el("tasks-more").click()
        browser.wait_js("return document.querySelectorAll('#tasks li.task').length === 2", 20)
        shown = browser.js("return [...document.querySelectorAll('#tasks li.task')]"
                           ".map(li => li.dataset.taskId)")
        assert shown[0] == fresh and len(set(shown)) == 2, shown
    finally:
        browser.js("window.localStorage.removeItem('faceswap.task_page')")
    browser.open("/")
    browser.js("document.getElementById('tasks').scrollIntoView()")
    browser.shot("v2_tasks_en")
    # Delete the retried task (asks; finished: "cannot be undone").
    need_route(browser, "POST", "/video/delete_task", {"task_id": ""})
    row = f"#tasks li[data-task-id='{fresh}']"
    browser.wait_js(f"return !!document.querySelector(\"{row}\")", 20)
    browser.js(f"document.querySelector(\"{row} .task-delete\").click()")
    assert "cannot be undone" in confirm(browser)
    browser.wait_js(f"return !document.querySelector(\"{row}\")", 20)
    assert browser.text("notice").startswith("Task deleted:")


def test_admin_storage_disable_and_delete(browser: Browser, site, user: str) -> None:
    if site.admin is None:
        pytest.skip("no administrator account given (FACESWAP_E2E_ADMIN)")
    browser.open("/")
    need_action(browser, "delete_customer", {"id": 0})  # asked as a user: 403 if it exists
    victim = "v2del_" + uuid.uuid4().hex[:6]
    browser.logout()
    browser.register(victim, PASSWORD)
    browser.logout()
    browser.login(*site.admin)
    try:
        admin_flow(browser, user, victim)
    finally:
        browser.open("/")
        browser.logout()
        browser.login(user, PASSWORD)


def admin_flow(browser: Browser, user: str, victim: str) -> None:
    browser.open("/#admin")
    for size in ("desktop", "phone"):
        set_size(browser, size)
        for lang in ("en", "zh"):
            set_lang(browser, lang)
            browser.type("admin-keywords", user)
            browser.el("admin-search-btn").click()
            browser.wait_js("const r = document.querySelectorAll('#customers-body tr');"
                            "return r.length === 1 && r[0].textContent.includes(arguments[0])",
                            20, user)
            check_view(browser, "v2_admin", lang, size)
    browser.d.set_window_size(1366, 900)
    set_lang(browser, "en")
    cells = browser.js("const r = document.querySelector('#customers-body tr');"
                       "return [r.querySelector('.cust-storage').textContent,"
                       " r.querySelector('.cust-tasks').textContent]")
    if cells == ["–", "–"]:
        pytest.skip("list_customer carries no storage / task figures yet (issue 15a)")
    assert " of " in cells[0] and cells[1] != "–", cells
    # Disable (asks), the user cannot log in, enable again.
    browser.js("document.querySelector('#customers-body tr .cust-toggle').click()")
    assert "logged out at once" in confirm(browser)
    browser.wait_js("return document.querySelector('#customers-body tr .badge').textContent"
                    " === 'Disabled'", 20)
    browser.js("document.querySelector('#customers-body tr .cust-toggle').click()")
    browser.wait_js("return document.querySelector('#customers-body tr .badge').textContent"
                    " === 'Active'", 20)
    # Delete another customer: asks; "go back" keeps them; confirmed, gone.
    browser.type("admin-keywords", victim)
    browser.el("admin-search-btn").click()
    browser.wait_js("const r = document.querySelectorAll('#customers-body tr');"
                    "return r.length === 1 && r[0].textContent.includes(arguments[0])",
                    20, victim)
    browser.js("document.querySelector('#customers-body tr .cust-delete').click()")
    assert victim in confirm(browser, yes=False)
    browser.js("document.querySelector('#customers-body tr .cust-delete').click()")
    assert "cannot be undone" in confirm(browser)
    browser.wait_js("return document.querySelectorAll('#customers-body tr').length === 0", 20)
    assert victim in browser.text("notice")
    axe_check(browser, "v2_admin_after_delete")


def test_delete_my_account(browser: Browser, user: str) -> None:
    """Delete my account: a wrong password is refused next to the form (in the page's
    language), "go back" keeps the account, confirmed it is gone (login refused)."""
    name = "v2me_" + uuid.uuid4().hex[:6]
    browser.open("/")
    browser.logout()
    browser.register(name, PASSWORD)
    try:
        set_lang(browser, "zh")
        browser.js("document.getElementById('account-card').scrollIntoView()")
        check_view(browser, "v2_account", "zh", "desktop")
        browser.type("account-password", "not-my-password")
        browser.el("account-delete").click()
        confirm(browser)
        browser.wait_js("return !document.getElementById('account-error').hidden", 20)
        assert "密码不正确" in browser.text("account-error")
        browser.type("account-password", PASSWORD)
        browser.el("account-delete").click()
        assert name in confirm(browser, yes=False)
        assert not browser.js("return document.getElementById('swap-view').hidden")
        set_lang(browser, "en")
        browser.el("account-delete").click()
        assert "cannot be undone" in confirm(browser)
        browser.wait_js("return !document.getElementById('auth-view').hidden", 20)
        assert "deleted" in browser.text("notice")
        status, answer = call(browser, "POST", "/api/mgr/customers",
                              {"action": "login", "data": {"username": name,
                                                           "password": PASSWORD}})
        assert answer.get("status") != 0, answer
    finally:
        browser.open("/")
        if browser.js("return document.getElementById('auth-view').hidden"):
            browser.logout()
        browser.login(user, PASSWORD)


@pytest.mark.parametrize("size", ["desktop", "phone"])
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_swap_view_with_the_new_controls(browser: Browser, user: str, lang: str,
                                         size: str) -> None:
    """The swap view with files chosen, the library filled and a result in the player."""
    set_size(browser, size)
    try:
        browser.open("/")
        set_lang(browser, lang)
        check_view(browser, "v2_swap", lang, size)
        browser.js("document.getElementById('library-card').scrollIntoView()")
        browser.shot(f"v2_library_{lang}_{size}")
    finally:
        browser.d.set_window_size(1366, 900)
