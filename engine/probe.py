"""Checks of user uploads, run before anything is stored or queued.

They open the file with the same libraries the pipeline uses, so anything that
passes here is something the pipeline can read (and anything that fails gets
the same clear sentence the pipeline would give).

A file is hostile until proven otherwise: a 100 KB PNG may declare 30000x30000
pixels and an MP4 of 300 KB may claim 80 million samples, and the libraries
allocate what the headers claim. So the claims are read first, without
decoding (:func:`image_header`, :func:`mp4_claims`), and refused past the
caller's :class:`ProbeLimits`; and the whole probe runs in a child process with
an address-space limit and a timeout (:func:`probe_isolated`), so whatever
still slips through costs the child, never the server. The length of a video
is what its packets' timestamps span (:func:`scan_packets`), not what its
headers say.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import subprocess
import sys
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

from .errors import EngineError, ProbeRefused

#: FFmpeg demuxers that read single still images; a photo is not a video.
_IMAGE_FORMATS = ("image2", "image2pipe", "apng", "gif", "webp_pipe")


def open_video(path: str):
    """Open ``path`` with PyAV and return ``(container, video_stream)`` or raise EngineError."""
    import av

    try:
        container = av.open(path, mode="r", metadata_errors="ignore")
    except FileNotFoundError:
        raise EngineError("the video file does not exist") from None
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError):
        raise EngineError(
            "the file is not a readable video (corrupt or unsupported format)") from None
    fmt = container.format.name or ""
    if not container.streams.video or fmt in _IMAGE_FORMATS or fmt.endswith("_pipe"):
        container.close()
        raise EngineError("the file has no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None or not stream.codec_context.width:
        container.close()
        raise EngineError("the file is not a readable video (corrupt or unsupported format)")
    return container, stream


def stream_rotation(stream) -> int:
    """Display rotation in degrees counter-clockwise (0, 90, 180, 270) from the stream header."""
    import av

    angle = 0.0
    try:
        ds = getattr(stream, "side_data", None)
        if ds is not None:
            for key in ("DISPLAYMATRIX", av.sidedata.sidedata.Type.DISPLAYMATRIX):
                try:
                    angle = float(ds[key])
                    break
                except Exception:  # noqa: BLE001 - PyAV versions differ here
                    continue
    except Exception:  # noqa: BLE001
        angle = 0.0
    if not angle:
        tag = (stream.metadata or {}).get("rotate")
        if tag:
            try:
                angle = -float(tag)  # the legacy tag is clockwise
            except ValueError:
                angle = 0.0
    return int(round(angle / 90.0)) * 90 % 360


def frame_rate(stream) -> Fraction:
    """Nominal frame rate; falls back to 30 when the container does not say."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and rate > 0:
            return Fraction(rate)
    return Fraction(30)


