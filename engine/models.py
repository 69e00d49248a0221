"""Lazy, process-wide cache of the dlib models.

Loading the 68-point predictor takes most of a second, so each model is loaded
once per process and shared by every task (and thread) in it. The model folder
is located without importing ``face_recognition_models``: that package imports
``pkg_resources``, which is missing or broken on current setuptools.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import tempfile
import threading
from collections.abc import Callable
from typing import Any

from .errors import EngineError

_lock = threading.Lock()
_cache: dict[str, Any] = {}


@functools.lru_cache(maxsize=1)
def model_dir() -> str:
    """Folder holding the ``.dat`` files of ``face_recognition_models``."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise EngineError("the face models are not installed (face_recognition_models)")
    return os.path.join(list(spec.submodule_search_locations)[0], "models")


def _load(name: str, factory) -> Any:
    model = _cache.get(name)  # lock-free fast path: called once per frame
    if model is not None:
        return model
    with _lock:
        model = _cache.get(name)
        if model is None:
            model = factory()
            _cache[name] = model
        return model


def face_detector():
    """dlib's HOG frontal face detector (fast; used on every detection frame)."""
    return _load("hog", _hog_detector)


def cache_dir() -> str:
    """Where derived model files are kept ($FACESWAP_CACHE_DIR, else the user's cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.environ.get("FACESWAP_CACHE_DIR") or os.path.join(base, "faceswap")


def _hog_detector():
    """The built-in detector, through a binary copy of it in :func:`cache_dir`.

    ``get_frontal_face_detector`` rebuilds the detector from dlib's embedded
    text form (measured: 0.25-0.28 s, a third of a CLI run's start-up); the
    same detector saved in dlib's binary format loads in about 2 ms. The copy
    is written once per dlib version; if it cannot be written (read-only
    home), the slow path is simply taken every time.
    """
    import dlib

    name = f"frontal_face_detector-{dlib.__version__}.svm"
    try:
        return dlib.fhog_object_detector(os.path.join(cache_dir(), name))
    except (RuntimeError, OSError):
        pass  # not written yet, or unreadable: rebuild it below
    detector = dlib.get_frontal_face_detector()
    _store(name, detector.save)
    return detector


def _store(name: str, write: Callable[[str], None]) -> str | None:
    """Put a derived model file into :func:`cache_dir` by ``write(path)``.

    Written to a temporary name and renamed, so readers never see a
    half-written file. Returns its path, or None if it could not be stored.
    """
    folder = cache_dir()
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".part")
        os.close(fd)
        try:
            write(tmp)
            os.replace(tmp, os.path.join(folder, name))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except (OSError, RuntimeError):
        return None
    return os.path.join(folder, name)


def cnn_face_detector():
    """dlib's MMOD CNN detector: slow, used only as a fallback on the source image."""
    import dlib

    return _load("cnn", lambda: dlib.cnn_face_detection_model_v1(
        os.path.join(model_dir(), "mmod_human_face_detector.dat")))


def shape_predictor(levels: int | None = None):
    """The 68-landmark predictor used on every frame that has a face.

    ``levels``: use only the first ``levels`` of its 15 cascade levels (see
    :mod:`engine.dlibfile`); None for all of them.
    """
    if levels is None or levels >= 15:
        return _load("sp68", lambda: _predictor(None))
    return _load(f"sp68-{levels}", lambda: _predictor(levels))  # called per face: cache first


def _predictor(levels: int | None):
    import dlib

    full = os.path.join(model_dir(), "shape_predictor_68_face_landmarks.dat")
    return dlib.shape_predictor(full) if levels is None else _short_predictor(full, levels)


def _short_predictor(full: str, levels: int):
    """The predictor cut to its first ``levels`` levels, through a copy in :func:`cache_dir`.

    Each level costs about 0.07 ms a face and 0.02 s of loading (the full model:
    0.53 s, ~1.5 ms a face on a slow 2-core machine). ``balanced`` keeps 13: on
    talk_480sq's strong expressions the tracker's mouth opening then lies 0.022 of
    the mouth width from the full model's (median over the clip; 10 levels: 0.040)
    and its eye openings correlate 0.80 with it (10 levels: 0.75). Making the copy
    takes ~1.5 s, once per dlib version; if it cannot be stored, it is made in a
    temporary file each time, and if the model cannot be read that way, the full
    model is used.
    """
    import dlib

    from .dlibfile import truncate_shape_predictor

    name = f"shape_predictor_68-{levels}of15-{os.path.getsize(full)}-{dlib.__version__}.dat"
    try:
        return dlib.shape_predictor(os.path.join(cache_dir(), name))
    except (RuntimeError, OSError):
        pass  # not made yet, or unreadable: make it below
    try:
        with open(full, "rb") as fh:
            data = truncate_shape_predictor(fh.read(), levels)
    except ValueError:
        return dlib.shape_predictor(full)

    def write(path: str) -> None:
        with open(path, "wb") as out:
            out.write(data)

    stored = _store(name, write)
    if stored is not None:
        return dlib.shape_predictor(stored)
    try:
        with tempfile.NamedTemporaryFile(suffix=".dat") as fh:
            fh.write(data)
            fh.flush()
            return dlib.shape_predictor(fh.name)
    except (OSError, RuntimeError):
        return dlib.shape_predictor(full)


def face_encoder():
    """dlib's ResNet face descriptor (benchmark identity figures and re-identification)."""
    import dlib

    return _load("resnet", lambda: dlib.face_recognition_model_v1(
        os.path.join(model_dir(), "dlib_face_recognition_resnet_model_v1.dat")))
