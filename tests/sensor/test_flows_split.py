"""The flow builder's output is a function of the packets, not of how they were batched."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sensor.flows as flows_mod
import sensor.flows_fold as fold_mod
from darknet_iodef.addresses import DarkPrefixes
from darknet_iodef.flowtuple import encode_batch
from sensor.flows import FlowBuilder
from sensor.settings import SensorSettings
from tests.sensor.flow_packets import synthetic

DARK = DarkPrefixes.parse("198.18.0.0/24,2001:db8:dead::/120")


def run(pk: npt.NDArray[np.void], cuts: list[int], **kw: object) -> bytes:
    b = FlowBuilder(DARK, SensorSettings(**kw), "split")  # type: ignore[arg-type]
    out = []
    for part in np.split(pk, sorted(set(cuts))):
        out += b.push(part)
    out += b.flush()
    return b"".join(encode_batch(x) for x in out)


def test_one_batch_or_seven_give_identical_bytes() -> None:
    pk = synthetic(3000, seed=1)
    whole = run(pk, [])
    assert run(pk, [100, 101, 900, 1500, 2222, 2999]) == whole
    assert len(whole) > 0


def test_identical_with_reordering_inside_the_slack() -> None:
    pk = synthetic(3000, seed=2, jitter_s=3.0)
    whole = run(pk, [], reorder_slack=4.0)
    assert run(pk, [7, 500, 501, 1700, 2600, 2700], reorder_slack=4.0) == whole


def test_identical_with_late_packets_without_slack() -> None:
    pk = synthetic(3000, seed=3, jitter_s=3.0)
    whole = run(pk, [])
    assert run(pk, list(range(0, 3000, 431)), samples_per_source=2) != whole  # K changes output
    assert run(pk, list(range(0, 3000, 431))) == whole
    b = FlowBuilder(DARK, SensorSettings(), "split")
    b.push(pk)
    b.flush()
    assert b.stats["late_packets"] > 0  # the test really exercises late packets


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    cuts=st.lists(st.integers(0, 400), max_size=8),
    slack=st.sampled_from([0.0, 2.0]),
    k=st.integers(0, 5),
)
def test_any_split_gives_identical_bytes(seed: int, cuts: list[int], slack: float, k: int) -> None:
    pk = synthetic(400, seed=seed, span_s=150, jitter_s=1.5)
    assert run(pk, cuts, reorder_slack=slack, samples_per_source=k) == run(
        pk, [], reorder_slack=slack, samples_per_source=k)


def test_merging_partials_gives_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a tiny compaction threshold every push merges partials and re-selects samples."""
    pk = synthetic(4000, seed=4)
    whole = run(pk, [])
    monkeypatch.setattr(flows_mod, "_COMPACT_MIN_ROWS", 8)
    assert run(pk, list(range(0, 4000, 97))) == whole


def test_hash_collisions_are_resolved_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every key hashing alike must still give exact groups (the lexicographic fallback)."""
    pk = synthetic(2000, seed=5)
    b = FlowBuilder(DARK, SensorSettings(), "split")
    honest = b.push(pk) + b.flush()
    monkeypatch.setattr(fold_mod, "hash_keys", lambda rows: np.full(rows.shape[0], 7, np.uint64))
    b = FlowBuilder(DARK, SensorSettings(), "split")
    forged = b.push(pk) + b.flush()
    assert len(forged) == len(honest)
    for h, f in zip(honest, forged, strict=True):
        # same flows (the order's tie-breaker, the hash, differs)
        key = ["src_ip", "dst_ip", "src_port", "dst_port", "protocol", "ttl", "tcp_flags"]
        assert np.array_equal(np.sort(h.flows, order=key), np.sort(f.flows, order=key))
        assert h.stats == f.stats


def test_flow_counts_add_up_to_dark_packets() -> None:
    pk = synthetic(5000, seed=6)
    b = FlowBuilder(DARK, SensorSettings(), "split")
    out = b.push(pk) + b.flush()
    assert sum(int(x.flows["packet_count"].sum()) for x in out) == b.stats["dark_packets"]
    for x in out:
        assert int(x.flows["slot_counts"].sum()) == x.stats["dark_packets"]
        assert np.all(x.flows["first_ns"] >= x.interval_start_ns)
        assert np.all(x.flows["last_ns"] < x.interval_start_ns + x.interval_ns)
    # independent count of dark packets
    ok = pk["status"] == 0
    v4 = ok & (pk["ip_version"] == 4) & (pk["dst_ip4"] >> 8 == 0xC61200)
    dst6 = np.ascontiguousarray(pk["dst_ip6"]).view(np.uint8).reshape(-1, 16)
    v6 = ok & (pk["ip_version"] == 6) & (dst6[:, 14] == 0)
    assert b.stats["dark_packets"] == int(v4.sum() + v6.sum())


@settings(max_examples=60, deadline=None)
@given(raw=st.binary(min_size=0, max_size=40 * 232), cuts=st.lists(st.integers(0, 40), max_size=4),
       slack=st.sampled_from([0.0, 3.0]))
def test_arbitrary_field_values_never_raise(raw: bytes, cuts: list[int], slack: float) -> None:
    """Any field values (garbage timestamps near the int64 limits, unknown status codes,
    odd versions and flags) are counted, never a crash; every packet is counted once."""
    from sensor.fields import PACKET_DTYPE

    n = len(raw) // PACKET_DTYPE.itemsize
    pk = np.frombuffer(raw[: n * PACKET_DTYPE.itemsize], dtype=PACKET_DTYPE).copy()
    b = FlowBuilder(DARK, SensorSettings(reorder_slack=slack), "fuzz")
    out = []
    for part in np.split(pk, sorted({c for c in cuts if c <= n})):
        out += b.push(part)
    out += b.flush()
    out += b.push(pk)  # after the end: everything late or in new intervals, still no crash
    out += b.flush()
    total = sum(x.stats["packets"] + x.stats["late_packets"] for x in out)
    assert total == 2 * n
    for x in out:
        assert int(x.flows["packet_count"].sum()) == x.stats["dark_packets"]


def test_sources_counted_the_same_with_and_without_samples() -> None:
    pk = synthetic(5000, seed=11)  # 5 IPv4 and 3 IPv6 sources
    counts = []
    for k in (0, 4):
        b = FlowBuilder(DARK, SensorSettings(samples_per_source=k), "split")
        counts.append([x.stats["sources"] for x in b.push(pk) + b.flush()])
    assert counts[0] == counts[1] == [8, 8, 8, 8]


@pytest.mark.parametrize("jitter_s", [0.0, 2.0])
def test_skipping_full_sources_changes_nothing(jitter_s: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """IPv4 only, many small pushes: sources that already hold K samples are skipped
    before sorting (when in order); the bytes equal one push of everything."""
    pk = synthetic(6000, seed=12, jitter_s=jitter_s, v6_share=0.0)
    skipped = []
    real = flows_mod.in_sorted

    def counting(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
        out = real(values, sorted_set)
        skipped.append(int(out.sum()))
        return out

    monkeypatch.setattr(flows_mod, "in_sorted", counting)
    cuts = list(range(0, 6000, 150))
    for k in (1, 4):
        assert run(pk, cuts, samples_per_source=k, reorder_slack=3.0) == run(
            pk, [], samples_per_source=k, reorder_slack=3.0)
    # in order the skip happens; reordered pushes must not skip (a later push
    # may hold an earlier packet)
    assert (sum(skipped) > 0) == (jitter_s == 0.0)
