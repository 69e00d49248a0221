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


# -- crafted files: what an attacker edits, made from real media or from scratch -------
_MP4_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"moof", b"traf"}


def mp4_boxes(data: bytes | bytearray, start: int = 0, end: int | None = None,
              parents: tuple[bytes, ...] = ()) -> list[tuple[tuple[bytes, ...], int, int]]:
    """Every box of an MP4 as ``(path of types, payload start, payload end)``."""
    import struct

    end = len(data) if end is None else end
    found = []
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[pos + 8:pos + 16])[0], 16
        elif size == 0:
            size = end - pos
        if size < header:
            break
        path = (*parents, kind)
        found.append((path, pos + header, pos + size))
        if kind in _MP4_CONTAINERS:
            found += mp4_boxes(data, pos + header, pos + size, path)
        pos += size
    return found


def set_mp4_durations(data: bytes, seconds: float) -> bytes:
    """Edit mvhd, tkhd and mdhd to claim ``seconds`` (the packets stay as they are)."""
    import struct

    out = bytearray(data)
    timescales = {}
    boxes = mp4_boxes(out)
    for path, p0, _ in boxes:
        if path[-1] == b"mvhd":
            v1 = out[p0] == 1
            timescales["movie"] = struct.unpack(">I", out[p0 + (20 if v1 else 12):][:4])[0]
    for path, p0, _ in boxes:
        kind, v1 = path[-1], out[p0] == 1
        if kind in (b"mvhd", b"mdhd"):
            scale_at = p0 + (20 if v1 else 12)
            scale = struct.unpack(">I", out[scale_at:scale_at + 4])[0]
            value = int(seconds * scale)
            at = scale_at + 4
        elif kind == b"tkhd":
            value = int(seconds * timescales.get("movie", 1000))
            at = p0 + (28 if v1 else 20)
        else:
            continue
        if v1:
            out[at:at + 8] = struct.pack(">Q", value)
        else:
            out[at:at + 4] = struct.pack(">I", value)
    return bytes(out)


def set_mp4_sample_deltas(data: bytes, delta: int) -> bytes:
    """Every stts entry's sample delta set to ``delta`` (timestamps barely advance)."""
    import struct

    out = bytearray(data)
    for path, p0, _ in mp4_boxes(out):
        if path[-1] == b"stts":
            entries = struct.unpack(">I", out[p0 + 4:p0 + 8])[0]
            for i in range(entries):
                at = p0 + 8 + 8 * i + 4
                out[at:at + 4] = struct.pack(">I", delta)
    return bytes(out)


def claim_mp4_samples(data: bytes, count: int) -> bytes:
    """The video track's stsz claims ``count`` samples of one constant size (no table)."""
    import struct

    out = bytearray(data)
    for path, p0, _ in mp4_boxes(out):
        if path[-1] == b"stsz":
            out[p0 + 4:p0 + 12] = struct.pack(">II", 1000, count)
            break
    return bytes(out)


def png_bomb(width: int, height: int, rows: int | None = None) -> bytes:
    """A 1-bit greyscale PNG of ``width`` x ``height`` zeros: tiny on disk, huge decoded.

    ``rows``: compress only that many rows (a truncated image still has the header).
    """
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))

    row = b"\0" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    parts = [packer.compress(row) for _ in range(height if rows is None else rows)]
    parts.append(packer.flush())
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0,
                                                              0, 0, 0))
            + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))


def encode_video(path: Path, width: int, height: int, frames: int, rate: int = 30) -> Path:
    """A small H.264 MP4 of grey frames at any size (a real stream, really that big)."""
    import numpy as np

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for i in range(frames):
            img = np.full((height, width, 3), 100 + i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def repeat_clip(src: Path, dst: Path, times: int) -> Path:
    """``src`` played ``times`` times in a row (packets copied, timestamps shifted)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams
                   if s.type in ("video", "audio")}
        first: dict[int, int] = {}
        last: dict[int, int] = {}  # per stream: first dts, last dts + duration
        for packet in inp.demux(list(inp.streams)):
            if packet.dts is not None and packet.stream.index in streams:
                index = packet.stream.index
                first.setdefault(index, packet.dts)
                last[index] = packet.dts + max(int(packet.duration or 0), 1)
        span = {index: last[index] - first[index] for index in last}
        for loop in range(times):
            inp.seek(0)
            for packet in inp.demux(list(inp.streams)):
                if packet.dts is None or packet.stream.index not in streams:
                    continue
                shift = loop * span[packet.stream.index]
                index = packet.stream.index
                packet.pts, packet.dts = packet.pts + shift, packet.dts + shift
                packet.stream = streams[index]
                out.mux(packet)
    return dst
