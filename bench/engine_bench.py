"""Engine benchmark: the swap's whole process against the ffmpeg CLI's, timed in the same run.

For every video in ``<repo>/../shared/testdata`` (or $FACESWAP_TESTDATA):

* baseline: ``ffmpeg -i V -c:v libx264 -preset veryfast -c:a copy OUT``, the whole
  process (Debian's ``ffmpeg``; install it, see the README);
* swap: ``python -m engine swap`` as a user runs it, the whole process (model
  loading included);
* runs alternate (T S T S ... T, ``--repeat N`` swaps), caches warm; best and
  median frames per second of each, and the ratio of the bests (and medians);
* the time split per stage reported by the engine (``--stats``).

``--quality`` adds the looks figures of ``bench/looks.py`` for every clip with each
portrait photo (``--images``): lm_err, ear_corr, mar_err, sharp_ratio, blotch, id_win,
flicker, PSNR of the frames left unswapped, and a contact sheet of face crops at the
frames that matter (blink, widest eyes, widest mouth, strongest turn) in bench/out/.

Figures only; nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

import av
import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from engine.detect import detect_faces  # noqa: E402
from engine.pipeline import QUALITIES  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import looks  # noqa: E402  (bench/looks.py)

OUT = os.path.join(ROOT, "bench", "out")
FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
PORTRAITS = "face_obama.jpg,face_woman.jpg,face_bw_man.jpg"
VIDEO_EXT = (".mp4", ".mov", ".mkv", ".webm", ".avi")


def testdata() -> str:
    return os.environ.get("FACESWAP_TESTDATA") or os.path.join(ROOT, "..", "shared", "testdata")


def transcode(src: str, dst: str) -> tuple[int, float, float]:
    """The ffmpeg CLI transcode, whole process: (frames, wall seconds, CPU seconds)."""
    cmd = [FFMPEG, "-nostdin", "-y", "-v", "error", "-i", src, "-c:v", "libx264",
           "-preset", "veryfast", "-c:a", "copy", dst]
    t0 = time.monotonic()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, capture_output=True)
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with av.open(dst) as c:
        n = c.streams.video[0].frames or sum(1 for _ in c.demux(c.streams.video[0]))
    return n, wall, (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)


def run_swap(image: str | None, video: str, out: str, quality: str, extra: list[str],
             face_video: str | None = None) -> dict:
    face = ["--face-video", face_video] if face_video else ["--image", image]
    cmd = [sys.executable, "-m", "engine", "swap", *face, "--video", video,
           "--out", out, "--quality", quality, "--stats"] + extra
    t0 = time.monotonic()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    result["cpu"] = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    return result


def read_frames(path: str, limit: int | None = None) -> list[np.ndarray]:
    out = []
    with av.open(path) as c:
        for f in c.decode(video=0):
            if limit is not None and len(out) >= limit:
                break
            out.append(f.to_ndarray(format="bgr24"))
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def quality_figures(image: str, fin: list[np.ndarray], out: str, unswapped: list[int],
                    name: str, samples: int) -> dict:
    """The looks figures of one swap (see bench/looks.py) and its contact sheet."""
    fout = read_frames(out)
    found = looks.measure(fin, fout, cv2.imread(image), samples=samples)
    fig = dict(found.figures)
    ps = [psnr(fin[i], fout[i]) for i in unswapped if i < min(len(fin), len(fout))]
    fig["faceless_frames"] = len(ps)
    fig["faceless_psnr_min_db"] = round(min(ps), 2) if ps else None
    picks = looks.key_frames(found)
    fig["key_frames"] = picks
    cv2.imwrite(os.path.join(OUT, f"sheet_{name}.jpg"),
                looks.contact_sheet(fin, fout, found, picks))
    return fig


def hand_clip(src: str, dst: str, frames: int = 90) -> list[np.ndarray]:
    """A composite of ``src``: a skin-coloured hand (palm and four fingers, shaded)
    passes in front of the face from left to right. Returns the hand masks."""
    masks = []
    with av.open(src) as ic:
        iv = ic.streams.video[0]
        rate = iv.average_rate
        with av.open(dst, "w") as oc:
            ov = oc.add_stream("libx264", rate=rate)
            ov.options = {"crf": "12", "preset": "veryfast"}
            for i, f in enumerate(ic.decode(iv)):
                if i >= frames:
                    break
                img = f.to_ndarray(format="bgr24")
                h, w = img.shape[:2]
                if i == 0:
                    ov.width, ov.height, ov.pix_fmt = w, h, "yuv420p"
                m = np.zeros((h, w), np.uint8)
                cx = int(w * (0.1 + 0.8 * i / frames))
                cy, r = int(h * 0.55), int(min(w, h) * 0.11)
                cv2.ellipse(m, (cx, cy), (r, int(r * 1.2)), 0, 0, 360, 255, -1)
                for k in range(4):
                    fx = cx - r + k * (2 * r // 3)
                    cv2.line(m, (fx, cy), (fx + r // 4, cy - int(2.3 * r)), 255, max(3, r // 3))
                shade = np.linspace(0.85, 1.1, w, dtype=np.float32)[None, :, None]
                hand = np.clip(np.array([120, 150, 205], np.float32) * shade, 0, 255)
                a = cv2.GaussianBlur(m, (0, 0), 1.5)[..., None].astype(np.float32) / 255
                img = (img * (1 - a) + hand * a).astype(np.uint8)
                masks.append(m > 128)
                frame = av.VideoFrame.from_ndarray(img, format="bgr24")
                for p in ov.encode(frame):
                    oc.mux(p)
            for p in ov.encode(None):
                oc.mux(p)
    return masks


def cases(data: str, quality: str) -> None:
    """Cases made from the shared media: a hand passing the face, and photo variants."""
    folder = os.path.join(OUT, "cases")
    os.makedirs(folder, exist_ok=True)
    clip = os.path.join(folder, "hand_talk_720p.mp4")
    masks = hand_clip(os.path.join(data, "talk_720p.mp4"), clip)
    photo = os.path.join(data, "face_obama.jpg")
    out = os.path.join(folder, "swap_hand.mp4")
    run_swap(photo, clip, out, quality, [])
    fin, fout = read_frames(clip), read_frames(out)
    n = min(len(fin), len(fout), len(masks))
    diff = [float(np.abs(fin[i].astype(np.int16) - fout[i])[masks[i]].mean())
            for i in range(n) if masks[i].any()]
    # The same on the hand's part inside the face box (found in the clip without the
    # hand): the whole hand's mean counts the frames and pixels where it is beside the face.
    on_face = []
    for i, img in enumerate(read_frames(os.path.join(data, "talk_720p.mp4"), n)):
        boxes = detect_faces(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
        if not boxes:
            continue
        x0, y0, x1, y1 = (max(int(v), 0) for v in boxes[0])
        m = masks[i][y0:y1, x0:x1]
        if m.sum() >= 500:
            d = np.abs(fin[i].astype(np.int16) - fout[i])[y0:y1, x0:x1].max(2)[m]
            on_face.append((float(d.mean()), float((d > 20).mean())))
    found = looks.measure(fin, fout, cv2.imread(photo), samples=10)
    print(f"  hand passing the face: mean change on the hand {np.mean(diff):.1f} grey levels "
          f"(0 = the hand stays in front), worst frame {max(diff):.1f}; inside the face box "
          f"({len(on_face)} frames): mean {np.mean([a for a, _ in on_face]):.1f}, worst frame "
          f"{max(a for a, _ in on_face):.1f}, at most {100 * max(b for _, b in on_face):.0f} % of "
          f"its pixels changed by over 20;", json.dumps(found.figures))
    cv2.imwrite(os.path.join(folder, "sheet_hand.jpg"), looks.contact_sheet(
        fin, fout, found, {f"hand {i}": i for i in (30, 45, 60)}))
    woman = cv2.imread(os.path.join(data, "face_woman.jpg"))
    with av.open(os.path.join(data, "talk_720p.mp4")) as c:
        turned = next(c.decode(video=0)).to_ndarray(format="bgr24")
    variants = {"turned": turned, "blurred": cv2.GaussianBlur(woman, (0, 0), 4),
                "small": cv2.resize(woman, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA),
                "tiny": cv2.resize(woman, None, fx=0.1, fy=0.1, interpolation=cv2.INTER_AREA),
                "group": cv2.imread(os.path.join(data, "two_people.jpg")),
                "teeth": cv2.imread(photo)}
    target = os.path.join(data, "talk_480sq_33s.mp4")
    tin = read_frames(target, 90)
    for name, img in variants.items():
        path = os.path.join(folder, f"photo_{name}.png")
        cv2.imwrite(path, img)
        out = os.path.join(folder, f"swap_{name}.mp4")
        try:
            res = run_swap(path, target, out, quality, ["--max-frames", "90"])
        except RuntimeError as exc:
            print(f"  photo {name}: refused: {exc}")
            continue
        tout = read_frames(out)
        found = looks.measure(tin, tout, img, samples=10, every=3)
        print(f"  photo {name}: warnings {[w['code'] for w in res['warnings']]};",
              json.dumps(found.figures))
        cv2.imwrite(os.path.join(folder, f"sheet_{name}.jpg"),
                    looks.contact_sheet(tin, tout, found, looks.key_frames(found)))


def face_library(data: str, face_video: str, target: str, seconds: float, quality: str,
                 samples: int) -> None:
    """A face video as the face against one frame of it as the photo (``--face-video``).

    Same looks figures as ``--quality`` on the first ``seconds`` of ``target``, the cost
    per frame of both runs (CPU of the whole process over the frames, and the time to
    prepare the face), and contact sheets across the first changes of view into
    ``artifacts/``: for each change the frame before it, and frames 1, 3 and 6 after
    (the cross-fade is over, see engine.library.FADE_FRAMES), photo run and video run side
    by side.
    """
    folder = os.path.join(ROOT, "artifacts")
    os.makedirs(folder, exist_ok=True)
    for old in os.listdir(folder):  # an earlier run's sheets
        if old.startswith("library_change_"):
            os.remove(os.path.join(folder, old))
    fv, video = os.path.join(data, face_video), os.path.join(data, target)
    photo = os.path.join(OUT, "face_video_frame0.png")
    with av.open(fv) as c:
        cv2.imwrite(photo, next(c.decode(video=0)).to_ndarray(format="bgr24"))
    with av.open(video) as c:
        rate = float(c.streams.video[0].average_rate or 25)
    n = int(round(seconds * rate))
    fin = read_frames(video, n)
    ref = cv2.imread(photo)
    runs = {}
    for name, kw in (("photo", {"image": photo}), ("video", {"image": None, "face_video": fv})):
        out = os.path.join(OUT, f"library_{name}.mp4")
        image = kw.pop("image")
        res = run_swap(image, video, out, quality, ["--max-frames", str(n)], **kw)
        fout = read_frames(out)
        found = looks.measure(fin, fout, ref, samples=samples)
        fig = dict(found.figures)
        fig["cpu_ms_per_frame"] = round(1000 * res["cpu"] / res["frames"], 1)
        fig["wall_s"] = round(res["wall"], 2)
        fig["face_prepare_s"] = res["stages"]["source"]
        fig["swap_stage_ms_per_frame"] = round(1000 * res["stages"]["swap"] / res["frames"], 2)
        # The run's wall time without the face's preparation, per frame.
        fig["wall_ms_per_frame_after_face"] = round(
            1000 * (res["wall"] - res["stages"]["source"]) / res["frames"], 1)
        if name == "video":
            fig["face_views"] = res.get("face_views")
            fig["view_changes"] = res.get("view_changes")
        fig["warnings"] = [w["code"] for w in res.get("warnings", [])]
        runs[name] = (fout, found, res, fig)
        print(f"  {name}: {json.dumps(fig)}")
    (pout, pfound, _, pfig), (vout, vfound, vres, vfig) = runs["photo"], runs["video"]
    for k, (at, view) in enumerate(vres.get("view_changes_at", [])[:4]):
        picks = {f"before {view}": at - 1, "+1": at + 1, "+3": at + 3, "+6": at + 6}
        picks = {lab: i for lab, i in picks.items() if 0 <= i < min(len(vout), len(pout))}
        sheet = np.hstack([looks.contact_sheet(fin, pout, pfound, picks),
                           np.full((600, 8, 3), 255, np.uint8)[: 2 * 300],
                           looks.contact_sheet(fin, vout, vfound, picks)])
        cv2.imwrite(os.path.join(folder, f"library_change_{k}_frame{at}.png"), sheet)
    print("\nface video vs one frame of it as the photo "
          f"({target}, first {seconds:g} s = {len(fin)} frames):")
    for key in ("lm_err", "mar_err", "ear_corr", "id_win", "flicker", "sharp_ratio", "blotch",
                "cpu_ms_per_frame", "swap_stage_ms_per_frame", "wall_ms_per_frame_after_face",
                "face_prepare_s", "wall_s", "face_views", "view_changes"):
        print(f"  {key:24s} photo {pfig.get(key)!s:>8s}   video {vfig.get(key)!s:>8s}")
    print("  contact sheets (left: photo, right: video; top: input, bottom: output) in "
          "artifacts/library_change_*.png")


def _fps(runs: list[tuple[int, float]]) -> tuple[float, float]:
    """(best, median) frames per second of (frames, seconds) runs."""
    f = [n / t for n, t in runs]
    return max(f), statistics.median(f)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quality", action="store_true", help="also the looks figures")
    ap.add_argument("--engine-quality", default="balanced", choices=sorted(QUALITIES))
    ap.add_argument("--image", default="face_obama.jpg", help="photo of the timed runs")
    ap.add_argument("--images", default=PORTRAITS,
                    help="photos (comma-separated, in testdata) of the --quality figures")
    ap.add_argument("--only", default=None, help="substring filter on video names")
    ap.add_argument("--samples", type=int, default=20, help="frames for the identity figure")
    ap.add_argument("--cases", action="store_true",
                    help="only the made-up cases (a hand passing the face, photo variants)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="swap runs per video; the baseline runs once more, interleaved")
    ap.add_argument("--face-video", default=None,
                    help="with --quality: this video (in testdata) as the face, against its "
                         "first frame as the photo, swapped into --only's clip")
    ap.add_argument("--seconds", type=float, default=10.0,
                    help="with --face-video: swap the first this many seconds of the clip")
    args = ap.parse_args()
    data = testdata()
    if not os.path.isdir(data):
        print(f"test data folder not found: {data} (set FACESWAP_TESTDATA)", file=sys.stderr)
        return 1
    if shutil.which(FFMPEG) is None:
        print("the ffmpeg command is needed for the baseline (Debian: apt-get install ffmpeg)",
              file=sys.stderr)
        return 1
    if args.cases:
        cases(data, args.engine_quality)
        return 0
    if args.face_video:
        os.makedirs(OUT, exist_ok=True)
        face_library(data, args.face_video, args.only or "talk_480sq_33s.mp4", args.seconds,
                     args.engine_quality, args.samples)
        return 0
    image = os.path.join(data, args.image)
    videos = sorted(f for f in os.listdir(data) if f.lower().endswith(VIDEO_EXT))
    if args.only:
        videos = [v for v in videos if args.only in v]
    os.makedirs(OUT, exist_ok=True)
    print(f"engine benchmark: quality={args.engine_quality} photo={args.image} "
          f"cores={os.cpu_count()} baseline: ffmpeg -i V -c:v libx264 -preset veryfast -c:a copy")
    rows = []
    for name in videos:
        video = os.path.join(data, name)
        stem = os.path.splitext(name)[0]
        tpath = os.path.join(OUT, f"transcode_{stem}.mp4")
        out = os.path.join(OUT, f"swap_{stem}.mp4")
        # Warm caches (file pages, the engine's derived models) before timing.
        transcode(video, tpath)
        run_swap(image, video, out, args.engine_quality, ["--max-frames", "5"])
        # Baseline and swap alternate (T S T S ... T): a load spike on a shared
        # machine then slows one run, not the figure.
        tcodes = [transcode(video, tpath)]
        swaps = []
        for _ in range(args.repeat):
            swaps.append(run_swap(image, video, out, args.engine_quality, []))
            tcodes.append(transcode(video, tpath))
        r = min(swaps, key=lambda x: x["wall"])
        t_best, t_med = _fps([(n, t) for n, t, _ in tcodes])
        s_best, s_med = _fps([(x["frames"], x["wall"]) for x in swaps])
        tn, tc = tcodes[0][0], min(c for _, _, c in tcodes)
        row = {"video": name, "frames": r["frames"], "swapped_frames": r["swapped_frames"],
               "ffmpeg_fps_best": round(t_best, 1), "ffmpeg_fps_median": round(t_med, 1),
               "ffmpeg_fps_runs": [round(n / t, 1) for n, t, _ in tcodes],
               "swap_fps_best": round(s_best, 1), "swap_fps_median": round(s_med, 1),
               "swap_fps_runs": [round(x["frames"] / x["wall"], 1) for x in swaps],
               "ratio_best": round(s_best / t_best, 3), "ratio_median": round(s_med / t_med, 3),
               "process_wall_s": round(r["wall"], 2),
               # CPU seconds per frame (all threads and processes).
               "ffmpeg_cpu_ms_per_frame": round(1000 * tc / tn, 2),
               "swap_cpu_ms_per_frame": round(1000 * r["cpu"] / r["frames"], 2),
               "warnings": [w["code"] for w in r.get("warnings", [])],
               "stages_s": r["stages"]}
        print(f"\n{name}: swap {s_best:.1f} fps best, {s_med:.1f} median (runs "
              f"{row['swap_fps_runs']}); ffmpeg {t_best:.1f} best, {t_med:.1f} median (runs "
              f"{row['ffmpeg_fps_runs']}) -> ratio {s_best / t_best:.2f} best, "
              f"{s_med / t_med:.2f} median; swapped {r['swapped_frames']}/{r['frames']}")
        print(f"  CPU per frame: swap {row['swap_cpu_ms_per_frame']} ms, "
              f"ffmpeg {row['ffmpeg_cpu_ms_per_frame']} ms")
        print("  stage seconds (sum over frames, threads overlap):", json.dumps(r["stages"]))
        if args.quality:
            fin = read_frames(video)
            row["looks"] = {}
            for photo in args.images.split(","):
                pstem = os.path.splitext(photo)[0]
                pout = os.path.join(OUT, f"swap_{stem}_{pstem}.mp4")
                res = run_swap(os.path.join(data, photo), video, pout, args.engine_quality, [])
                q = quality_figures(os.path.join(data, photo), fin, pout, res["unswapped"],
                                    f"{stem}_{pstem}", args.samples)
                q["photo_warnings"] = [w["code"] for w in res.get("warnings", [])]
                row["looks"][photo] = q
                print(f"  looks with {photo}:", json.dumps(q))
            del fin
        rows.append(row)
    with open(os.path.join(OUT, "results.json"), "w") as fh:
        json.dump(rows, fh, indent=1)
    print("\nsummary (ratio = swap fps / ffmpeg CLI fps, whole processes, same run):")
    for r in rows:
        print(f"  {r['video']:32s} {r['swap_fps_best']:7.1f} / {r['ffmpeg_fps_best']:7.1f} fps"
              f" = {r['ratio_best']:.2f} best, {r['ratio_median']:.2f} median")
        for photo, q in r.get("looks", {}).items():
            print(f"    {photo:18s} lm_err {q.get('lm_err')}  ear_corr {q.get('ear_corr')}  "
                  f"mar_err {q.get('mar_err')}  sharp {q.get('sharp_ratio')}  "
                  f"blotch {q.get('blotch')}  id_win {q.get('id_win')}  "
                  f"flicker {q.get('flicker')}  faceless PSNR min {q.get('faceless_psnr_min_db')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
