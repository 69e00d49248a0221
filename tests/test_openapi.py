"""docs/openapi.yaml describes the real route table, and the API survives fuzzing by
schemathesis (bounded examples): no response >= 500, every error is the JSON envelope."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import schemathesis
import tornado.httputil
import yaml
from hypothesis import HealthCheck, settings

from conf import Settings
from handlers import NotFoundHandler, make_app
from tests.serverproc import ROOT, Server, request

OPENAPI = ROOT / "docs" / "openapi.yaml"
EXAMPLES = {"username": "alice", "file": "clip.mp4", "upload_id": "0" * 32, "path": "app.js"}


class _Ctx:  # just enough context for make_app to build its routes
    def __init__(self, data: Path) -> None:
        from storage import MediaStore

        self.settings = Settings(data_dir=str(data))
        self.media = MediaStore(data)


def test_openapi_documents_exactly_the_routes(tmp_path):
    app = make_app(_Ctx(tmp_path), "secret")
    documented = yaml.safe_load(OPENAPI.read_text())["paths"]
    matched = set()
    for path in documented:
        uri = re.sub(r"\{(\w+)\}", lambda m: EXAMPLES[m.group(1)], path)
        req = tornado.httputil.HTTPServerRequest(
            start_line=tornado.httputil.RequestStartLine("GET", uri, "HTTP/1.1"),
            headers=tornado.httputil.HTTPHeaders({"Host": "localhost"}))
        delegate = app.find_handler(req)
        assert delegate.handler_class is not NotFoundHandler, f"{path} is not routed"
        matched.add(delegate.handler_class)
    routed = {rule.target for rule in app.wildcard_router.rules}
    assert routed == matched, f"undocumented routes: {routed - matched}"


schema = schemathesis.openapi.from_path(str(OPENAPI))
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")


@pytest.fixture(scope="module")
def live(tmp_path_factory, mongo_url):
    server = Server(tmp_path_factory.mktemp("fuzz") / "data").start()
    request(server.port, "/api/mgr/customers", {
        "action": "add_customer", "data": {"username": "fuzzer", "password": "fuzzpass1"}})
    _, login = request(server.port, "/api/mgr/customers", {
        "action": "login", "data": {"username": "fuzzer", "password": "fuzzpass1"}})
    yield f"http://127.0.0.1:{server.port}", login["token"]
    assert server.proc.poll() is None, "the server died during fuzzing"
    server.stop()


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzed_requests_never_fail_the_server(case, live):
    base_url, token = live
    response = case.call(base_url=base_url, headers={"Authorization": f"Bearer {token}"},
                         timeout=30)
    assert response.status_code < 500, (case.method, case.path, response.text[:300])
    if response.status_code >= 400 and case.method != "HEAD":
        try:
            body = json.loads(response.text)
        except ValueError:
            raise AssertionError((case.method, case.path, response.status_code,
                                  response.text[:200])) from None
        assert body["status"] in (1, 2) and isinstance(body["msg"], str) and body["msg"]
        assert re.fullmatch(r"[a-z][a-z0-9_]*", body.get("code") or ""), body
