"""Accounts: registration, login sessions, listing and membership changes."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import bcrypt

from conf import ADMIN, FREE, USERTYPES, Limits, Settings, limits_for
from services import ServiceError
from services.throttle import LoginThrottle
from storage import DuplicateUser, Repositories
from storage.sessions import digest

#: 3-32 letters, digits, CJK, ``_ - .``; not starting with a dot (a hidden folder) and no
#: ``..``: the name is also the user's media folder, which must be a plain name.
USERNAME_RE = re.compile(r"(?!\.)(?!.*\.\.)[A-Za-z0-9_.\-\u3400-\u4dbf\u4e00-\u9fff]{3,32}")
#: What may log in: every name that could ever register (older rules allowed a leading
#: dot and ``..``), so tightening registration locks nobody out.
LOGIN_NAME_RE = re.compile(r"[A-Za-z0-9_.\-\u3400-\u4dbf\u4e00-\u9fff]{3,32}")
PHONE_RE = re.compile(r"^[0-9]{6,15}$")
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
PASSWORD_MIN = 6
PASSWORD_MAX_BYTES = 72  # bcrypt ignores (5.x: refuses) anything longer

DUPLICATE_MSG = "客户名已经存在"  # the seed's own message, kept for old clients
BAD_LOGIN_MSG = "用户名或密码错误 (wrong username or password)"


@dataclass(frozen=True)
class User:
    """The authenticated caller, as handlers and services see it."""

    id: int
    username: str
    usertype: int

    @property
    def is_admin(self) -> bool:
        return self.usertype == ADMIN

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "username": self.username, "usertype": self.usertype}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> User:
        return cls(id=int(doc["id"]), username=doc["username"], usertype=int(doc["usertype"]))


def normal_username(username: str) -> str:
    """The name as stored: its NFKC form (fullwidth ``Ａlice`` is ``Alice``)."""
    return unicodedata.normalize("NFKC", username)


def username_key(username: str) -> str:
    """What makes two names the same: case and Unicode compatibility forms do not count
    (``Alice`` = ``alice`` = ``ＡＬＩＣＥ``). A unique index on it decides races."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username).casefold())


def check_username(username: str) -> str:
    """The normalised name, or a 400 (``bad_username``)."""
    username = normal_username(username)
    if not USERNAME_RE.fullmatch(username):
        raise ServiceError("username must be 3-32 letters, digits, _ - . or CJK characters, "
                           "not starting with a dot", 400, "bad_username")
    return username


def check_password(password: str) -> str:
    if len(password) < PASSWORD_MIN or len(password.encode()) > PASSWORD_MAX_BYTES:
        raise ServiceError(
            f"password must be at least {PASSWORD_MIN} characters and at most "
            f"{PASSWORD_MAX_BYTES} bytes")
    return password


#: Removes everything of one user (``user_id``, ``username``) kept by another service.
Purger = Callable[[int, str], Awaitable[None]]


