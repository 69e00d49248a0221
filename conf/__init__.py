"""Every setting of the service, with its default and the reason for it.

Settings are read once, at start-up, from three layers (later wins):
the defaults below, ``FACESWAP_<NAME>`` environment variables, then command-line
flags. The resulting :class:`Settings` object is handed to everything that needs
it through the application context; nothing else reads the environment.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: User types from the contract: free, basic member, premium member, administrator.
FREE, BASIC, PREMIUM, ADMIN = 1, 100, 2000, 3000
USERTYPES = (FREE, BASIC, PREMIUM, ADMIN)

MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What one user type may do; enforced server-side on upload and on faceswap."""

    upload_bytes: int  #: largest single upload
    video_seconds: float  #: longest video (or segment of one) a task swaps, as timestamps span
    output_height: int  #: swap output is scaled down to at most this height
    concurrent_tasks: int  #: queued + running tasks at once
    photo_pixels: int = 25_000_000  #: largest photo (width x height), read from its header
    video_pixels: int = 1920 * 1080  #: largest video picture (width x height)
    open_uploads: int = 5  #: unfinished resumable uploads at once
    storage_bytes: int = 2048 * MB  #: uploads + results kept at once (the storage quota)
    unfinished_tasks: int = 20  #: queued + running tasks one user may have at once
    #: longest video accepted at upload: a task swaps a segment of it (``start_s``/
    #: ``end_s``) of at most ``video_seconds``, so a long video can be used in part
    upload_seconds: float = 600.0

    @property
    def upload_video_seconds(self) -> float:
        """The upload length limit, never below the segment limit ``video_seconds``."""
        return max(self.upload_seconds, self.video_seconds)


#: The per-usertype limits table. Free users get enough to try the service;
#: administrators are only bounded by what one server can sensibly hold.
#: Picture limits bound the work and memory of one swap: a 16000x16000 video costs
#: 3.5 GB and 1.5 s a frame, so the input resolution follows the output tier.
#: The storage quota (uploads and results) holds at least ten of the tier's largest
#: uploads; a user who wants more room deletes old files (``/video/delete_file``).
LIMITS: dict[int, Limits] = {
    FREE: Limits(upload_bytes=200 * MB, video_seconds=60, output_height=720, concurrent_tasks=1,
                 photo_pixels=25_000_000, video_pixels=1920 * 1080, open_uploads=5,
                 storage_bytes=2048 * MB, unfinished_tasks=20, upload_seconds=600),
    BASIC: Limits(upload_bytes=1024 * MB, video_seconds=300, output_height=1080,
                  concurrent_tasks=2, photo_pixels=40_000_000, video_pixels=2560 * 1440,
                  open_uploads=10, storage_bytes=20 * 1024 * MB, unfinished_tasks=20,
                  upload_seconds=3600),
    PREMIUM: Limits(upload_bytes=4096 * MB, video_seconds=1800, output_height=2160,
                    concurrent_tasks=4, photo_pixels=60_000_000, video_pixels=3840 * 2160,
                    open_uploads=20, storage_bytes=100 * 1024 * MB, unfinished_tasks=20,
                    upload_seconds=7200),
    ADMIN: Limits(upload_bytes=8192 * MB, video_seconds=7200, output_height=4320,
                  concurrent_tasks=8, photo_pixels=100_000_000, video_pixels=7680 * 4320,
                  open_uploads=50, storage_bytes=500 * 1024 * MB, unfinished_tasks=50,
                  upload_seconds=14400),
}


def limits_for(usertype: int) -> Limits:
    """Limits of ``usertype``; an unknown type gets the free tier, never more."""
    return LIMITS.get(usertype, LIMITS[FREE])


