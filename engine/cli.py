"""Command line: ``python -m engine swap --image I --video V --out O [options]``.

``--image`` may be repeated (several photos of one person), or ``--face-video F``
given instead (a short video of the person): see :mod:`engine.library`.

``--video`` may name a photo (JPEG, PNG, WebP, BMP): the result is then a photo
(``--out`` ending in ``.jpg`` or ``.png``). ``--start``/``--end`` swap and write
only that segment of a video.

Progress is a tqdm bar on stderr; success prints one JSON line on stdout;
failure exits with status 2 and one line on stderr saying why.

When the command ends, however it ends, nothing it started runs on: SIGTERM and
SIGHUP stop it like Ctrl-C does (the swap cleans up, the helper process is joined),
the resource tracker that starting the helper brought along is stopped before the
exit, and a helper whose CLI is killed outright is killed with it by the kernel
(:mod:`engine.procs`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterator

from .errors import EngineError
from .procs import stop_resource_tracker

#: Leading bytes of the photo formats a target may be (JPEG, PNG, BMP, WebP).
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM")


def is_image_file(path: str) -> bool:
    """Whether ``path`` holds a photo (by its first bytes, not its name)."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine", description="Face-swap engine")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("swap", help="swap the face of an image into a video")
    s.add_argument("--image", action="append", default=[],
                   help="source image (the face to put in); repeat it (up to 10) for "
                        "several photos of the same person")
    s.add_argument("--face-video", default=None,
                   help="a short video (at most 30 s) of the person instead of photos")
    s.add_argument("--video", required=True, help="target video, or a target photo")
    s.add_argument("--out", required=True,
                   help="output path: .mp4 for a video, .jpg or .png for a photo")
    s.add_argument("--start", type=float, default=None, metavar="SECONDS",
                   help="swap and write the video from this time on")
    s.add_argument("--end", type=float, default=None, metavar="SECONDS",
                   help="swap and write the video up to this time")
    s.add_argument("--many-faces", action="store_true",
                   help="swap every face, not only the main one")
    s.add_argument("--keep-mouth", action="store_true", help="keep the target's own inner mouth")
    s.add_argument("--quality", default="balanced", choices=["fast", "balanced", "high"])
    s.add_argument("--max-height", type=int, default=None, help="downscale to this height")
    s.add_argument("--max-frames", type=int, default=None, help=argparse.SUPPRESS)
    # Benchmark only: add per-stage seconds and the unswapped frame indices to the JSON.
    s.add_argument("--stats", action="store_true", help=argparse.SUPPRESS)
    return p


class _NoBar:
    """Stands in for the bar when stderr is not a terminal (tqdm would hide it anyway)."""

    total = n = 0

    def set_postfix_str(self, *args, **kwargs) -> None: ...

    def refresh(self) -> None: ...

    def close(self) -> None: ...


def _progress_bar():
    # tqdm's import costs 40-70 ms of a run's start-up: only pay it to draw.
    if not sys.stderr.isatty():
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=0, unit="frame", file=sys.stderr, dynamic_ncols=True, leave=False)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _stopped_cleanly() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt (the swap's own clean-up runs instead of
    an abrupt exit); on the way out, stop the resource tracker. Handlers are set only
    from the main thread (``main`` may be called in-process) and restored after."""
    signals = (signal.SIGTERM, signal.SIGHUP)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = [signal.signal(s, _interrupt) for s in signals] if main_thread else []
    try:
        yield
    finally:
        for sig, handler in zip(signals, previous, strict=False):
            signal.signal(sig, handler)
        stop_resource_tracker()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with _stopped_cleanly():
        return _swap(args)


def _swap(args: argparse.Namespace) -> int:
    from .pipeline import StageTimes, swap_video

    bar = _progress_bar()

    def progress(done: int, total: int, fps: float) -> None:
        bar.total = total
        bar.n = done
        bar.set_postfix_str(f"{fps:.1f} fps", refresh=False)
        bar.refresh()

    stats = StageTimes() if args.stats else None
    if bool(args.image) == bool(args.face_video):
        bar.close()
        print("error: give --image (repeatable) or --face-video", file=sys.stderr)
        return 2
    image = args.image[0] if len(args.image) == 1 else args.image
    try:
        if is_image_file(args.video):
            if args.start is not None or args.end is not None:
                raise EngineError("--start and --end apply to a video, not to a photo")
            from .still import swap_image

            result = swap_image(image, args.video, args.out, many_faces=args.many_faces,
                                keep_mouth=args.keep_mouth, quality=args.quality,
                                face_video=args.face_video, progress=progress)
        else:
            result = swap_video(image, args.video, args.out, many_faces=args.many_faces,
                                keep_mouth=args.keep_mouth, quality=args.quality,
                                max_height=args.max_height, max_frames=args.max_frames,
                                start_s=args.start, end_s=args.end,
                                face_video=args.face_video, progress=progress, stats=stats)
    except EngineError as exc:
        bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        bar.close()
        print("error: interrupted", file=sys.stderr)
        return 2
    bar.close()
    if stats is not None:
        result["stages"] = stats.as_dict()
        result["unswapped"] = stats.unswapped
        if hasattr(stats, "view_changes"):
            result["view_changes_at"] = stats.view_changes
    print(json.dumps(result), flush=True)
    return 0
