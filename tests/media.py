"""Test media helpers: short clips cut from ../shared/testdata, multipart bodies."""

from __future__ import annotations

import uuid
from pathlib import Path

import av


def cut_clip(src: Path, dst: Path, seconds: float) -> Path:
    """Copy the first ``seconds`` of ``src`` (video and audio packets, no re-encode)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams
                   if s.type in ("video", "audio")}
        for packet in inp.demux(list(inp.streams)):
            if packet.dts is None or packet.stream.index not in streams:
                continue
            if packet.pts is not None and packet.pts * packet.time_base > seconds:
                if packet.stream.type == "video":
                    break
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    return dst


def talk_clips(testdata: Path, folder: Path, long_seconds: float) -> dict[str, bytes]:
    """A 1 s clip and a ``long_seconds`` clip of the talking-head test video."""
    src = testdata / "talk_480sq_33s.mp4"
    return {"short": cut_clip(src, folder / "short.mp4", 1.0).read_bytes(),
            "long": cut_clip(src, folder / "long.mp4", long_seconds).read_bytes()}


def multipart(fields: dict[str, str], file_field: str | None = None, filename: str = "",
              content: bytes = b"") -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    if file_field:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
                     f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                     .encode() + content + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"