class AccountService:
    def __init__(self, repos: Repositories, settings: Settings,
                 limits: Callable[[int], Limits] = limits_for) -> None:
        self.repos = repos
        self.settings = settings
        self.limits = limits
        #: Run in order when an account is deleted (the context registers the task
        #: service first, so running tasks stop before their files go).
        self.purgers: list[Purger] = []
        # A real hash to compare against when the user does not exist, so that an
        # unknown name costs as much time as a wrong password (no user enumeration).
        self._dummy_hash = bcrypt.hashpw(b"dummy-password", bcrypt.gensalt(4))
        self.throttle = LoginThrottle(settings.login_failures_per_user,
                                      settings.login_failures_per_address,
                                      settings.login_window_minutes * 60)
        # What lives on after a request (WebSockets) registers here to be ended with
        # its session: at logout, when an administrator disables the user, and (the
        # socket's own timer) at expiry. Keyed by token digest, with the user id.
        self._watchers: dict[str, set[tuple[int, Callable[[str], None]]]] = {}

    # -- session watchers -------------------------------------------------------------
    def watch(self, token: str, user_id: int, on_end: Callable[[str], None]) -> None:
        """Call ``on_end(reason)`` when the session of ``token`` ends."""
        self._watchers.setdefault(digest(token), set()).add((user_id, on_end))

    def unwatch(self, token: str, user_id: int, on_end: Callable[[str], None]) -> None:
        watchers = self._watchers.get(digest(token))
        if watchers is not None:
            watchers.discard((user_id, on_end))
            if not watchers:
                del self._watchers[digest(token)]

    def _end_sessions(self, reason: str, *, token: str | None = None,
                      user_id: int | None = None) -> None:
        keys = [digest(token)] if token is not None else list(self._watchers)
        for key in keys:
            for uid, on_end in list(self._watchers.get(key, ())):
                if user_id is None or uid == user_id:
                    on_end(reason)

    async def session_expires(self, token: str) -> dt.datetime | None:
        live = await self.repos.sessions.live(token)
        return live[1] if live else None

    async def _hash(self, password: str) -> str:
        salt = bcrypt.gensalt(self.settings.bcrypt_rounds)
        hashed = await asyncio.to_thread(bcrypt.hashpw, password.encode(), salt)
        return hashed.decode()

    async def _verify(self, password: str, hashed: bytes) -> bool:
        return await asyncio.to_thread(bcrypt.checkpw, password.encode(), hashed)

    async def register(self, username: str, password: str, phonenumber: str = "",
                       address: str = "", usertype: int = FREE) -> int:
        username = check_username(username)
        check_password(password)
        if phonenumber and not PHONE_RE.match(phonenumber):
            raise ServiceError("phonenumber must be 6-15 digits")
        if address and (len(address) > 254 or not EMAIL_RE.match(address)):
            raise ServiceError("address must be an e-mail address")
        if await self.repos.users.by_key(username_key(username)):
            raise ServiceError(DUPLICATE_MSG, 409, "name_taken")
        try:
            return await self.repos.users.create(username, await self._hash(password), usertype,
                                                 phonenumber, address,
                                                 key=username_key(username))
        except DuplicateUser:
            raise ServiceError(DUPLICATE_MSG, 409, "name_taken") from None

    async def login(self, username: str, password: str, address: str = "") -> tuple[User, str]:
        """Check the password and open a session; the same refusal for any bad pair.

        Repeated failures for one username or from one address are refused with 429
        before any password is checked.
        """
        key = username_key(username)  # throttled per person, whatever case they type
        wait = self.throttle.attempt(key, address)
        if wait > 0:
            raise ServiceError(f"too many failed logins; try again in "
                               f"{max(wait / 60, 1):.0f} minutes", 429, "too_many_attempts")
        doc = None
        if LOGIN_NAME_RE.fullmatch(normal_username(username)):
            # the name as spelled first (an old name left unkeyed because it collided by
            # case with another keeps logging in), then any case or compatibility form
            doc = await self.repos.users.by_username(normal_username(username)) or \
                await self.repos.users.by_key(key)
        hashed = doc["password_hash"].encode() if doc else self._dummy_hash
        ok = len(password.encode()) <= PASSWORD_MAX_BYTES and await self._verify(password, hashed)
        if not doc or not ok:
            raise ServiceError(BAD_LOGIN_MSG, 401, "wrong_credentials")
        if doc.get("disabled"):
            raise ServiceError("this account is disabled", 403, "account_disabled")
        self.throttle.succeeded(key, address)
        token = await self.repos.sessions.create(
            int(doc["id"]), dt.timedelta(days=self.settings.session_days))
        return User.from_doc(doc), token

    async def logout(self, token: str) -> None:
        await self.repos.sessions.delete(token)
        self._end_sessions("logged out", token=token)

    async def authenticate(self, token: str) -> User | None:
        """The user behind a session token, or None (unknown, expired, user deleted or
        disabled)."""
        user_id = await self.repos.sessions.user_id(token)
        if user_id is None:
            return None
        doc = await self.repos.users.by_id(user_id)
        return User.from_doc(doc) if doc and not doc.get("disabled") else None

    async def set_disabled(self, caller: User, user_id: int, disabled: bool) -> None:
        """An administrator (dis)ables a user; disabling ends their sessions at once,
        open WebSockets included."""
        require_admin(caller)
        if user_id == caller.id and disabled:
            raise ServiceError("administrators cannot disable themselves", 409, "conflict")
        if not await self.repos.users.set_disabled(user_id, disabled):
            raise ServiceError(f"no user with id {user_id}", 404)
        if disabled:
            await self.repos.sessions.delete_for_user(user_id)
            self._end_sessions("account disabled", user_id=user_id)

    async def list_customers(self, caller: User, pagenum: int, pagesize: int,
                             keywords: str) -> tuple[list[dict[str, Any]], int]:
        """One page of users, each with what the admin page shows: ``disabled``,
        ``usage_bytes``, ``quota_bytes``, ``tasks`` and ``active_tasks``."""
        require_admin(caller)
        rows, total = await self.repos.users.page(pagenum, pagesize, keywords)
        ids = [int(row["id"]) for row in rows]
        usage = await self.repos.uploads.usage(ids)
        counts = await self.repos.tasks.counts(ids)
        for row in rows:
            uid = int(row["id"])
            row.update(disabled=bool(row.get("disabled")), usage_bytes=usage.get(uid, 0),
                       quota_bytes=self.limits(int(row["usertype"])).storage_bytes,
                       tasks=counts.get(uid, {}).get("total", 0),
                       active_tasks=counts.get(uid, {}).get("active", 0))
        return rows, total

    async def delete_account(self, caller: User, password: str) -> None:
        """The caller deletes their own account, confirmed by their password."""
        doc = await self.repos.users.by_id(caller.id)
        if doc is None:
            raise ServiceError("no such user", 404)
        ok = len(password.encode()) <= PASSWORD_MAX_BYTES and \
            await self._verify(password, doc["password_hash"].encode())
        if not ok:
            raise ServiceError("the password is wrong", 403, "wrong_password")
        await self._delete(doc)

    async def delete_customer(self, caller: User, user_id: int) -> None:
        """An administrator deletes a user and everything the user has."""
        require_admin(caller)
        if user_id == caller.id:
            raise ServiceError("administrators cannot delete themselves here; use "
                               "delete_account", 409, "conflict")
        doc = await self.repos.users.by_id(user_id)
        if doc is None:
            raise ServiceError(f"no user with id {user_id}", 404)
        await self._delete(doc)

    async def _delete(self, doc: dict[str, Any]) -> None:
        """Disable first (no new session or request gets through), end the sessions,
        let every service remove its part, then remove the user."""
        user_id, username = int(doc["id"]), doc["username"]
        await self.repos.users.set_disabled(user_id, True)
        await self.repos.sessions.delete_for_user(user_id)
        self._end_sessions("account deleted", user_id=user_id)
        for purge in self.purgers:
            await purge(user_id, username)
        await self.repos.users.delete(user_id)

    async def modify_type(self, caller: User, user_id: int, newtype: int) -> None:
        require_admin(caller)
        if newtype not in USERTYPES:
            raise ServiceError(f"unknown usertype {newtype}; one of {list(USERTYPES)}")
        if user_id == caller.id and newtype != ADMIN:
            raise ServiceError("administrators cannot demote themselves", 409)
        if not await self.repos.users.set_usertype(user_id, newtype):
            raise ServiceError(f"no user with id {user_id}", 404)

    async def ensure_admin(self, username: str, password: str) -> tuple[int, bool]:
        """Create ``username`` as administrator, or promote it (and set the password).

        Returns ``(id, created)``. Used by ``server.py create-admin``.
        """
        username = check_username(username)
        check_password(password)
        doc = await self.repos.users.by_key(username_key(username))
        if doc is None:
            return await self.register(username, password, usertype=ADMIN), True
        await self.repos.users.set_usertype(int(doc["id"]), ADMIN)
        await self.repos.users.set_password_hash(int(doc["id"]), await self._hash(password))
        return int(doc["id"]), False


def require_admin(caller: User) -> None:
    if not caller.is_admin:
        raise ServiceError("administrators only", 403, "admin_only")