def probe_video(path: str, limits: ProbeLimits | None = None,
                thumbnail: str | None = None) -> dict:
    """Describe a video: size as displayed, real duration, frame count, fps, audio, codec.

    Refuses (:class:`ProbeRefused`) what ``limits`` do not allow, from the headers,
    before anything is decoded; then scans the packets (demux only) for the real
    length, then decodes the first frame so that a file whose header parses but
    whose pictures do not (corrupt, truncated, unsupported codec) is rejected here.
    ``thumbnail``: where to write a small JPEG of that first frame (``"thumbnail"`` in
    the answer says whether it was written).
    """
    import av

    limits = limits or ProbeLimits()
    claims = mp4_claims(path)
    if claims is not None:
        _check_claims(claims, limits)
    container, stream = open_video(path)
    try:
        cc = stream.codec_context
        _check_pixels(cc.width, cc.height, limits.max_video_pixels, "video")
        first = None
        try:
            for frame in container.decode(stream):
                first = frame
                break
        except (av.FFmpegError, OSError, ValueError):
            first = None
        if first is None:
            raise EngineError("the video could not be decoded (corrupt, truncated or unsupported)")
        _check_pixels(first.width, first.height, limits.max_video_pixels, "video")
        rotation = stream_rotation(stream)
        try:
            rotation = int(round(float(first.rotation) / 90.0)) * 90 % 360 or rotation
        except Exception:  # noqa: BLE001
            pass
        width, height = first.width, first.height
        if rotation in (90, 270):
            width, height = height, width
        fps = frame_rate(stream)
        scanning, scanned = open_video(path)
        try:
            scan = scan_packets(scanning, scanned, limits, os.path.getsize(path))
        finally:
            scanning.close()
        thumbed = False
        if thumbnail:
            from .thumbs import frame_to_bgr, write_thumbnail

            with contextlib.suppress(Exception):  # a file without one is still a video
                write_thumbnail(frame_to_bgr(first, rotation), thumbnail)
                thumbed = True
        return {
            "thumbnail": thumbed,
            "width": int(width),
            "height": int(height),
            "duration": scan["duration"],
            "header_duration": _header_duration(container, stream),
            "frames": scan["packets"],
            "fps": float(fps),
            "has_audio": bool(container.streams.audio),
            "codec": stream.codec_context.name,
            "rotation": rotation,
        }
    finally:
        container.close()


def _header_duration(container, stream) -> float:
    """What the container claims (for comparison only: never trusted for limits)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000
    return 0.0


def scan_packets(container, stream, limits: ProbeLimits, file_size: int | None = None) -> dict:
    """Demux (never decode) every packet of ``stream``: real length and packet count.

    The length is the span of presentation timestamps, from the first packet's
    start to the last packet's end, so edited container durations do not count.
    More packets than ``limits.max_samples`` or a frame rate above
    ``limits.max_frame_rate`` (timestamps that do not advance) are refused: both
    would let a long video pass a length limit. Fewer packets than the container's
    index lists, or a packet that ends past ``file_size``, is a truncated file
    (``truncated_video``).
    """
    import av

    tb = stream.time_base or Fraction(1, 90000)
    count = last_byte = 0
    start: int | None = None
    end: int | None = None
    try:
        for packet in container.demux(stream):
            if packet.size == 0 and packet.pts is None:
                continue  # the demuxer's flush packet
            count += 1
            if packet.pos is not None and packet.pos >= 0:
                last_byte = max(last_byte, packet.pos + packet.size)
            if count > limits.max_samples:
                raise ProbeRefused(
                    f"the video has more than {limits.max_samples} frames, more than your "
                    f"length limit allows", "too_many_samples", oversize=True)
            pts = packet.pts if packet.pts is not None else packet.dts
            if pts is None:
                continue
            start = pts if start is None else min(start, pts)
            stop = pts + max(int(packet.duration or 0), 0)
            end = stop if end is None else max(end, stop)
    except av.FFmpegError:
        pass  # a damaged tail: what was read so far is the video (the decoder checks more)
    if count == 0:
        raise EngineError("the video has no frames (corrupt or truncated file)")
    # An MP4's index lists every frame; a file cut short (an interrupted copy) still has
    # the whole index at its front, and the demuxer stops quietly where the bytes end.
    # Refused here instead of failing the swap part-way through.
    indexed = int(stream.frames or 0)
    if (indexed and count < indexed) or (file_size is not None and last_byte > file_size):
        raise ProbeRefused(f"the video is truncated: its index lists {indexed} frames, the "
                           f"file holds {count}", "truncated_video")
    duration = float((end - start) * tb) if start is not None and end is not None else 0.0
    if count > 1 and count > max(duration, 1e-9) * limits.max_frame_rate:
        raise ProbeRefused(
            f"the video's timestamps are not credible ({count} frames in {duration:.3f} s)",
            "bad_timestamps")
    return {"duration": round(duration, 3), "packets": count}


def probe_image(path: str, limits: ProbeLimits | None = None, faces: bool = False,
                thumbnail: str | None = None) -> dict:
    """Return ``{"width", "height"}`` of a still image; with ``faces`` also ``"faces"``
    (how many) and ``"photo_check"``: the engine's verdict on it as a source photo,
    ``{"ok", "code", "msg", "warnings"}`` (see :func:`engine.check_source_face`).

    The dimensions come from the header first (:func:`image_header`) and are checked
    against ``limits`` before the pixels are decoded.
    """
    limits = limits or ProbeLimits()
    _fmt, width, height = image_header(path)
    _check_pixels(width, height, limits.max_photo_pixels, "photo")
    from .source import check_source_face, find_faces, read_image

    image = read_image(path)
    info = {"width": int(image.shape[1]), "height": int(image.shape[0]), "thumbnail": False}
    if thumbnail:
        from .thumbs import write_thumbnail

        with contextlib.suppress(Exception):
            write_thumbnail(image, thumbnail)
            info["thumbnail"] = True
    if faces:
        info["faces"] = len(find_faces(image))
        try:
            warnings = check_source_face(path) or []
            info["photo_check"] = {"ok": True, "code": None, "msg": None,
                                   "warnings": list(warnings)}
        except EngineError as exc:
            info["photo_check"] = {"ok": False, "msg": str(exc), "warnings": [],
                                   "code": getattr(exc, "code", None) or "no_face_in_photo"}
    return info


#: Formats a photo upload may have (what the page offers and the engine reads well).
IMAGE_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "BMP")  # MPO: a camera's multi-picture JPEG


def image_header(path: str) -> tuple[str, int, int]:
    """``(format, width, height)`` from the image's header; no pixel is decoded.

    Pillow reads only the header on open; its own bomb guard is turned off here
    because the caller's limit is the one that applies (and is checked next).
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise EngineError("the image file does not exist")
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                fmt, (width, height) = im.format or "", im.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, struct.error,
            EOFError):
        raise EngineError("the file is not a readable image") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    if fmt not in IMAGE_FORMATS:
        raise EngineError("the file is not a readable image (use JPEG, PNG, WebP or BMP)")
    if width <= 0 or height <= 0:
        raise EngineError("the file is not a readable image")
    return fmt, int(width), int(height)


