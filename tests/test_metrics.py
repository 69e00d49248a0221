"""``GET /metrics`` (Prometheus text) and the one-line task event logs: who may read the
metrics, what they count after real uploads and swaps, and the database-down page."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import urllib.parse
from pathlib import Path

import pytest
import tornado.gen
import tornado.httpserver
import tornado.websocket
from prometheus_client.parser import text_string_to_metric_families

from conf import Settings
from engine.dispatch import LocalDispatcher
from handlers import make_app
from services.context import AppContext
from storage.database import connect
from storage.embedded import free_port
from tests.media import talk_clips
from tests.test_tasks import prepare, swap, wait_state
from tests.test_uploads import b64, tus_headers, until


@pytest.fixture(scope="module")
def clips(testdata: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return talk_clips(testdata, tmp_path_factory.mktemp("metrics-clips"), 8.0)


@pytest.fixture
def metrics_addresses() -> str:
    return ""  # tests parametrize it


@pytest.fixture
def settings(settings: Settings, metrics_addresses: str) -> Settings:
    return dataclasses.replace(settings, metrics_addresses=metrics_addresses)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a text exposition (parsed by
    prometheus_client's own parser, so the format is checked too)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def scrape(api, token: str | None = None, **headers: str) -> tuple[int, str, str]:
    hdrs = dict(headers)
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    resp = await api.client.fetch(api.base_url + "/metrics", headers=hdrs, raise_error=False)
    return resp.code, resp.headers.get("Content-Type", ""), resp.body.decode()


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("metrics_addresses", ["10.1.2.3, 192.168.0.0/16"])
async def test_metrics_are_for_administrators_and_forwarded_headers_change_nothing(ctx, api):
    code, _, body = await scrape(api)
    assert code == 401 and json.loads(body)["status"] == 1
    # the test client is 127.0.0.1, not a configured address, whatever its headers say
    code, _, _ = await scrape(api, **{"X-Forwarded-For": "10.1.2.3", "X-Real-Ip": "10.1.2.3"})
    assert code == 401
    user = await api.user("alice")
    code, _, body = await scrape(api, user)
    assert code == 403 and json.loads(body)["msg"] == "administrators only"
    await ctx.accounts.ensure_admin("root", "a long secret")
    admin = await api.login("root", "a long secret")
    code, ctype, body = await scrape(api, admin)
    assert code == 200 and ctype.startswith("text/plain; version=0.0.4"), ctype
    values = samples(body)
    assert values[("faceswap_database_up", ())] == 1
    assert values[("faceswap_tasks", (("state", "queued"),))] == 0
    code, ctype, body = await scrape(api, admin, Accept="application/openmetrics-text")
    assert code == 200 and ctype.startswith("application/openmetrics-text"), ctype
    assert body.rstrip().endswith("# EOF")


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("metrics_addresses", ["127.0.0.0/8"])
async def test_a_configured_address_reads_metrics_without_logging_in(ctx, api):
    code, _, body = await scrape(api)
    assert code == 200 and samples(body)[("faceswap_websocket_clients", ())] == 0


def test_a_wrong_metrics_address_fails_at_start_up() -> None:
    with pytest.raises(ValueError, match="metrics_addresses"):
        Settings(metrics_addresses="127.0.0.1,not-an-address")


@pytest.mark.gen_test(timeout=30)
async def test_database_down_is_reported_without_task_counts(settings, http_client):
    """A database that does not answer (nothing listens at its port): the configured
    scraper still gets a page, saying so, with no stale task counts."""
    dead = dataclasses.replace(settings, mongo_url=f"mongodb://127.0.0.1:{free_port()}/",
                               db_timeout_ms=300, metrics_addresses="127.0.0.1")
    dead.data_path.mkdir(parents=True, exist_ok=True)
    db = connect(dead.mongo_url, dead.db_name, dead.db_timeout_ms)
    context = AppContext.build(dead, db, LocalDispatcher(1))
    server = tornado.httpserver.HTTPServer(make_app(context, "secret"))
    port = free_port()
    server.listen(port, "127.0.0.1")
    try:
        resp = await http_client.fetch(f"http://127.0.0.1:{port}/metrics", raise_error=False)
    finally:
        server.stop()
        await context.tasks.close()
        db.client.close()
    assert resp.code == 200
    values = samples(resp.body.decode())
    assert values[("faceswap_database_up", ())] == 0
    assert not [key for key in values if key[0] == "faceswap_tasks"]
    assert values[("faceswap_queue_length", ())] == 0


LOGFMT = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def events(caplog: pytest.LogCaptureFixture) -> list[dict[str, str]]:
    """The task service's event lines, parsed as logfmt (each must be one whole line)."""
    parsed = []
    for record in caplog.records:
        if record.name != "services.tasks":
            continue
        line = record.getMessage()
        assert "\n" not in line and line.startswith("event="), line
        pairs = {k: json.loads(v) if v.startswith('"') else v for k, v in LOGFMT.findall(line)}
        assert " ".join(f"{k}={v}" for k, v in LOGFMT.findall(line)) == line  # nothing else
        parsed.append(pairs)
    return parsed


