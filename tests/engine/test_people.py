"""Grouping descriptors by person (``engine.people.group``): no model needed."""

from __future__ import annotations

import numpy as np

from engine.people import THRESHOLD, group


def test_two_people_two_groups_and_a_split_person_merged() -> None:
    rng = np.random.default_rng(0)
    # within a person: ~0.3 apart (dlib's same-person distances); between: ~1.0
    alice = [rng.normal(0, 0.02, 128) for _ in range(5)]
    bob = [v + np.eye(128)[0] for v in (rng.normal(0, 0.02, 128) for _ in range(4))]
    groups = group(alice + bob)
    assert sorted(map(sorted, groups)) == [[0, 1, 2, 3, 4], [5, 6, 7, 8]]
    # a person seen from two sides: two views 0.7 apart open two groups, then a view
    # between them brings the groups' means within the threshold: merged into one
    left, right = np.zeros(128), np.zeros(128)
    left[1], right[1] = -0.35, 0.35
    assert np.linalg.norm(left - right) > THRESHOLD
    merged = group([left, right, (left + right) / 2 + 0.01, (left + right) / 2 - 0.01])
    assert len(merged) == 1 and sorted(merged[0]) == [0, 1, 2, 3]