@dataclass(frozen=True)
class Settings:
    """The service configuration. Field metadata ``help`` documents each setting."""

    host: str = field(default="127.0.0.1", metadata={
        "help": "address to listen on; loopback by default so nothing is exposed by accident"})
    port: int = field(default=8888, metadata={"help": "HTTP port"})
    data_dir: str = field(default="var", metadata={
        "help": "root of everything the service writes: db/, media/, tmp/"})
    mongo_url: str = field(default="", metadata={
        "help": "MongoDB URL; empty starts the embedded secantusdb server under <data-dir>/db"})
    db_name: str = field(default="faceswap", metadata={"help": "database name"})
    workers: int = field(default=os.cpu_count() or 1, metadata={
        "help": "size of the swap process pool (default: the CPU count)"})
    executor: str = field(default="local", metadata={
        "help": "where swaps run: 'local' (the process pool above) or dask://host:port, a "
                "Dask scheduler whose workers mount the data dir at the same path "
                "(docs/scaling.md)"})
    cookie_secret: str = field(default="", metadata={
        "help": "secret signing session cookies; empty: generated once and kept in "
                "<data-dir>/cookie_secret so sessions survive restarts"})
    secure_cookies: bool = field(default=False, metadata={
        "help": "mark cookies Secure; turn on when served over HTTPS"})
    session_days: float = field(default=7.0, metadata={
        "help": "lifetime of a login session and its bearer token"})
    bcrypt_rounds: int = field(default=12, metadata={
        "help": "bcrypt cost factor (2^N rounds); 12 takes ~0.25 s per hash here"})
    db_timeout_ms: int = field(default=3000, metadata={
        "help": "how long a request waits for the database before it fails with 503"})
    login_failures_per_user: int = field(default=5, metadata={
        "help": "failed logins for one username within the window before 429"})
    login_failures_per_address: int = field(default=20, metadata={
        "help": "failed logins from one address within the window before 429"})
    login_window_minutes: float = field(default=15.0, metadata={
        "help": "the login throttling window"})
    result_retention_days: float = field(default=0.0, metadata={
        "help": "delete finished results this many days after they were made; 0 keeps them"})
    tus_expiry_hours: float = field(default=24.0, metadata={
        "help": "unfinished resumable uploads are deleted this long after they were created"})
    probe_memory_mb: int = field(default=2048, metadata={
        "help": "address-space limit of the child process that reads each upload's headers "
                "and first frame; a file that needs more is refused (413 probe_limit)"})
    probe_timeout_s: float = field(default=120.0, metadata={
        "help": "wall-clock limit of one upload probe (it demuxes the whole video)"})
    max_frame_rate: float = field(default=240.0, metadata={
        "help": "frames per second of timestamps a video may have; more means timestamps "
                "that do not advance (a long video posing as a short one): 415"})
    samples_per_second: int = field(default=1000, metadata={
        "help": "index entries (all tracks) an MP4 may claim per second of the user's length "
                "limit, checked before FFmpeg allocates them"})
    worker_memory_mb: int = field(default=8192, metadata={
        "help": "address-space limit of each swap worker process; a task that needs more "
                "fails alone (0: no limit)"})
    interactive_memory_mb: int = field(default=2048, metadata={
        "help": "address-space limit of each of the two interactive engine processes (the "
                "preview worker, the people finder); a call that needs more fails alone and "
                "the process is replaced"})
    preview_timeout_s: float = field(default=20.0, metadata={
        "help": "a preview frame taking longer is abandoned and its process replaced"})
    preview_per_minute: int = field(default=30, metadata={
        "help": "previews one user may ask for per minute (429 too_many_previews)"})
    preview_warmup_s: float = field(default=1.0, metadata={
        "help": "seconds of video tracked before the previewed frame, so the face track "
                "(landmark smoothing, eye reference) is as settled as in the task"})
    preview_keep_minutes: float = field(default=30.0, metadata={
        "help": "preview JPEGs are deleted this long after they were made"})
    previews_kept: int = field(default=6, metadata={
        "help": "previews kept per user; a newer one deletes the oldest"})
    faces_timeout_s: float = field(default=60.0, metadata={
        "help": "finding the people of one file may take this long before it is abandoned"})
    faces_per_minute: int = field(default=10, metadata={
        "help": "files one user may have analysed for people per minute (answers already "
                "kept do not count): 429 too_many_analyses"})
    faces_sample_fps: float = field(default=2.0, metadata={
        "help": "frames a second of video sampled to find its people"})
    body_bytes: int = field(default=1024 * 1024, metadata={
        "help": "largest JSON or form request body (uploads have their own limits): 413"})
    metrics_addresses: str = field(default="", metadata={
        "help": "comma-separated addresses or networks (e.g. 127.0.0.1,10.0.0.0/24) that may "
                "read GET /metrics without logging in; empty: administrators only. Matched "
                "against the connection's peer address, never X-Forwarded-For"})
    debug: bool = field(default=False, metadata={
        "help": "Tornado debug mode (never in production)"})

    def __post_init__(self) -> None:
        self.metrics_networks  # noqa: B018 - a wrong address fails at start-up, not on a scrape

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).resolve()

    @property
    def metrics_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """:attr:`metrics_addresses` parsed; a bare address is a network of one."""
        try:
            return tuple(ipaddress.ip_network(part.strip(), strict=False)
                         for part in self.metrics_addresses.split(",") if part.strip())
        except ValueError as exc:
            raise ValueError(f"metrics_addresses: {exc}") from None


_ENV_PREFIX = "FACESWAP_"


def _coerce(value: str, kind: type) -> object:
    if kind is bool:
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"not a boolean: {value!r}")
    return kind(value)


def _field_type(f: dataclasses.Field) -> type:
    return {"str": str, "int": int, "float": float, "bool": bool}[str(f.type)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one ``--flag`` per setting; defaults stay ``None`` so the env layer shows through."""
    for f in dataclasses.fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        kind = _field_type(f)
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help=f.metadata["help"])
        else:
            parser.add_argument(flag, type=kind, default=None, help=f.metadata["help"])


def load(args: argparse.Namespace | None = None,
         environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings: defaults, then ``FACESWAP_*`` variables, then parsed flags."""
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for f in dataclasses.fields(Settings):
        raw = environ.get(_ENV_PREFIX + f.name.upper())
        if raw is not None:
            values[f.name] = _coerce(raw, _field_type(f))
        flag_value = getattr(args, f.name, None) if args is not None else None
        if flag_value is not None:
            values[f.name] = flag_value
    return Settings(**values)


def parse(argv: Sequence[str] | None = None) -> Settings:
    """Convenience for scripts and tests: parse ``argv`` flags only."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return load(parser.parse_args(argv))
