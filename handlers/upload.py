"""Uploads: one-shot multipart (``/video/upload``) and resumable tus 1.0 (``/video/uploads/``).

Both stream the body to a file under ``tmp/`` as it arrives (memory stays flat), stop
with 413 the moment the user's limit is passed, and hand the finished file to the
upload service. On every failure path, including a client that goes away, the
partial file is deleted.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import re
import urllib.parse
from pathlib import Path
from typing import Any

import tornado.web
from streaming_form_data import StreamingFormDataParser
from streaming_form_data.parser import ParseFailedException, parse_content_boundary
from streaming_form_data.targets import BaseTarget, ValueTarget

from handlers.base import BaseHandler
from services import ServiceError
from services.files import file_warnings, thumbnail_url
from services.uploads import check_kind

WRITE_BATCH = 1024 * 1024  #: bytes collected before one write on a worker thread
MULTIPART_OVERHEAD = 64 * 1024  #: room for the form fields around the file part
BODY_TIMEOUT = 3600.0  #: seconds a slow client may take for one request body
TUS_VERSION = "1.0.0"
TUS_ID_RE = re.compile(r"^[0-9a-f]{32}$")
DIGITS_RE = re.compile(r"^[0-9]{1,19}$")  #: ASCII digits only: "²".isdigit() is True


class TempFileTarget(BaseTarget):
    """A multipart file part written to ``path``; knows whether the part was complete."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.complete = False
        self._file: Any = None

    def on_start(self) -> None:
        self._file = open(self.path, "xb")

    def on_data_received(self, chunk: bytes) -> None:
        self._file.write(chunk)

    def on_finish(self) -> None:
        self._file.close()
        self.complete = True

    def discard(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class PartHeaderGuard:
    """Refuse multipart part headers longer than ``limit`` bytes.

    The parser keeps a part's headers whole in memory (a 100 MB header line cost it
    over 1 GB), so they are bounded here, before the parser sees them.
    """

    def __init__(self, boundary: bytes, limit: int = 16 * 1024) -> None:
        self.delimiter = b"\r\n--" + boundary
        self.limit = limit
        self.carry = b"\r\n"  # the body's first delimiter has no CRLF of its own
        self.in_headers = False

    def feed(self, data: bytes) -> None:
        if not self.in_headers and len(data) > 2 * len(self.delimiter):
            # the common case, inside file content: look only where a delimiter may
            # start, without copying the MiB of data onto the carry
            joint = self.carry + data[: len(self.delimiter)]
            start = joint.find(self.delimiter)
            if start == -1:
                start = data.find(self.delimiter)
                if start == -1:
                    self.carry = data[-len(self.delimiter) + 1:]
                    return
                data = data[start:]
            else:
                data = joint[start:] + data[len(self.delimiter):]
            self.carry = b""
        buf, pos = self.carry + data, 0
        while True:
            if self.in_headers:
                end = buf.find(b"\r\n\r\n", pos)
                if (end if end != -1 else len(buf)) - pos > self.limit:
                    raise ServiceError("multipart part headers are too large")
                if end == -1:
                    self.carry = buf[pos:]
                    return
                self.in_headers, pos = False, end + 4
            else:
                start = buf.find(self.delimiter, pos)
                if start == -1:
                    self.carry = buf[max(pos, len(buf) - len(self.delimiter) + 1):]
                    return
                self.in_headers, pos = True, start + len(self.delimiter)


class StreamingBodyHandler(BaseHandler):
    """Shared by both upload routes: size limit, timeouts, cleanup on disconnect."""

    small_body = False
    limit = 0
    received = 0
    failure: ServiceError | None = None
    _expected = 0

    def initialize(self) -> None:
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._writing: asyncio.Future | None = None

    def start_body(self, limit: int) -> None:
        declared = self.request.headers.get("Content-Length")
        if declared is not None and not DIGITS_RE.match(declared):
            raise ServiceError("Content-Length must be a number of bytes")
        if declared is not None and int(declared) > limit:
            raise ServiceError("the upload is larger than your limit", 413, "too_large")
        self.limit = limit
        self._expected = int(declared) if declared is not None else limit + 1
        # Tornado's own cap (a bare 400) sits above ours so that ours answers first.
        self.request.connection.set_max_body_size(limit + 1024 * 1024)
        self.request.connection.set_body_timeout(BODY_TIMEOUT)

    def count(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.limit:
            raise ServiceError("the upload is larger than your limit", 413, "too_large")

    async def data_received(self, chunk: bytes) -> None:
        """Collect the body and hand it to ``consume`` in 1 MiB pieces on a thread.

        Disk writes can stall for seconds under write-back pressure; on the event loop
        that would stall every other client. Tornado reads no further while this
        coroutine runs, so memory stays bounded. On a failure answer at once and drop
        the rest (Tornado closes a connection whose response ends before its request).
        """
        if self.failure is not None:
            return
        try:
            self.count(chunk)
            self._pending.append(chunk)
            self._pending_size += len(chunk)
            if self._pending_size >= WRITE_BATCH or self.received >= self._expected:
                await self.flush_body()
        except (ServiceError, OSError) as exc:
            self.failure = exc if isinstance(exc, ServiceError) else _disk_error(exc)
            self.cleanup()
            self.send_error(self.failure.code, exc_info=(ServiceError, self.failure, None))

    async def flush_body(self) -> None:
        data, self._pending, self._pending_size = b"".join(self._pending), [], 0
        if data:
            self._writing = asyncio.ensure_future(self.ctx.uploads.run_io(self.consume, data))
            await self._writing

    async def complete_body(self) -> None:
        """Write what is still buffered; call first in the method that ends the body."""
        try:
            await self.flush_body()
        except OSError as exc:
            raise _disk_error(exc) from None

    def consume(self, chunk: bytes) -> None:
        raise NotImplementedError

    def cleanup(self) -> None:  # overridden: remove whatever partial file exists
        pass

    def on_connection_close(self) -> None:
        """Clean up, but never under a write still running on an upload thread."""
        if self._writing is not None and not self._writing.done():
            self._writing.add_done_callback(lambda _: self.cleanup())
        else:
            self.cleanup()

    def on_finish(self) -> None:
        self.cleanup()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.cleanup()
        super().write_error(status_code, **kwargs)


@tornado.web.stream_request_body
class UploadHandler(StreamingBodyHandler):
    """``POST /video/upload``: fields ``username``, ``filetype`` and the file part ``file``."""

    parser: StreamingFormDataParser | None = None
    target: TempFileTarget | None = None
    stream: Any = None

    async def prepare(self) -> None:
        await super().prepare()
        if self.request.method != "POST":
            return
        user = self.require_user()
        self.start_body(self.ctx.uploads.max_bytes(user) + MULTIPART_OVERHEAD)
        declared = self.request.headers.get("Content-Length")
        self.stream = await self.ctx.uploads.open_stream(user, int(declared) if declared
                                                         else None)
        try:
            self.parser = StreamingFormDataParser(self.request.headers)
            self.guard = PartHeaderGuard(parse_content_boundary(self.request.headers))
        except ParseFailedException as exc:
            raise ServiceError(f"expected multipart/form-data with a boundary ({exc})") from None
        self.fields = {name: ValueTarget() for name in ("username", "filetype")}
        for name, target in self.fields.items():
            self.parser.register(name, target)
        self.target = TempFileTarget(self.ctx.media.temp_path())
        self.parser.register("file", self.target)
        self.tail = b""

    def count(self, chunk: bytes) -> None:
        super().count(chunk)
        if self.stream is not None:  # the storage quota, with the user's other uploads
            self.ctx.uploads.grow(self.stream, len(chunk))

    def consume(self, chunk: bytes) -> None:
        if self.parser is None:
            return
        self.tail = (self.tail + chunk[-256:])[-256:]
        self.guard.feed(chunk)
        try:
            self.parser.data_received(chunk)
        except (ParseFailedException, ValueError):  # ValueError: non-UTF-8 part headers
            raise ServiceError("malformed multipart body") from None

    async def post(self) -> None:
        await self.complete_body()
        transfer_seconds = self.request.request_time()  # the body is complete
        user = self.require_user()
        assert self.target is not None
        if not self.tail.rstrip(b"\r\n").endswith(b"--"):
            raise ServiceError("the multipart body is truncated")
        if not self.target.complete:
            raise ServiceError("missing file part 'file'")
        values = {name: t.value.decode("utf-8", "replace") for name, t in self.fields.items()}
        if values["username"] and values["username"] != user.username:
            raise ServiceError("username does not match the logged-in user", 403)
        kind = check_kind(values["filetype"])
        self.ctx.uploads.close_stream(self.stream)  # from here the exact check in accept
        record = await self.ctx.uploads.accept(user, kind, self.target.path,
                                               self.target.multipart_filename or "",
                                               transfer_seconds)
        self.reply({"status": 0, "filepath": record["filepath"], "upload": _public(record),
                    "warnings": file_warnings(record)})

    def cleanup(self) -> None:
        if self.target is not None:
            self.target.discard()
        if self.stream is not None:
            self.ctx.uploads.close_stream(self.stream)


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {**{key: record.get(key) for key in ("kind", "size", "width", "height", "duration",
                                                "faces")}, "thumbnail": thumbnail_url(record)}


def _disk_error(exc: OSError) -> ServiceError:
    import errno

    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ServiceError("the server has no space left for this upload", 507, "disk_full")
    return ServiceError("the server could not store the upload", 500)


def quote_filepath(filepath: str) -> str:
    """Headers are ASCII: the ``Upload-Filepath`` value is percent-encoded UTF-8."""
    return urllib.parse.quote(filepath, safe="/")


def _parse_metadata(header: str) -> dict[str, str]:
    """tus ``Upload-Metadata``: comma-separated ``key base64value`` pairs."""
    metadata: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in header.split(","))):
        key, _, value = pair.partition(" ")
        try:
            metadata[key] = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ServiceError(f"Upload-Metadata value of {key!r} is not base64 UTF-8") from None
    return metadata