@pytest.mark.gen_test(timeout=180)
@pytest.mark.parametrize("metrics_addresses", ["127.0.0.1"])
async def test_metrics_and_event_logs_follow_real_uploads_and_swaps(ctx, api, testdata, clips,
                                                                    caplog):
    caplog.set_level(logging.INFO, logger="services.tasks")
    face = (testdata / "face_woman.jpg").read_bytes()
    token, image, long_video = await prepare(api, testdata, clips["long"])  # two multipart
    # a third upload, resumable: its duration runs from the tus creation
    resp = await api.client.fetch(api.base_url + "/video/uploads/", method="POST", body=b"",
                                  headers=tus_headers(token, **{
                                      "Upload-Length": str(len(clips["short"])),
                                      "Upload-Metadata": f"filetype {b64('video')}"}))
    resp = await api.client.fetch(
        api.base_url + resp.headers["Location"], method="PATCH", body=clips["short"],
        headers=tus_headers(token, **{"Content-Type": "application/offset+octet-stream",
                                      "Upload-Offset": "0"}))
    short_video = urllib.parse.unquote(resp.headers["Upload-Filepath"])
    ws = await tornado.websocket.websocket_connect(
        api.base_url.replace("http", "ws") + f"/ws/tasks?token={token}")
    # A free user runs one task at a time: the second waits in the queue.
    _, first = await swap(api, token, image, long_video, "long")
    _, second = await swap(api, token, image, short_video, "short", quality="fast")
    await wait_state(api, token, first["task_id"], ("running",))
    view: dict = {}
    for _ in range(600):  # progress comes after the task's 'running' is in the database
        _, view = await api.call("POST", "/video/view_task", {"task_id": first["task_id"]},
                                 token=token)
        if view.get("frames_done"):
            break
        await tornado.gen.sleep(0.1)
    assert view.get("frames_done"), view
    _, _, body = await scrape(api)
    during = samples(body)
    assert during[("faceswap_queue_length", ())] == 1
    assert during[("faceswap_tasks", (("state", "queued"),))] == 1
    assert during[("faceswap_tasks", (("state", "running"),))] == 1
    assert during[("faceswap_websocket_clients", ())] == 1
    await api.call("POST", "/video/cancel_task", {"task_id": first["task_id"]}, token=token)
    view = await wait_state(api, token, second["task_id"], ("finished", "failed"))
    assert view["state"] == "finished", view
    ws.close()
    await until(lambda: ctx.tasks.subscriber_count() == 0)
    _, _, body = await scrape(api)
    after = samples(body)
    for state, count in (("queued", 0), ("running", 0), ("finished", 1), ("cancelled", 1),
                         ("failed", 0)):
        assert after[("faceswap_tasks", (("state", state),))] == count, state
    assert after[("faceswap_queue_length", ())] == 0
    assert after[("faceswap_websocket_clients", ())] == 0
    assert after[("faceswap_database_up", ())] == 1
    for state in ("finished", "cancelled"):
        assert after[("faceswap_task_seconds_count", (("state", state),))] == 1
        assert after[("faceswap_task_seconds_sum", (("state", state),))] > 0
    assert after[("faceswap_task_seconds_count", (("state", "failed"),))] == 0
    assert after[("faceswap_task_fps_count", ())] == 1
    assert after[("faceswap_task_fps_sum", ())] > 0
    image_labels, video_labels = (("kind", "image"),), (("kind", "video"),)
    assert after[("faceswap_upload_bytes_count", image_labels)] == 1
    assert after[("faceswap_upload_bytes_sum", image_labels)] == len(face)
    assert after[("faceswap_upload_bytes_count", video_labels)] == 2
    assert after[("faceswap_upload_bytes_sum", video_labels)] == (len(clips["long"])
                                                                  + len(clips["short"]))
    assert after[("faceswap_upload_seconds_count", image_labels)] == 1
    assert after[("faceswap_upload_seconds_count", video_labels)] == 2
    assert ("faceswap_worker_restarts_total", ()) in after
    # every event of both tasks is one structured line with the task id
    story: dict[str, list[str]] = {}
    for event in events(caplog):
        story.setdefault(event["task_id"], []).append(event["event"])
    assert story[first["task_id"]] == ["created", "started", "cancel_requested", "cancelled"]
    assert story[second["task_id"]] == ["created", "started", "finished"]
    finished = next(e for e in events(caplog) if e["event"] == "finished")
    assert finished["owner"] == "alice" and int(finished["frames"]) > 0
    assert float(finished["fps"]) > 0 and float(finished["seconds"]) > 0
    cancelled = next(e for e in events(caplog) if e["event"] == "cancelled")
    assert cancelled["error"] == "the task was cancelled"


@pytest.mark.gen_test(timeout=60)
async def test_a_failed_task_logs_its_error_on_one_line(ctx, api, testdata, clips, caplog):
    caplog.set_level(logging.INFO, logger="services.tasks")
    token, image, video = await prepare(api, testdata, clips["short"])
    (ctx.media.root / video).write_bytes(b"\x00\x00\x00\x18ftypmp42 damaged after upload")
    _, reply = await swap(api, token, image, video, "broken", quality="fast")
    view = await wait_state(api, token, reply["task_id"], ("failed", "finished"))
    assert view["state"] == "failed"
    failed = [e for e in events(caplog) if e["event"] == "failed"]
    assert [e["task_id"] for e in failed] == [reply["task_id"]]
    assert failed[0]["error"] == view["progress"] and failed[0]["owner"] == "alice"
    page, _ = await ctx.metrics_page("")
    assert samples(page.decode())[("faceswap_task_seconds_count", (("state", "failed"),))] == 1
