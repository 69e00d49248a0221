"""Shared fixtures: one real embedded database per test session, a fresh database
name per test, and a small JSON client for the HTTP API."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient

from conf import Settings
from engine.dispatch import LocalDispatcher
from handlers import make_app
from services.accounts import username_key
from services.context import AppContext
from storage.database import connect, ensure_indexes
from storage.embedded import EmbeddedMongo

#: The checkout (the project itself is imported from its installation: `make install`).
ROOT = Path(__file__).resolve().parent.parent

#: Low bcrypt cost keeps the suite fast; production uses conf's default (12).
TEST_BCRYPT_ROUNDS = 6


def testdata_dir() -> Path:
    return Path(os.environ.get("FACESWAP_TESTDATA", ROOT.parent / "shared" / "testdata"))


@pytest.fixture(scope="session")
def testdata() -> Path:
    path = testdata_dir()
    if not path.is_dir():
        pytest.skip(f"test media folder {path} is absent")
    return path


@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MongoDB: FACESWAP_TEST_MONGO_URL if set, else the embedded secantusdb."""
    url = os.environ.get("FACESWAP_TEST_MONGO_URL")
    if url:
        yield url
        return
    server = EmbeddedMongo(tmp_path_factory.mktemp("mongo"))
    yield server.start()
    server.stop()


@pytest.fixture
def settings(tmp_path: Path, mongo_url: str) -> Settings:
    return Settings(data_dir=str(tmp_path / "data"), mongo_url=mongo_url,
                    db_name=f"t_{uuid.uuid4().hex[:12]}", bcrypt_rounds=TEST_BCRYPT_ROUNDS,
                    cookie_secret="test-secret", workers=1)


@pytest.fixture
def ctx(io_loop, settings: Settings) -> Iterator[AppContext]:
    settings.data_path.mkdir(parents=True, exist_ok=True)
    db = connect(settings.mongo_url, settings.db_name, settings.db_timeout_ms)
    io_loop.run_sync(lambda: ensure_indexes(db, username_key))
    context = AppContext.build(settings, db, LocalDispatcher(
        settings.workers, io_loop.asyncio_loop, memory_mb=settings.worker_memory_mb))
    yield context
    io_loop.run_sync(context.close, timeout=60)
    io_loop.run_sync(lambda: db.client.drop_database(settings.db_name))
    db.client.close()


@pytest.fixture
def app(ctx: AppContext):
    return make_app(ctx, ctx.settings.cookie_secret)


class Api:
    """A JSON client for the service under test; never raises on HTTP errors."""

    def __init__(self, client: tornado.httpclient.AsyncHTTPClient, base_url: str) -> None:
        self.client = client
        self.base_url = base_url

    async def call(self, method: str, path: str, body: Any = None, *, token: str | None = None,
                   headers: dict[str, str] | None = None, raw: bytes | str | None = None
                   ) -> tuple[int, dict[str, Any]]:
        hdrs = dict(headers or {})
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        data = raw
        if body is not None:
            data = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        if data is None and method in ("POST", "PUT"):
            data = b""
        resp = await self.client.fetch(self.base_url + path, method=method, body=data,
                                       headers=hdrs, raise_error=False,
                                       allow_nonstandard_methods=True)
        try:
            payload = json.loads(resp.body) if resp.body else {}
        except ValueError:
            payload = {"_raw": resp.body}
        return resp.code, payload

    async def register(self, username: str, password: str = "secret123", **extra: str
                       ) -> tuple[int, dict[str, Any]]:
        return await self.call("POST", "/api/mgr/customers", {
            "action": "add_customer", "data": {"username": username, "password": password,
                                               **extra}})

    async def login(self, username: str, password: str = "secret123") -> str:
        code, body = await self.call("POST", "/api/mgr/customers", {
            "action": "login", "data": {"username": username, "password": password}})
        assert code == 200, body
        return body["token"]

    async def user(self, username: str, password: str = "secret123") -> str:
        """Register ``username`` and return a bearer token."""
        code, body = await self.register(username, password)
        assert code == 200, body
        return await self.login(username, password)


@pytest.fixture
def api(http_client, base_url: str) -> Api:
    return Api(http_client, base_url)
