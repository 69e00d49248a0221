"""A fuzz run over the upload probes: generated malformed photos and videos (truncations,
bit flips, header edits, including the counts and sizes a bomb would edit) go through the
upload service's probe. Every one is accepted or refused with 413/415 and a code; none
is a 5xx or an exception; and the server's own memory stays flat, because the probes run
in a bounded child process. Seeded: every run tries the same files."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import cv2
import pytest

from services import ServiceError
from tests.media import cut_clip, mp4_boxes
from tests.test_hardening2 import MB, peak_rss, reset_peak_rss

SEED = 14
CASES = 36  #: per kind; each probe is a child process start (~0.2-0.5 s)
#: MP4 fields whose edits a hostile file would try: counts, sizes, timescales, dimensions
MP4_TARGETS = (b"stsz", b"stts", b"stco", b"stsc", b"ctts", b"stss", b"mdhd", b"tkhd",
               b"mvhd", b"stsd", b"elst", b"hdlr")


def sources(testdata: Path, folder: Path) -> dict[str, list[bytes]]:
    face = cv2.imread(str(testdata / "face_woman.jpg"))
    small = cv2.resize(face, (96, 96), interpolation=cv2.INTER_AREA)
    images = [cv2.imencode(ext, small)[1].tobytes() for ext in (".jpg", ".png", ".webp",
                                                                 ".bmp")]
    video = cut_clip(testdata / "talk_480sq_33s.mp4", folder / "f.mp4", 0.5).read_bytes()
    return {"image": images, "video": [video]}


def mutate(rng: random.Random, kind: str, data: bytes) -> tuple[str, bytes]:
    out = bytearray(data)
    how = rng.choice(("truncate", "flip", "header", "header", "mixed"))
    if how in ("header", "mixed"):
        if kind == "video":
            boxes = [b for b in mp4_boxes(out) if b[0][-1] in MP4_TARGETS]
            _, p0, p1 = rng.choice(boxes)
            at = rng.randrange(p0, max(p0 + 1, min(p1, p0 + 48) - 3))
        else:
            at = rng.randrange(0, min(len(out) - 4, 64))
        value = rng.choice((0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 80_000_000, 30000 << 16,
                            rng.getrandbits(32)))
        out[at:at + 4] = struct.pack(">I", value)
    if how in ("flip", "mixed"):
        for _ in range(rng.randint(1, 40)):
            i = rng.randrange(len(out))
            out[i] ^= 1 << rng.randrange(8)
    if how == "truncate":
        out = out[: rng.randrange(1, len(out))]
    return how, bytes(out)


@pytest.mark.gen_test(timeout=600)
async def test_malformed_uploads_never_break_the_probe(ctx, testdata, tmp_path):
    rng = random.Random(SEED)
    originals = sources(testdata, tmp_path)
    limits = ctx.uploads.probe_limits(_free_user())
    outcomes: dict[str, int] = {}
    before = reset_peak_rss()
    for kind in ("image", "video"):
        for i in range(CASES):
            how, data = mutate(rng, kind, rng.choice(originals[kind]))
            path = tmp_path / f"{kind}-{i}"
            path.write_bytes(data)
            try:
                await ctx.uploads.run_io(ctx.uploads._probe, kind, path, limits)
                outcome = "accepted"
            except ServiceError as exc:
                assert exc.code in (413, 415), (kind, i, how, exc.code, exc.msg)
                assert exc.reason and exc.msg, (kind, i, how)
                outcome = f"{exc.code} {exc.reason}"
            outcomes[f"{kind} {outcome}"] = outcomes.get(f"{kind} {outcome}", 0) + 1
            path.unlink()
    grown = peak_rss() - before
    print("fuzz outcomes:", dict(sorted(outcomes.items())), f"peak RSS +{grown / MB:.0f} MB")
    assert grown < 300 * MB
    assert sum(outcomes.values()) == 2 * CASES
    # the run reached both sides: some malformed files still read, most are refused
    assert any(k.endswith("accepted") for k in outcomes)
    assert any(" 415 " in k for k in outcomes)


def _free_user():
    from conf import FREE
    from services.accounts import User

    return User(id=0, username="fuzz", usertype=FREE)
