"""Just enough of dlib's serialisation format to shorten a shape predictor's cascade.

dlib's 68-point predictor is a cascade of 15 levels of 500 regression trees
(Kazemi & Sullivan). Each level refines the previous one's shape, and the
last levels only move points by a fraction of a pixel. A copy with the first
N levels loads and runs faster; the copy is made here, once, by copying the
bytes of the levels kept (no number is decoded or re-encoded).

The format: every number is an integer written as one control byte (low four
bits: how many bytes follow; bit 7: negative) and then that many little-endian
bytes; a float is two such integers (mantissa, exponent); a matrix is its row
and column counts (negated) followed by its elements; a vector is its length
followed by its elements. A ``shape_predictor`` is: version (1), initial shape
(matrix), forests (vector of levels, each a vector of trees), anchor indices
(vector per level), deltas (vector per level of 2-d float vectors). A tree is
its splits (vector of: index, index, float threshold) then its leaves
(vector of matrices).
"""

from __future__ import annotations

import numpy as np

_SIX = 6 * np.arange(256)


class _Reader:
    """Walks the integers of a serialised predictor; positions are byte offsets."""

    def __init__(self, data: bytes) -> None:
        self.b = data
        self.arr = np.frombuffer(data, np.uint8)

    def int(self, p: int) -> tuple[int, int]:
        """(value, next position) of the integer at ``p``."""
        c = self.b[p]
        n = c & 15
        v = int.from_bytes(self.b[p + 1:p + 1 + n], "little")
        return (-v if c & 0x80 else v), p + 1 + n

    def skip(self, p: int, count: int = 1) -> int:
        for _ in range(count):
            p += 1 + (self.b[p] & 15)
        return p

    def skip_floats(self, p: int, m: int) -> int:
        # Almost every float is 6 bytes (3-byte mantissa, 1-byte exponent):
        # check runs of them at once with numpy, step over the odd one here.
        while m > 0:
            idx = p + _SIX[:min(m, len(_SIX))]
            ok = ((self.arr[idx] & 15) == 3) & ((self.arr[idx + 4] & 15) == 1)
            if ok.all():
                p += 6 * len(idx)
                m -= len(idx)
                continue
            j = int(ok.argmin())
            p = self.skip(p + 6 * j, 2)
            m -= j + 1
        return p

    def skip_matrix(self, p: int) -> int:
        nr, p = self.int(p)
        nc, p = self.int(p)
        return self.skip_floats(p, abs(nr) * abs(nc))

    def skip_counted(self, p: int, per: int) -> int:
        """Skip a vector whose items are ``per`` integers each (a float is two)."""
        n, p = self.int(p)
        return self.skip(p, per * n)

    def skip_tree(self, p: int) -> int:
        p = self.skip_counted(p, 4)  # splits: two indices and a float each
        n, p = self.int(p)
        for _ in range(n):
            p = self.skip_matrix(p)
        return p

    def vector(self, p: int, skip_item) -> tuple[list[tuple[int, int]], int]:
        """Byte ranges of the items of the vector at ``p``, and the position after it."""
        n, p = self.int(p)
        items = []
        for _ in range(n):
            start, p = p, skip_item(p)
            items.append((start, p))
        return items, p


def _int(v: int) -> bytes:
    n = (abs(v).bit_length() + 7) // 8
    return bytes([n | (0x80 if v < 0 else 0)]) + abs(v).to_bytes(n, "little")


def truncate_shape_predictor(data: bytes, levels: int) -> bytes:
    """The serialised predictor ``data`` with only its first ``levels`` cascade levels.

    With ``levels`` >= the number it has, the result equals ``data``.
    Raises ValueError if ``data`` is not a version-1 shape predictor.
    """
    try:
        return _truncate(_Reader(data), levels)
    except IndexError:
        raise ValueError("not a dlib shape predictor (truncated file)") from None


def _truncate(r: _Reader, levels: int) -> bytes:
    data = r.b
    version, p = r.int(0)
    if version != 1:
        raise ValueError(f"not a dlib shape predictor (version {version})")
    start = p
    p = r.skip_matrix(p)
    initial = data[start:p]
    forests, p = r.vector(p, lambda q: r.vector(q, r.skip_tree)[1])
    anchors, p = r.vector(p, lambda q: r.skip_counted(q, 1))
    deltas, p = r.vector(p, lambda q: r.skip_counted(q, 4))  # 2-d float vectors
    if p != len(data) or not len(forests) == len(anchors) == len(deltas):
        raise ValueError("not a dlib shape predictor (unexpected layout)")
    k = min(levels, len(forests))
    out = [_int(1), initial]
    for part in (forests, anchors, deltas):
        out.append(_int(k))
        out += [data[a:b] for a, b in part[:k]]
    return b"".join(out)
