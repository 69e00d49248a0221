"""The application context: everything a handler may use, built once at start-up
(the thumbor pattern — no module-level globals holding connections)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from motor.motor_asyncio import AsyncIOMotorDatabase

from conf import Limits, Settings, limits_for
from engine.dispatch import Dispatcher
from services.accounts import AccountService
from services.faces import FaceService
from services.files import FileService
from services.metrics import Metrics
from services.preview import PreviewService
from services.tasks import TaskService
from services.uploads import UploadService
from storage import DatabaseError, MediaStore, Repositories
from storage.database import ping


@dataclass
class AppContext:
    settings: Settings
    repos: Repositories
    accounts: AccountService
    media: MediaStore
    uploads: UploadService
    tasks: TaskService
    files: FileService
    metrics: Metrics
    faces: FaceService
    previews: PreviewService
    #: Reports whether the embedded database process is running (None: external DB).
    db_process_alive: Callable[[], bool] | None = field(default=None)

    @classmethod
    def build(cls, settings: Settings, db: AsyncIOMotorDatabase, dispatcher: Dispatcher,
              db_process_alive: Callable[[], bool] | None = None) -> AppContext:
        repos = Repositories.over(db)
        media = MediaStore(settings.data_path)
        metrics = Metrics()
        uploads = UploadService(repos, media, settings, metrics, limits=limits_for)
        faces = FaceService(repos, media, settings)
        tasks = TaskService(repos, media, dispatcher, uploads, metrics, faces,
                            limits=limits_for)
        accounts = AccountService(repos, settings, limits=limits_for)
        previews = PreviewService(repos, media, settings, tasks)
        # an account's deletion: its tasks stop first, then what is kept of its files
        # (faces, previews), then the files themselves
        accounts.purgers = [lambda uid, _name: tasks.purge_owner(uid),
                            lambda uid, _name: faces.forget_owner(uid),
                            lambda uid, _name: previews.forget_owner(uid),
                            uploads.purge_owner]
        return cls(settings=settings, repos=repos, accounts=accounts,
                   media=media, uploads=uploads, tasks=tasks,
                   files=FileService(repos, media, uploads, tasks, faces), metrics=metrics,
                   faces=faces, previews=previews, db_process_alive=db_process_alive)

    def limits(self, usertype: int) -> Limits:
        """The conf/ limits of ``usertype`` (the one way services and handlers get them)."""
        return limits_for(usertype)

    async def start_workers(self) -> None:
        """Start the interactive engine processes now, models loaded (server start-up)."""
        await asyncio.gather(self.previews.worker.start(), self.faces.worker.start())

    async def close(self) -> None:
        """Stop the tasks' dispatcher and the interactive engine processes."""
        await self.tasks.close()
        await self.previews.close()
        await self.faces.close()

    async def health(self) -> tuple[bool, str]:
        """(healthy, reason): a dead embedded process or an unanswered ping is unhealthy."""
        if self.db_process_alive is not None and not self.db_process_alive():
            return False, "the embedded database process is not running"
        try:
            ok = await asyncio.wait_for(ping(self.repos.db), timeout=1.5)
        except TimeoutError:
            ok = False
        return ok, "ok" if ok else "the database does not answer"

    async def metrics_page(self, accept: str) -> tuple[bytes, str]:
        """``GET /metrics``: ``(body, content type)``; answers with the database down too
        (``faceswap_database_up 0``, no task counts)."""
        healthy, _ = await self.health()
        counts = None
        if healthy:
            try:
                counts = await asyncio.wait_for(self.repos.tasks.count_by_state(), 2.0)
            except (DatabaseError, TimeoutError):
                counts = None
        return self.metrics.render(
            accept, tasks_by_state=counts, queue_length=len(self.tasks.queue),
            websocket_clients=self.tasks.subscriber_count(), database_up=healthy,
            worker_restarts=self.tasks.dispatcher.worker_restarts)
