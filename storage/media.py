"""The media folder layout and the one function that turns a client path into a file.

Layout under the data dir: ``media/<username>/<stored name>`` for uploads and results,
``thumbs/<username>/<stored name>.jpg`` for their thumbnails, ``tmp/`` for bytes in
flight (same file system, so finishing is an atomic rename).
Client paths are ``<username>/<name>``; :meth:`MediaStore.resolve` refuses anything
that could leave the user's folder: ``..``, absolute paths, encoded or doubled
separators, hidden names, symlinks, and other users' folders.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import stat
import unicodedata
from pathlib import Path

_CHARS = r"A-Za-z0-9_\-\u3400-\u4dbf\u4e00-\u9fff"
NAME_RE = re.compile(rf"^[{_CHARS}][{_CHARS}.]{{0,127}}$")  # no hidden or temp (dot) names
USER_RE = re.compile(rf"^[{_CHARS}.]{{3,32}}$")


class PathRefused(Exception):
    """A client path that does not name a file the caller may have: ``code`` is 400/403/404."""

    def __init__(self, msg: str, code: int) -> None:
        super().__init__(msg)
        self.msg = msg
        self.code = code


def sanitise_stem(name: str, fallback: str = "file") -> str:
    """A safe file stem from a client's file name: letters, digits, CJK, ``_-.``; no dots first."""
    stem = Path(unicodedata.normalize("NFKC", name).replace("\\", "/")).name
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    stem = re.sub(r"[^A-Za-z0-9_\-\u3400-\u4dbf\u4e00-\u9fff]+", "_", stem).strip("_.-")
    return stem[:60] or fallback


class MediaStore:
    def __init__(self, data_dir: Path) -> None:
        self.root = (Path(data_dir) / "media").resolve()
        self.tmp = (Path(data_dir) / "tmp").resolve()
        self.thumbs = (Path(data_dir) / "thumbs").resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.thumbs.mkdir(parents=True, exist_ok=True)

    def user_dir(self, username: str) -> Path:
        if not USER_RE.match(username) or username.startswith("."):
            raise PathRefused("invalid user folder", 400)
        path = self.root / username
        path.mkdir(exist_ok=True)
        return path

    def temp_path(self, suffix: str = ".part") -> Path:
        """A fresh, unused path under tmp/ (nothing is created)."""
        return self.tmp / f"{secrets.token_hex(12)}{suffix}"

    def store(self, temp: Path, username: str, original_name: str, extension: str) -> str:
        """Move a checked temp file into the user's folder under a unique name.

        Returns the client path ``<username>/<stored name>``. ``os.link`` + unlink makes
        the name claim atomic: an existing file is never overwritten.
        """
        folder = self.user_dir(username)
        stem = sanitise_stem(original_name)
        for _ in range(10):
            name = f"{stem}-{secrets.token_hex(4)}{extension}"
            try:
                os.link(temp, folder / name)
            except FileExistsError:
                continue
            os.unlink(temp)
            return f"{username}/{name}"
        raise OSError("could not find a free file name")

    def place(self, temp: Path, filepath: str) -> Path:
        """Move ``temp`` to the exact client path ``filepath`` (results named by the user)."""
        username, name = self.split(filepath)
        target = self.user_dir(username) / name
        os.replace(temp, target)
        return target

    @staticmethod
    def split(filepath: str) -> tuple[str, str]:
        """``<username>/<name>`` → its two parts, refusing every other shape."""
        if not isinstance(filepath, str) or "\x00" in filepath or "%" in filepath \
                or "\\" in filepath:
            raise PathRefused("invalid path", 400)
        parts = filepath.split("/")
        if len(parts) != 2 or not USER_RE.match(parts[0]) or not NAME_RE.match(parts[1]) \
                or ".." in parts[1]:
            raise PathRefused("invalid path: expected <username>/<file name>", 400)
        return parts[0], parts[1]

    def resolve(self, filepath: str, username: str, is_admin: bool = False) -> Path:
        """The file behind ``filepath`` if ``username`` may read it, else :class:`PathRefused`."""
        return self._resolve_in(self.root, filepath, username, is_admin)

    def _resolve_in(self, root: Path, filepath: str, username: str, is_admin: bool) -> Path:
        """``root/<owner>/<name>`` if it is a regular file of that folder (no link out of
        it) and ``username`` may read it: the one check of media and thumbnails."""
        owner, name = self.split(filepath)
        if owner != username and not is_admin:
            raise PathRefused("this file belongs to another user", 403)
        path = root / owner / name
        try:
            info = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise PathRefused("no such file", 404) from None
        if not stat.S_ISREG(info.st_mode) or path.resolve().parent != root / owner:
            raise PathRefused("no such file", 404)
        return path

    def exists(self, filepath: str) -> bool:
        owner, name = self.split(filepath)
        return os.path.lexists(self.root / owner / name)

    def remove(self, filepath: str) -> None:
        owner, name = self.split(filepath)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.root / owner / name)

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.root))

    # -- thumbnails: thumbs/<username>/<stored name>.jpg, one per file -------------------
    @staticmethod
    def thumb_name(filepath: str) -> str:
        """The client path of ``filepath``'s thumbnail (``alice/clip-1a2b.mp4.jpg``)."""
        owner, name = MediaStore.split(filepath)
        return f"{owner}/{name}.jpg"

    def thumb_path(self, filepath: str) -> Path:
        """Where the thumbnail of ``filepath`` is (or goes); creates the user's folder."""
        owner, name = self.split(filepath)
        if not USER_RE.match(owner) or owner.startswith("."):
            raise PathRefused("invalid user folder", 400)
        folder = self.thumbs / owner
        folder.mkdir(exist_ok=True)
        return folder / f"{name}.jpg"

    def resolve_thumb(self, thumbpath: str, username: str, is_admin: bool = False) -> Path:
        """The thumbnail behind a client path, with the same checks as :meth:`resolve`."""
        return self._resolve_in(self.thumbs, thumbpath, username, is_admin)

    def remove_thumb(self, filepath: str) -> None:
        owner, name = self.split(filepath)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.thumbs / owner / f"{name}.jpg")

    def remove_user(self, username: str) -> None:
        """Every file of ``username``: media and thumbnail folders (account deletion)."""
        if not USER_RE.match(username) or username.startswith("."):
            return  # a name that can have no folder (user_dir refuses it) has no files
        for root in (self.root, self.thumbs):
            shutil.rmtree(root / username, ignore_errors=True)
