"""Splitting a flow batch by source partition: nothing lost or doubled, every partition told."""

from __future__ import annotations

import numpy as np

from darknet_iodef.bus import partition_for
from darknet_iodef.bus.flows import partition_batch
from darknet_iodef.flowtuple import FLOW_DTYPE, SAMPLE_DTYPE, FlowBatch, decode_batch, encode_batch


def make_batch(n_flows: int, n_samples: int, seed: int = 1) -> FlowBatch:
    rng = np.random.default_rng(seed)
    flows = np.zeros(n_flows, FLOW_DTYPE)
    sources = rng.integers(0, 256, size=(50, 16), dtype=np.uint8)
    sources[:, :12] = np.frombuffer(b"\0" * 10 + b"\xff\xff", np.uint8)  # IPv4-mapped
    flows["src_ip"] = sources[rng.integers(0, 50, n_flows)].view("V16").ravel()
    flows["packet_count"] = np.arange(n_flows)  # row identity
    samples = np.zeros(n_samples, SAMPLE_DTYPE)
    samples["src_ip"] = sources[rng.integers(0, 50, n_samples)].view("V16").ravel()
    samples["ip_id"] = np.arange(n_samples)
    return FlowBatch(60_000_000_000, 60_000_000_000, "sensor-a", flows, samples, {"packets": 7, "bytes": 9})


def test_every_row_lands_once_in_its_source_partition() -> None:
    batch = make_batch(3000, 400)
    parts = partition_batch(batch, 4)
    assert [p for p, _ in parts] == [0, 1, 2, 3]
    for p, part in parts:
        for row in part.flows:
            assert partition_for(bytes(row["src_ip"]), 4) == p
        for row in part.samples:
            assert partition_for(bytes(row["src_ip"]), 4) == p
        assert np.all(np.diff(part.flows["packet_count"].astype(np.int64)) > 0)  # order kept
        assert (part.interval_start_ns, part.interval_ns, part.sensor) == (60 * 10**9, 60 * 10**9, "sensor-a")
    rows = np.concatenate([part.flows["packet_count"] for _, part in parts])
    assert sorted(rows.tolist()) == list(range(3000))
    assert sorted(np.concatenate([part.samples["ip_id"] for _, part in parts]).tolist()) == list(range(400))
    with_stats = [p for p, part in parts if part.stats]
    assert with_stats == [partition_for(b"sensor-a", 4)]
    assert parts[with_stats[0]][1].stats == {"packets": 7, "bytes": 9}


def test_every_partition_gets_a_part_even_an_empty_one() -> None:
    parts = partition_batch(make_batch(0, 0), 8)
    assert [(p, len(b.flows), len(b.samples)) for p, b in parts] == [(p, 0, 0) for p in range(8)]
    decoded = decode_batch(encode_batch(parts[0][1]))
    assert (decoded.interval_start_ns, len(decoded.flows)) == (60 * 10**9, 0)


def test_parts_stay_under_the_message_size_bound() -> None:
    batch = make_batch(20_000, 3_000)
    parts = partition_batch(batch, 2, max_bytes=100_000)
    sizes = [len(encode_batch(b)) for _, b in parts]
    assert max(sizes) <= 100_000
    assert sum(len(b.flows) for _, b in parts) == 20_000
    assert sum(len(b.samples) for _, b in parts) == 3_000
    assert sum(1 for _, b in parts if b.stats) == 1
    # full messages except each partition's last one
    for p in (0, 1):
        mine = [b for q, b in parts if q == p]
        assert all(len(encode_batch(b)) > 100_000 - 4096 - SAMPLE_DTYPE.itemsize for b in mine[:-1])


def test_icmp_errors_go_to_the_partition_of_their_quoted_destination() -> None:
    """The backscatter victim of an ICMP error is the quoted destination, not the router sending it."""
    batch = make_batch(400, 200, seed=3)
    rng = np.random.default_rng(4)
    victims = rng.integers(0, 256, size=(7, 16), dtype=np.uint8)
    victims[:, :12] = np.frombuffer(b"\0" * 10 + b"\xff\xff", np.uint8)
    quoted = np.zeros((400, 16), np.uint8)
    errors = np.arange(400) % 3 == 0
    quoted[errors] = victims[rng.integers(0, 7, int(errors.sum()))]
    batch.flows["quoted_dst_ip"] = quoted.view("V16").ravel()
    squoted = np.zeros((200, 16), np.uint8)
    serrors = np.arange(200) % 2 == 0
    squoted[serrors] = victims[rng.integers(0, 7, int(serrors.sum()))]
    batch.samples["quoted_dst_ip"] = squoted.view("V16").ravel()
    parts = partition_batch(batch, 5)
    seen_flows = seen_samples = 0
    for p, part in parts:
        for rows in (part.flows, part.samples):
            for row in rows:
                q = bytes(row["quoted_dst_ip"])
                home = q if any(q) else bytes(row["src_ip"])
                assert partition_for(home, 5) == p
        seen_flows += int((part.flows["quoted_dst_ip"] != np.zeros(1, "V16")[0]).sum())
        seen_samples += len(part.samples)
    assert seen_flows == int(errors.sum())
    assert seen_samples == 200
    # every victim's rows meet in exactly one partition
    for v in victims:
        homes = {p for p, part in parts for row in part.flows if bytes(row["quoted_dst_ip"]) == v.tobytes()}
        assert len(homes) <= 1