def _check_pixels(width: int, height: int, limit: int, what: str) -> None:
    if width and height and width * height > limit:
        raise ProbeRefused(
            f"the {what} is {width}x{height} pixels; your limit is {limit / 1e6:.1f} megapixels",
            f"{what}_too_large", oversize=True)


# -- the claims of an MP4/MOV, read without FFmpeg -----------------------------------
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"moof", b"traf", b"edts",
               b"mvex", b"dinf"}
_TOP_LEVEL = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"styp",
              b"moof", b"sidx", b"uuid", b"junk"}
_MAX_BOXES = 200_000


def _boxes(f, start: int, end: int):
    """``(type, payload_start, payload_end)`` of the boxes in ``[start, end)``."""
    pos = start
    while pos + 8 <= end:
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8:
            return
        size, kind = struct.unpack(">I4s", head)
        header = 8
        if size == 1:
            big = f.read(8)
            if len(big) < 8:
                return
            size, header = struct.unpack(">Q", big)[0], 16
        elif size == 0:
            size = end - pos
        if size < header:
            return  # a broken box: FFmpeg stops there too
        yield kind, pos + header, min(pos + size, end)
        pos += size


def mp4_claims(path: str) -> dict | None:
    """What an ISO-BMFF file (MP4, MOV, M4V) claims: samples per track and picture sizes.

    Returns None for other containers. ``samples`` is the number of index entries
    FFmpeg's demuxer would allocate: per track the ``stsz`` sample count (or the
    chunk count, for uncompressed audio that FFmpeg indexes by chunk), plus every
    fragment's ``trun`` count. ``pixels`` is the largest coded picture (``stsd``).
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8 or head[4:8] not in _TOP_LEVEL:
            return None
        tracks: list[dict] = []
        fragments = 0
        largest = (0, 0)
        seen = 0
        stack = [(0, size, 0)]
        track: dict | None = None
        while stack:
            start, end, depth = stack.pop()
            for kind, p0, p1 in _boxes(f, start, end):
                seen += 1
                if seen > _MAX_BOXES:
                    raise ProbeRefused("the video has too many header boxes", "too_many_samples",
                                       oversize=True)
                if kind == b"trak":
                    track = {"handler": b"", "stsz": 0, "const": 0, "chunks": 0, "stts": []}
                    tracks.append(track)
                if kind in _CONTAINERS and depth < 10:
                    if kind == b"trak":
                        # depth-first per track so that its leaves land in its dict
                        _walk_track(f, p0, p1, track, depth + 1)
                        largest = max(largest, track.get("size", (0, 0)),
                                      key=lambda s: s[0] * s[1])
                        continue
                    stack.append((p0, p1, depth + 1))
                elif kind == b"trun" and p1 - p0 >= 8:
                    f.seek(p0 + 4)
                    fragments += struct.unpack(">I", f.read(4))[0]
    samples = fragments
    for t in tracks:
        chunk_based = (t["handler"] == b"soun" and t["const"] and len(t["stts"]) == 1
                       and t["stts"][0] == 1)
        samples += t["chunks"] if chunk_based else t["stsz"]
    return {"samples": samples, "width": largest[0], "height": largest[1],
            "tracks": len(tracks)}


def _walk_track(f, start: int, end: int, track: dict, depth: int) -> None:
    stack = [(start, end, depth)]
    while stack:
        s, e, d = stack.pop()
        for kind, p0, p1 in _boxes(f, s, e):
            if kind in _CONTAINERS and d < 10:
                stack.append((p0, p1, d + 1))
                continue
            f.seek(p0)
            data = f.read(min(p1 - p0, 64))
            if kind == b"hdlr" and len(data) >= 12:
                track["handler"] = data[8:12]
            elif kind == b"stsz" and len(data) >= 12:
                track["const"], track["stsz"] = struct.unpack(">II", data[4:12])
            elif kind == b"stz2" and len(data) >= 12:
                track["stsz"] = struct.unpack(">I", data[8:12])[0]
            elif kind in (b"stco", b"co64") and len(data) >= 8:
                track["chunks"] = struct.unpack(">I", data[4:8])[0]
            elif kind == b"stts" and len(data) >= 8:
                entries = struct.unpack(">I", data[4:8])[0]
                if entries == 1 and len(data) >= 16:
                    track["stts"] = [struct.unpack(">I", data[12:16])[0]]
                else:
                    track["stts"] = [0] * min(entries, 2)
            elif kind == b"stsd" and len(data) >= 44 and \
                    track["handler"] in (b"vide", b""):
                # first sample entry: 8 bytes of box, 24 reserved/pre-defined, width, height
                w, h = struct.unpack(">HH", data[40:44])
                track["size"] = (w, h)


def _check_claims(claims: dict, limits: ProbeLimits) -> None:
    if claims["samples"] > limits.max_samples:
        raise ProbeRefused(
            f"the video's index claims {claims['samples']} samples; your length limit allows "
            f"{limits.max_samples}", "too_many_samples", oversize=True)
    _check_pixels(claims["width"], claims["height"], limits.max_video_pixels, "video")


# -- the probe in a bounded child process ---------------------------------------------
@dataclass(frozen=True)
class ProbeLimits:
    """What one probe may accept and spend (the caller derives it from its settings)."""

    max_photo_pixels: int = 100_000_000
    max_video_pixels: int = 33_177_600  #: 7680x4320
    max_samples: int = 10_000_000  #: index entries (all tracks) a video may claim
    max_frame_rate: float = 240.0  #: packets per second of timestamps, at most
    memory_mb: int = 2048  #: address-space limit of the probe process
    timeout_s: float = 120.0  #: wall-clock limit of the probe process


_ROOT = Path(__file__).resolve().parent.parent


def probe_isolated(kind: str, path: str, limits: ProbeLimits, faces: bool = False,
                   thumbnail: str | None = None) -> dict:
    """Run :func:`probe_image` / :func:`probe_video` in a child with ``limits`` applied.

    The child sets its own ``RLIMIT_AS`` before importing anything heavy, dies with
    its parent, and is killed after ``limits.timeout_s``. Running out of memory or
    time is a refusal of the file (``probe_limit``), not an error of the server.
    ``thumbnail``: write a small JPEG there too (see :mod:`engine.thumbs`); ``kind``
    ``"thumbnail"`` only does that, for a file the service made itself (a result).
    """
    request = json.dumps({"kind": kind, "path": str(path), "faces": faces,
                          "limits": asdict(limits), "thumbnail": thumbnail})
    env = {**os.environ, "PYTHONPATH": str(_ROOT), "OPENBLAS_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run([sys.executable, "-m", "engine.probe"], input=request.encode(),
                              capture_output=True, timeout=limits.timeout_s, env=env,
                              cwd=str(_ROOT))
    except subprocess.TimeoutExpired:
        raise ProbeRefused(f"reading the file took longer than {limits.timeout_s:.0f} s",
                           "probe_limit", oversize=True) from None
    try:
        answer = json.loads(done.stdout.decode() or "null")
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        import signal

        if -done.returncode in (signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL,
                                signal.SIGABRT):
            raise EngineError("the file could not be read (it crashed the reader)")
        # killed (by the kernel, out of memory) before it could answer
        raise ProbeRefused("reading the file needs more memory than allowed", "probe_limit",
                           oversize=True)
    if "error" in answer:
        if answer.get("reason"):
            raise ProbeRefused(answer["error"], answer["reason"], bool(answer.get("oversize")))
        raise EngineError(answer["error"])
    return answer["info"]


def _child_main() -> int:
    """``python -m engine.probe``: one JSON request on stdin, one JSON answer on stdout."""
    import resource

    request = json.loads(sys.stdin.read())
    limits = ProbeLimits(**request["limits"])
    cap = limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with contextlib.suppress(Exception):
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    with contextlib.suppress(OSError):
        os.nice(5)
    try:
        import av  # noqa: F401 - the readers load here, under the limit
        import cv2  # noqa: F401
        import PIL.Image  # noqa: F401
    except (ImportError, MemoryError, OSError):
        sys.stdout.write(json.dumps({"error": "the file reader could not start within its "
                                     "memory limit", "reason": "probe_limit",
                                     "oversize": True}))
        return 0
    try:
        thumbnail = request.get("thumbnail")
        if request["kind"] == "image":
            info = probe_image(request["path"], limits, faces=request.get("faces", False),
                               thumbnail=thumbnail)
        elif request["kind"] == "thumbnail":
            from .thumbs import thumbnail_of

            thumbnail_of(request["path"], thumbnail)
            info = {"thumbnail": True}
        else:
            info = probe_video(request["path"], limits, thumbnail=thumbnail)
        answer: dict = {"info": info}
    except ProbeRefused as exc:
        answer = {"error": str(exc), "reason": exc.reason, "oversize": exc.oversize}
    except EngineError as exc:
        answer = {"error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - any library failure is a bad file, not a crash
        if isinstance(exc, MemoryError) or "memory" in str(exc).lower() \
                or "alloc" in str(exc).lower():
            answer = {"error": "reading the file needs more memory than allowed",
                      "reason": "probe_limit", "oversize": True}
        else:
            answer = {"error": f"the file could not be read ({type(exc).__name__})"}
    sys.stdout.write(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
