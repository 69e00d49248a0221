"""The service's Prometheus metrics (``GET /metrics``) and its one-line event logs.

Metrics live in a registry of their own, one per application context: nothing from
prometheus_client's process-wide default registry leaks in, and tests that build many
contexts in one process do not collide. Two kinds:

* observed as things happen: task seconds and frames per second, upload bytes and
  durations (histograms, below);
* read when scraped: tasks by state (counted in the database), queue length, WebSocket
  clients, database health and worker restarts (:meth:`Metrics.render`'s arguments).

Task events are logged as one ``key=value`` line each (logfmt), always with
``task_id``, so a log search for one id gives a task's whole story: see :func:`event_line`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import choose_encoder

#: Every state a task can be in (storage keeps the same names).
TASK_STATES = ("queued", "running", "finished", "failed", "cancelled", "expired")

_TASK_SECONDS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
_FPS = (1, 2, 5, 10, 15, 20, 25, 30, 40, 50, 60, 90, 120)
_BYTES = tuple(1024 * 1024 * mb for mb in (0.1, 0.5, 1, 5, 10, 50, 100, 200, 500, 1024, 4096))
_UPLOAD_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class Metrics:
    """The histograms the services observe into, and the scrape-time gauges.

    Series with labels are created up front at 0 where the label values are known, so
    a rate or a ratio has both sides from the first scrape on.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.task_seconds = Histogram(
            "faceswap_task_seconds", "Seconds a task ran, from start to its end state",
            ["state"], buckets=_TASK_SECONDS, registry=r)
        self.task_fps = Histogram(
            "faceswap_task_fps", "Frames per second of each finished swap",
            buckets=_FPS, registry=r)
        self.upload_bytes = Histogram(
            "faceswap_upload_bytes", "Size of each accepted upload", ["kind"],
            buckets=_BYTES, registry=r)
        self.upload_seconds = Histogram(
            "faceswap_upload_seconds", "Seconds from an upload's start (request, or tus "
            "creation) until its last byte arrived", ["kind"], buckets=_UPLOAD_SECONDS,
            registry=r)
        self._tasks = Gauge("faceswap_tasks", "Tasks by state, as recorded in the database",
                            ["state"], registry=r)
        self._queue = Gauge("faceswap_queue_length", "Tasks waiting in the fair queue",
                            registry=r)
        self._clients = Gauge("faceswap_websocket_clients", "Open /ws/tasks connections",
                              registry=r)
        self._db_up = Gauge("faceswap_database_up",
                            "1 when the database answers a ping, else 0", registry=r)
        for state in ("finished", "failed", "cancelled"):
            self.task_seconds.labels(state)
        for kind in ("image", "video"):
            self.upload_bytes.labels(kind)
            self.upload_seconds.labels(kind)
        self._restarts = _Restarts()
        r.register(self._restarts)

    def render(self, accept: str, *, tasks_by_state: Mapping[str, int] | None,
               queue_length: int, websocket_clients: int, database_up: bool,
               worker_restarts: int) -> tuple[bytes, str]:
        """The exposition for a scrape with these current values, in the format the
        ``Accept`` header asks for: ``(body, content type)``. ``tasks_by_state`` is None
        when the database could not be asked: those series are left out, not stale."""
        self._tasks.clear()
        for state in TASK_STATES if tasks_by_state is not None else ():
            self._tasks.labels(state).set(tasks_by_state.get(state, 0))
        self._queue.set(queue_length)
        self._clients.set(websocket_clients)
        self._db_up.set(1 if database_up else 0)
        self._restarts.value = worker_restarts
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


class _Restarts:
    """A counter whose value the dispatcher keeps (it sees the losses; the engine does
    not depend on prometheus_client), exported as it is at the scrape."""

    name = "faceswap_worker_restarts"
    help = ("Worker processes lost while running a task (a local pool process replaced; "
            "on Dask, a task run again elsewhere or failed)")

    def __init__(self) -> None:
        self.value = 0

    def describe(self) -> list[CounterMetricFamily]:
        return [CounterMetricFamily(self.name, self.help)]

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.help, value=self.value)


def _value(value: object) -> str:
    """One logfmt value: bare when it is a plain word, else JSON-quoted (one line)."""
    if isinstance(value, float):
        value = round(value, 3)
    text = str(value)
    if text and not any(c.isspace() or c in '"=\\' for c in text):
        return text
    return json.dumps(text, ensure_ascii=False)


def event_line(event: str, task_id: str, **fields: object) -> str:
    """``event=<event> task_id=<id> key=value ...``; None values are left out."""
    pairs: dict[str, object] = {"event": event, "task_id": task_id, **fields}
    return " ".join(f"{key}={_value(value)}" for key, value in pairs.items()
                    if value is not None)
