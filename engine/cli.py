"""Command line: ``python -m engine swap --image I --video V --out O [options]``.

Progress is a tqdm bar on stderr; success prints one JSON line on stdout;
failure exits with status 2 and one line on stderr saying why.
"""

from __future__ import annotations

import argparse
import json
import sys

from .errors import EngineError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine", description="Face-swap engine")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("swap", help="swap the face of an image into a video")
    s.add_argument("--image", required=True, help="source image (the face to put in)")
    s.add_argument("--video", required=True, help="target video")
    s.add_argument("--out", required=True, help="output MP4 path")
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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .pipeline import StageTimes, swap_video

    bar = _progress_bar()

    def progress(done: int, total: int, fps: float) -> None:
        bar.total = total
        bar.n = done
        bar.set_postfix_str(f"{fps:.1f} fps", refresh=False)
        bar.refresh()

    stats = StageTimes() if args.stats else None
    try:
        result = swap_video(args.image, args.video, args.out, many_faces=args.many_faces,
                            keep_mouth=args.keep_mouth, quality=args.quality,
                            max_height=args.max_height, max_frames=args.max_frames,
                            progress=progress, stats=stats)
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
    print(json.dumps(result), flush=True)
    return 0
