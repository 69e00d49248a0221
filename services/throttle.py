"""Login throttling: too many failures for one username or from one address → 429.

Kept in memory: it protects one server process, resets on restart (an attacker gains
one window per restart, which they cannot cause), and costs no database write per
attempt. Counting failures per username stops guessing one password from many
addresses; per address stops spraying many usernames from one.
"""

from __future__ import annotations

import time
from collections import deque


class LoginThrottle:
    def __init__(self, per_user: int = 5, per_address: int = 20, window: float = 900.0) -> None:
        self.limits = {"user": per_user, "addr": per_address}
        self.window = window
        self.failures: dict[tuple[str, str], deque[float]] = {}

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self.failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self.failures[key]
        return times

    def retry_after(self, username: str, address: str) -> float:
        """Seconds until a login may be tried again (0: allowed now)."""
        now = time.monotonic()
        wait = 0.0
        for key in (("user", username), ("addr", address)):
            times = self._recent(key, now)
            if len(times) >= self.limits[key[0]]:
                wait = max(wait, times[0] + self.window - now)
        return wait

    def failed(self, username: str, address: str) -> None:
        now = time.monotonic()
        for key in (("user", username), ("addr", address)):
            self.failures.setdefault(key, deque()).append(now)

    def attempt(self, username: str, address: str) -> float:
        """Check and count one attempt at once, before the password is checked.

        Returns the seconds to wait (0: go ahead; the attempt is then counted as a
        failure until :meth:`succeeded` takes it back). Checking first and counting
        after the slow password hash let 16 parallel guesses all through; check and
        count happen here with no await between them, so parallel attempts see each
        other.
        """
        wait = self.retry_after(username, address)
        if wait <= 0:
            self.failed(username, address)
        return wait

    def succeeded(self, username: str, address: str = "") -> None:
        """A right password: forget the user's failures and take back this attempt's
        count for the address (a user who logs in is not spraying names)."""
        self.failures.pop(("user", username), None)
        times = self.failures.get(("addr", address))
        if times:
            times.pop()
            if not times:
                del self.failures[("addr", address)]