@tornado.web.stream_request_body
class TusHandler(StreamingBodyHandler):
    """tus 1.0: core (HEAD, PATCH), creation (POST) and termination (DELETE)."""

    upload: dict[str, Any] | None = None
    file: Any = None
    part: Path | None = None
    lock: Any = None

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Tus-Resumable", TUS_VERSION)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """412 answers name the versions the server speaks (tus 1.0 core); send_error
        has reset the headers set before the refusal, so it is set here."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if (exc.code if isinstance(exc, ServiceError) else status_code) == 412:
            self.set_header("Tus-Version", TUS_VERSION)
        super().write_error(status_code, **kwargs)

    def part_path(self, upload_id: str) -> Path:
        return self.ctx.uploads.tus_part(upload_id)

    async def prepare(self) -> None:
        await super().prepare()
        if self.request.method == "OPTIONS":
            return
        user = self.require_user()
        if self.request.headers.get("Tus-Resumable") != TUS_VERSION:
            raise ServiceError("Tus-Resumable: 1.0.0 is required", 412, "tus_version")
        upload_id = self.path_kwargs.get("upload_id") or ""
        if self.request.method == "POST":
            self.start_body(0)
            return
        if not TUS_ID_RE.match(upload_id):
            raise ServiceError("no such upload", 404)
        self.upload = await self.ctx.repos.uploads.tus_get(upload_id)
        if self.upload is None or self.upload["owner_id"] != user.id:
            raise ServiceError("no such upload", 404)
        if self.request.method == "PATCH":
            await self._open_patch()

    async def _open_patch(self) -> None:
        assert self.upload is not None
        if self.upload["filepath"]:
            raise ServiceError("this upload is already complete", 409, "upload_complete")
        ctype = self.request.headers.get("Content-Type", "")
        if ctype != "application/offset+octet-stream":
            raise ServiceError("Content-Type must be application/offset+octet-stream", 415)
        claimed = self.request.headers.get("Upload-Offset")
        if claimed is None or not DIGITS_RE.match(claimed):
            raise ServiceError("Upload-Offset must be a non-negative integer", 400, "bad_offset")
        # from here until the response, no other request may touch this upload
        self.lock = self.ctx.uploads.lock_tus(self.upload["_id"], "PATCH")
        part = self.part_path(self.upload["_id"])
        offset = part.stat().st_size if part.exists() else 0
        if self.request.headers.get("Upload-Offset") != str(offset):
            raise ServiceError(f"Upload-Offset does not match the server's offset {offset}", 409,
                               "offset_mismatch")
        self.start_body(self.upload["length"] - offset)
        self.part = part
        self.file = open(part, "ab")

    def consume(self, chunk: bytes) -> None:
        if self.lock is not None and self.lock.terminated:
            raise ServiceError("the upload was terminated by a DELETE", 410, "terminated")
        if self.file is not None:
            self.file.write(chunk)

    def cleanup(self) -> None:
        """Keep the bytes that arrived (that is what resuming is for); close the file,
        and give the upload back to the next request once no write is in flight."""
        if self._writing is not None and not self._writing.done():
            return  # on_connection_close calls again when the write has ended
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.lock is not None and self.upload is not None:
            self.ctx.uploads.unlock_tus(self.upload["_id"], self.lock)
            self.lock = None

    def options(self, upload_id: str = "") -> None:
        self.set_header("Tus-Version", TUS_VERSION)
        self.set_header("Tus-Extension", "creation,termination")
        self.set_status(204)

    async def post(self, upload_id: str = "") -> None:
        user = self.require_user()
        length = self.request.headers.get("Upload-Length", "")
        if not DIGITS_RE.match(length) or int(length) == 0:
            raise ServiceError("Upload-Length must be a positive integer")
        metadata = _parse_metadata(self.request.headers.get("Upload-Metadata", ""))
        check_kind(metadata.get("filetype", ""))
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=self.ctx.settings.tus_expiry_hours)
        upload_id = await self.ctx.uploads.create_tus(user, int(length), metadata, expires)
        self.set_header("Location", f"/video/uploads/{upload_id}")
        self.set_header("Upload-Expires", expires.strftime("%a, %d %b %Y %H:%M:%S GMT"))
        self.set_status(201)

    def head(self, upload_id: str) -> None:
        assert self.upload is not None
        part = self.part_path(upload_id)
        offset = self.upload["length"] if self.upload["filepath"] else (
            part.stat().st_size if part.exists() else 0)
        self.set_header("Upload-Offset", str(offset))
        self.set_header("Upload-Length", str(self.upload["length"]))
        if self.upload["filepath"]:
            self.set_header("Upload-Filepath", quote_filepath(self.upload["filepath"]))
        self.set_header("Cache-Control", "no-store")

    async def patch(self, upload_id: str) -> None:
        await self.complete_body()
        assert self.upload is not None and self.part is not None and self.lock is not None
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.lock.terminated:
            raise ServiceError("the upload was terminated by a DELETE", 410, "terminated")
        offset = self.part.stat().st_size
        self.set_header("Upload-Offset", str(offset))
        if offset < self.upload["length"]:
            self.set_status(204)
            return
        self.lock.finishing = True
        user = self.require_user()
        name = self.upload["metadata"].get("filename", "")
        since_creation = (dt.datetime.now(dt.UTC) - self.upload["created"]).total_seconds()
        try:
            record = await self.ctx.uploads.accept(user, self.upload["metadata"]["filetype"],
                                                   self.part, name, since_creation,
                                                   tus_id=upload_id)
        except ServiceError:
            await self.ctx.repos.uploads.tus_delete(upload_id)
            raise
        await self.ctx.repos.uploads.tus_finish(upload_id, record["filepath"])
        self.set_header("Upload-Filepath", quote_filepath(record["filepath"]))
        self.set_status(204)

    async def delete(self, upload_id: str) -> None:
        await self.ctx.uploads.delete_tus(upload_id)
        self.set_status(204)
