"""Bounded state, checkpoint/restore without duplicates, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aggregator.checkpoint import load_checkpoint, save_checkpoint
from darknet_iodef.events import encode_event
from tests.aggregator.flowmaker import SEC, T0, batch
from tests.aggregator.test_backscatter import synack
from tests.aggregator.test_scan import horizontal


def scenario() -> list:
    """Four intervals: a scanner, a victim, spoofed noise, one-packet sources."""
    out = []
    for k in range(4):
        rows = horizontal("45.1.1.1", 8) + [synack(i * 9) for i in range(7)]
        rows += [{"src_ip": f"10.0.{k}.{i}", "dst_ip": "198.18.0.1", "vlan": 3} for i in range(1, 12)]
        rows += [{"src_ip": f"77.{k}.{i}.1", "dst_ip": f"198.18.4.{i}"} for i in range(1, 40)]
        for r in rows[:8]:
            r["dst_ip"] = r["dst_ip"].replace("198.18.", f"198.18.{10 + k}")[:15]
        out.append(batch(rows, start=T0 + k * 60 * SEC))
    return out


def replay(agg, batches) -> bytes:
    lines = []
    for b in batches:
        lines += [encode_event(e) for e in agg.process(b)]
    lines += [encode_event(e) for e in agg.flush()]
    return b"".join(lines)


def test_same_flows_give_byte_identical_events(make_agg) -> None:
    a = replay(make_agg(), scenario())
    b = replay(make_agg(), scenario())
    assert a == b
    kinds = sorted(
        {line.split(b'"classification.identifier":"')[1].split(b'"')[0] for line in a.splitlines()}
    )
    assert kinds == [b"backscatter", b"ip-spoofer", b"scan"]


def test_checkpoint_round_trip_neither_repeats_nor_loses(make_agg, tmp_path: Path) -> None:
    batches = scenario()
    whole = replay(make_agg(), batches)
    # run the first two intervals, checkpoint, "crash", restore, feed everything again
    agg = make_agg()
    part = b"".join(encode_event(e) for b in batches[:2] for e in agg.process(b))
    save_checkpoint(agg, tmp_path / "state.npz")
    agg2 = make_agg()
    assert load_checkpoint(agg2, tmp_path / "state.npz")
    rest = replay(agg2, batches)  # the first two are skipped as already processed
    assert agg2.counters["replayed_batches_total"] == 2
    assert part + rest == whole
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write left no temporary file


def test_checkpoint_refuses_another_telescope(make_agg, tmp_path: Path) -> None:
    import pytest

    from darknet_iodef.errors import ConfigError, RecordError

    agg = make_agg()
    agg.process(scenario()[0])
    save_checkpoint(agg, tmp_path / "s.npz")
    with pytest.raises(ConfigError, match="darknet"):
        load_checkpoint(make_agg("198.19.0.0/16"), tmp_path / "s.npz")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(RecordError, match="not a readable checkpoint"):
        load_checkpoint(make_agg(), tmp_path / "bad.npz")
    assert load_checkpoint(make_agg(), tmp_path / "absent.npz") is False


def test_cap_evicts_one_packet_sources_first_and_counts(make_agg) -> None:
    agg = make_agg(max_sources=100)
    rows = horizontal("45.1.1.1", 5)  # 5 packets: more useful than one-packet sources
    rows += [{"src_ip": f"77.0.{i // 250}.{i % 250 + 1}", "dst_ip": "198.18.4.4"} for i in range(300)]
    agg.process(batch(rows))
    agg.process(batch([], start=T0 + 60 * SEC))
    # 301 sources, cap 100: down to 90 (10% head room), the 5-packet source kept
    assert agg.scan.src.size == 90
    assert agg.scan.evicted_total == 211
    assert agg.stats()["sources_evicted_total"] == 211
    key = np.array([int.from_bytes(bytes([45, 1, 1, 1]), "big")], dtype=np.uint64)
    row = int(agg.scan.src.lookup(key)[0])
    assert row >= 0 and int(agg.scan.src.cols["packets"][row]) == 5
    # the survivors still count correctly after compaction
    agg.process(batch(horizontal("45.1.1.1", 10), start=T0 + 120 * SEC))
    (ev,) = agg.flush()
    assert ev["extra.destinations_distinct"] == 10 and ev["extra.packets"] == 15


def test_spoofed_flood_of_million_sources_stays_bounded(make_agg) -> None:
    # a flood from 200,000 random sources, one packet each, TTL 244: all tagged spoofed,
    # summarised, and the per-source state is gone at the interval end
    rng = np.random.default_rng(7)
    from darknet_iodef.addresses import addr16_from_v4
    from tests.aggregator.flowmaker import flows

    f = flows(
        [{"src_ip": "45.0.0.1", "dst_ip": "198.18.0.1", "ttl": 244, "tcp_window": 0, "dst_port": 25565}]
    )
    f = np.repeat(f, 200_000)
    f["src_ip"] = addr16_from_v4(rng.integers(0x2D000000, 0x2E000000, 200_000, dtype=np.uint32))
    from darknet_iodef.flowtuple import SAMPLE_DTYPE, FlowBatch

    agg = make_agg(max_sources=50_000)
    agg.process(FlowBatch(T0, 60 * SEC, "t", f, np.zeros(0, SAMPLE_DTYPE)))
    events = agg.process(batch([], start=T0 + 60 * SEC))
    (ev,) = events
    assert ev["classification.identifier"] == "ip-spoofer"
    # (seed 7 draws 1,544 sources ending in .0 or .255)
    assert ev["extra.packets"] == 200_000
    assert ev["extra.reasons"] == {"ttl-200": 200_000, "last-byte-0-255": 1544}
    assert ev["extra.sources_distinct"] == len(np.unique(f["src_ip"]))
    assert agg.scan.src.size == 45_000
    assert agg.scan.evicted_total == len(np.unique(f["src_ip"])) - 45_000


def test_processing_in_chunks_gives_the_same_events(make_agg, monkeypatch) -> None:
    import aggregator.engine

    whole = replay(make_agg(), scenario())
    monkeypatch.setattr(aggregator.engine, "CHUNK_FLOWS", 7)
    assert replay(make_agg(), scenario()) == whole
