"""Cheap checks of user uploads, run before a task is queued.

They open the file with the same libraries the pipeline uses, so anything that
passes here is something the pipeline can read (and anything that fails gets
the same clear sentence the pipeline would give).
"""

from __future__ import annotations

from fractions import Fraction

from .errors import EngineError

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


def probe_video(path: str) -> dict:
    """Describe a video: size as displayed, duration, frame count (estimate), fps, audio, codec.

    Decodes the first frame so that a file whose header parses but whose
    pictures do not (corrupt, truncated, unsupported codec) is rejected here.
    """
    import av

    container, stream = open_video(path)
    try:
        first = None
        try:
            for frame in container.decode(stream):
                first = frame
                break
        except (av.FFmpegError, OSError, ValueError):
            first = None
        if first is None:
            raise EngineError("the video could not be decoded (corrupt, truncated or unsupported)")
        rotation = stream_rotation(stream)
        try:
            rotation = int(round(float(first.rotation) / 90.0)) * 90 % 360 or rotation
        except Exception:  # noqa: BLE001
            pass
        width, height = first.width, first.height
        if rotation in (90, 270):
            width, height = height, width
        fps = frame_rate(stream)
        duration = 0.0
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / 1_000_000
        frames = int(stream.frames or 0) or int(round(duration * float(fps)))
        return {
            "width": int(width),
            "height": int(height),
            "duration": duration,
            "frames": frames,
            "fps": float(fps),
            "has_audio": bool(container.streams.audio),
            "codec": stream.codec_context.name,
            "rotation": rotation,
        }
    finally:
        container.close()


def probe_image(path: str) -> dict:
    """Return ``{"width", "height"}`` of a still image or raise EngineError."""
    from .source import read_image

    image = read_image(path)
    return {"width": int(image.shape[1]), "height": int(image.shape[0])}
