"""numpy reductions for the few dozen landmarks of a face, without numpy's per-call overhead.

They give numpy's values (``quantile`` interpolates as ``np.quantile``'s default,
rounded its own way). The per-frame work calls them tens of times a face, where
numpy's own functions spend most of their time checking arguments: ``np.median``
~15 us, ``np.quantile`` ~80 us and ``ndarray.mean`` ~3 us of overhead a call,
against ~1-2 us for the whole of these.
"""

from __future__ import annotations

import numpy as np

_add = np.add.reduce


def centre(a: np.ndarray) -> np.ndarray:
    """``a.mean(0)``: the mean point of an (N, 2) array of points."""
    return _add(a, 0) / len(a)


def median(a: np.ndarray) -> np.floating:
    """``np.median`` of a 1-D array without NaNs."""
    n = a.size
    k = n // 2
    if n % 2:
        return np.partition(a, k)[k]
    p = np.partition(a, (k - 1, k))
    return (p[k - 1] + p[k]) / 2


def quantile(a: np.ndarray, q: float) -> np.ndarray:
    """``np.quantile(a, q, axis=0)``: linear interpolation between the two nearest order
    statistics (up to rounding)."""
    s = np.sort(a, axis=0)
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (pos - lo) * (s[hi] - s[lo])
