from __future__ import annotations

import numpy as np

from aggregator.grouping import group
from aggregator.keyindex import KeyIndex
from aggregator.table import Column, Table


def test_insert_lookup_and_growth() -> None:
    idx = KeyIndex(capacity=4)
    keys = np.arange(10_000, dtype=np.uint64) * np.uint64(7919)
    rows, new = idx.insert(keys, 0)
    assert new.all() and (rows == np.arange(10_000)).all()
    again, new2 = idx.insert(keys[::-1], 10_000)
    assert not new2.any() and (again == np.arange(10_000)[::-1]).all()
    assert (idx.lookup(np.array([7919 * 5, 3], dtype=np.uint64)) == [5, -1]).all()
    assert len(idx) == 10_000


def test_set_semantics_and_colliding_new_keys() -> None:
    s = KeyIndex(with_rows=False)
    # many new keys in one call land on the same probe chains: each is added once
    first = s.add(np.arange(5000, dtype=np.uint64))
    second = s.add(np.arange(4990, 5010, dtype=np.uint64))
    assert first.sum() == 5000
    assert second.tolist() == [False] * 10 + [True] * 10
    assert len(s) == 5010


def test_table_compact_keeps_rows_findable() -> None:
    t = Table({"v": Column("<u4")})
    rows, _ = t.upsert(np.array([10, 20, 30, 40], dtype=np.uint64))
    t.cols["v"][rows] = [1, 2, 3, 4]
    assert t.compact(np.array([True, False, True, False])) == 2
    got = t.lookup(np.array([10, 20, 30, 40], dtype=np.uint64))
    assert got.tolist() == [0, -1, 1, -1]
    assert t.cols["v"][:2].tolist() == [1, 3]


def test_group_reductions() -> None:
    g = group(np.array([5, 3, 5, 3, 9], dtype=np.uint64))
    assert g.keys.tolist() == [3, 5, 9]
    assert g.sum(np.array([1, 2, 3, 4, 5])).tolist() == [6, 4, 5]
    assert g.first(np.array([1, 2, 3, 4, 5])).tolist() == [2, 1, 5]
    assert g.inv.tolist() == [1, 0, 1, 0, 2]
