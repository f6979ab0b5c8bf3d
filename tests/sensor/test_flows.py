"""FlowBuilder on hand-made packets: grouping, intervals, slots, samples, filtering, stats."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from darknet_iodef.addresses import DarkPrefixes, format_addr16
from darknet_iodef.flowtuple import IPF_DF, IPF_FRAGMENT, IPF_MF, FlowBatch, encode_batch
from sensor.fields import TCP_ACK, TCP_NS, TCP_SYN, Status
from sensor.flows import STAT_NAMES, FlowBuilder
from sensor.settings import SensorSettings
from tests.sensor.flow_packets import T0, S, packets

DARK = DarkPrefixes.parse("198.18.0.0/15,2001:db8:dead::/48")


def builder(**settings: object) -> FlowBuilder:
    return FlowBuilder(DARK, SensorSettings(**settings), "test-sensor")  # type: ignore[arg-type]


def one_batch(pk: np.ndarray, **settings: object) -> FlowBatch:
    b = builder(**settings)
    out = b.push(pk) + b.flush()
    assert len(out) == 1
    return out[0]


def flows_as_dicts(batch: FlowBatch) -> list[dict[str, object]]:
    names = ("src_ip", "dst_ip", "src_port", "dst_port", "protocol", "ttl", "tcp_flags", "ip_len",
             "packet_count")
    out = []
    for row in batch.flows:
        d: dict[str, object] = {n: row[n].item() for n in names[2:]}
        d["src_ip"] = format_addr16(row["src_ip"])
        d["dst_ip"] = format_addr16(row["dst_ip"])
        out.append(d)
    return out


def test_same_key_is_one_flow_with_count_first_last() -> None:
    pk = packets(
        {"ts_ns": T0 + 1 * S},
        {"ts_ns": T0 + 2 * S},
        {"ts_ns": T0 + 3 * S, "ttl": 63},  # another TTL: another tuple
        {"ts_ns": T0 + 4 * S},
    )
    batch = one_batch(pk)
    assert batch.interval_start_ns == T0
    assert batch.interval_ns == 60 * S
    assert batch.sensor == "test-sensor"
    f = batch.flows
    assert f.shape == (2,)
    by_ttl = {int(r["ttl"]): r for r in f}
    assert int(by_ttl[64]["packet_count"]) == 3
    assert int(by_ttl[64]["first_ns"]) == T0 + 1 * S
    assert int(by_ttl[64]["last_ns"]) == T0 + 4 * S
    assert int(by_ttl[63]["packet_count"]) == 1
    assert format_addr16(by_ttl[64]["src_ip"]) == "192.0.2.1"
    assert format_addr16(by_ttl[64]["dst_ip"]) == "198.18.0.1"
    assert int(by_ttl[64]["ip_version"]) == 4
    assert int(by_ttl[64]["tcp_flags"]) == TCP_SYN
    assert int(by_ttl[64]["src_port"]) == 40000
    assert int(by_ttl[64]["dst_port"]) == 80
    assert int(by_ttl[64]["ip_len"]) == 40


def test_every_key_field_splits_flows() -> None:
    base: dict[str, Any] = {"ts_ns": T0}
    variants: list[dict[str, Any]] = [
        {},
        {"src": "192.0.2.2"},
        {"dst": "198.18.0.2"},
        {"src_port": 1},
        {"dst_port": 2},
        {"protocol": 17, "tcp_flags": 0},
        {"ttl": 1},
        {"tcp_flags": TCP_SYN | 0x80},
        {"ip_len": 44},
        {"tcp_window": 1024},
        {"tcp_hdr_len": 24},
        {"frag_flags": 2},
        {"vlan": 7},
        {"src_mac": 0x0200_0000_0001},
    ]
    batch = one_batch(packets(*({**base, **v} for v in variants)))
    assert batch.flows.shape == (len(variants),)
    assert sorted(int(c) for c in batch.flows["packet_count"]) == [1] * len(variants)


def test_flow_order_depends_only_on_the_set_of_flows() -> None:
    rows = [
        {"ts_ns": T0 + i * S, "src": src, "dst": dst}
        for i, (src, dst) in enumerate([("203.0.113.9", "198.18.0.1"), ("10.0.0.1", "198.18.0.9"),
                                        ("10.0.0.1", "198.18.0.2"), ("2001:db8::1", "2001:db8:dead::1")])
    ]
    forward = one_batch(packets(*rows))
    backward = one_batch(packets(*reversed(rows)), reorder_slack=10.0)
    assert forward.flows.tobytes() == backward.flows.tobytes()
    assert sorted(format_addr16(r["src_ip"]) for r in forward.flows) == [
        "10.0.0.1", "10.0.0.1", "2001:db8::1", "203.0.113.9"]


def test_packet_exactly_at_the_boundary_opens_the_next_interval_and_closes_this_one() -> None:
    b = builder()
    assert b.push(packets({"ts_ns": T0 + 59 * S + 999_999_999})) == []
    closed = b.push(packets({"ts_ns": T0 + 60 * S}))
    assert [c.interval_start_ns for c in closed] == [T0]
    assert int(closed[0].flows["packet_count"].sum()) == 1
    rest = b.flush()
    assert [c.interval_start_ns for c in rest] == [T0 + 60 * S]
    assert int(rest[0].flows["first_ns"][0]) == T0 + 60 * S


def test_intervals_are_aligned_to_the_epoch() -> None:
    b = builder(interval=300)
    out = b.push(packets({"ts_ns": T0 + 7 * S})) + b.flush()
    # T0 is a multiple of 60 s; the 300 s interval holding it starts at the multiple of 300 below
    assert out[0].interval_start_ns == (T0 + 7 * S) // (300 * S) * (300 * S)
    assert out[0].interval_ns == 300 * S


def test_slot_counts_are_packets_per_sixth_of_the_interval() -> None:
    offsets = [0, 9_999_999_999, 10 * S, 25 * S, 50 * S, 59_999_999_999, 59_999_999_999]
    batch = one_batch(packets(*({"ts_ns": T0 + o} for o in offsets)))
    assert batch.flows.shape == (1,)
    assert batch.flows["slot_counts"][0].tolist() == [2, 1, 1, 0, 0, 3]
    assert int(batch.flows["packet_count"][0]) == 7


def test_empty_intervals_are_not_emitted_and_gaps_close_everything_before() -> None:
    b = builder()
    b.push(packets({"ts_ns": T0}))
    closed = b.push(packets({"ts_ns": T0 + 3600 * S}))
    assert [c.interval_start_ns for c in closed] == [T0]
    assert [c.interval_start_ns for c in b.flush()] == [T0 + 3600 * S]


def test_late_packets_are_counted_where_event_time_stands_and_dropped() -> None:
    b = builder()
    closed = b.push(packets({"ts_ns": T0 + 10 * S}, {"ts_ns": T0 + 61 * S}, {"ts_ns": T0 + 59 * S}))
    assert [c.interval_start_ns for c in closed] == [T0]
    assert closed[0].stats["packets"] == 1
    assert closed[0].stats["late_packets"] == 0
    (nxt,) = b.flush()
    assert nxt.stats["packets"] == 1
    assert nxt.stats["dark_packets"] == 1
    assert nxt.stats["late_packets"] == 1
    assert int(nxt.flows["packet_count"].sum()) == 1
    assert b.stats["late_packets"] == 1
    assert b.stats["packets"] == 2


def test_reorder_slack_keeps_the_previous_interval_open() -> None:
    b = builder(reorder_slack=5.0)
    assert b.push(packets({"ts_ns": T0 + 10 * S}, {"ts_ns": T0 + 61 * S}, {"ts_ns": T0 + 59 * S})) == []
    # the watermark reaches 60 s + 5 s of slack: the first interval closes with both packets
    closed = b.push(packets({"ts_ns": T0 + 65 * S}))
    assert [c.interval_start_ns for c in closed] == [T0]
    assert int(closed[0].flows["packet_count"].sum()) == 2
    assert closed[0].stats["late_packets"] == 0
    closed = b.push(packets({"ts_ns": T0 + 58 * S}))  # now it is late
    assert closed == []
    (nxt,) = b.flush()
    assert nxt.stats["late_packets"] == 1
    assert int(nxt.flows["packet_count"].sum()) == 2


def test_flush_then_push_for_a_flushed_interval_is_late() -> None:
    b = builder()
    b.push(packets({"ts_ns": T0}))
    assert len(b.flush()) == 1
    assert b.push(packets({"ts_ns": T0 + S})) == []
    (only_late,) = b.flush()
    assert only_late.flows.shape == (0,)
    assert only_late.stats["late_packets"] == 1


def test_advance_closes_idle_intervals() -> None:
    b = builder()
    b.push(packets({"ts_ns": T0}))
    assert b.advance(T0 + 59 * S) == []
    assert [c.interval_start_ns for c in b.advance(T0 + 60 * S)] == [T0]


def test_darknet_filter_ipv4_and_ipv6() -> None:
    pk = packets(
        {"ts_ns": T0, "dst": "198.18.0.1"},
        {"ts_ns": T0, "dst": "198.19.255.255"},
        {"ts_ns": T0, "dst": "198.20.0.0"},  # just outside the /15
        {"ts_ns": T0, "dst": "198.17.255.255"},
        {"ts_ns": T0, "src": "2001:db8::1", "dst": "2001:db8:dead:1::1"},
        {"ts_ns": T0, "src": "2001:db8::1", "dst": "2001:db8:beef::1"},
        # an IPv4-mapped destination in an IPv6 header is not in the IPv4 prefix
        {"ts_ns": T0, "src": "2001:db8::1", "dst": "::ffff:198.18.0.1"},
    )
    pk["ip_version"][6] = 6
    batch = one_batch(pk)
    dsts = sorted(format_addr16(r["dst_ip"]) for r in batch.flows)
    assert dsts == ["198.18.0.1", "198.19.255.255", "2001:db8:dead:1::1"]
    assert batch.stats["dark_packets"] == 3
    assert batch.stats["outside_packets"] == 4
    v6 = next(r for r in batch.flows if format_addr16(r["dst_ip"]).startswith("2001"))
    assert int(v6["ip_version"]) == 6
    assert int(v6["ip_len"]) == 60


def test_ipv4_only_darknet_drops_all_ipv6() -> None:
    b = FlowBuilder(DarkPrefixes.parse("0.0.0.0/0"), SensorSettings(), "s")
    out = b.push(packets({"ts_ns": T0, "src": "2001:db8::1", "dst": "2001:db8:dead::1"},
                         {"ts_ns": T0, "dst": "8.8.8.8"})) + b.flush()
    assert out[0].stats["outside_packets"] == 1
    assert out[0].stats["dark_packets"] == 1


def test_icmp_type_code_in_port_fields_and_quoted_victim() -> None:
    pk = packets(
        {   # port unreachable quoting a UDP packet sent (spoofed) from the darknet to the victim
            "ts_ns": T0, "src": "203.0.113.5", "protocol": 1, "tcp_flags": 0, "icmp_type": 3,
            "icmp_code": 3, "src_port": 0, "dst_port": 0, "ip_len": 56, "inner_src": "198.18.0.1",
            "inner_dst": "203.0.113.5", "inner_protocol": 17, "inner_src_port": 1234,
            "inner_dst_port": 53,
        },
        {"ts_ns": T0 + S, "src": "203.0.113.6", "protocol": 1, "tcp_flags": 0, "icmp_type": 0,
         "icmp_code": 0, "src_port": 0, "dst_port": 0, "ip_len": 84},
    )
    batch = one_batch(pk)
    err, echo = sorted(batch.flows, key=lambda r: format_addr16(r["src_ip"]))
    assert (int(err["src_port"]), int(err["dst_port"]), int(err["protocol"])) == (3, 3, 1)
    assert format_addr16(err["quoted_dst_ip"]) == "203.0.113.5"
    assert int(err["quoted_protocol"]) == 17
    assert int(err["quoted_dst_port"]) == 53
    assert int(err["tcp_flags"]) == 0 and int(err["tcp_window"]) == 0
    assert (int(echo["src_port"]), int(echo["dst_port"])) == (0, 0)
    assert echo["quoted_dst_ip"].tobytes() == bytes(16)
    s_err = next(s for s in batch.samples if format_addr16(s["src_ip"]) == "203.0.113.5")
    assert format_addr16(s_err["quoted_src_ip"]) == "198.18.0.1"
    assert format_addr16(s_err["quoted_dst_ip"]) == "203.0.113.5"
    assert (int(s_err["quoted_src_port"]), int(s_err["quoted_dst_port"])) == (1234, 53)
    assert (int(s_err["icmp_type"]), int(s_err["icmp_code"])) == (3, 3)


def test_icmpv6_type_and_code() -> None:
    pk = packets({"ts_ns": T0, "src": "2001:db8::9", "dst": "2001:db8:dead::7", "protocol": 58,
                  "tcp_flags": 0, "icmp_type": 128, "icmp_code": 0, "src_port": 0, "dst_port": 0})
    (row,) = one_batch(pk).flows
    assert (int(row["src_port"]), int(row["dst_port"]), int(row["protocol"])) == (128, 0, 58)


def test_tcp_fields_window_only_for_pure_syn_and_ns_dropped() -> None:
    pk = packets(
        {"ts_ns": T0, "tcp_flags": TCP_SYN | TCP_NS, "tcp_window": 1024, "tcp_hdr_len": 24},
        {"ts_ns": T0, "src": "192.0.2.7", "tcp_flags": TCP_SYN | TCP_ACK, "tcp_window": 29200},
    )
    syn, synack = sorted(one_batch(pk).flows, key=lambda r: format_addr16(r["src_ip"]))
    assert (int(syn["tcp_flags"]), int(syn["tcp_window"]), int(syn["tcp_hdr_len"])) == (TCP_SYN, 1024, 24)
    assert (int(synack["tcp_flags"]), int(synack["tcp_window"]), int(synack["tcp_hdr_len"])) == (
        TCP_SYN | TCP_ACK, 0, 0)


def test_fragments_and_ip_flags() -> None:
    pk = packets(
        {"ts_ns": T0, "protocol": 17, "tcp_flags": 0, "frag_flags": 1, "frag_offset": 0, "ip_len": 1500},
        {"ts_ns": T0, "protocol": 17, "tcp_flags": 0, "frag_flags": 0, "frag_offset": 1480,
         "src_port": 0, "dst_port": 0, "ip_len": 520},
        {"ts_ns": T0, "frag_flags": 2},
    )
    flags = sorted(int(r["ip_flags"]) for r in one_batch(pk).flows)
    assert flags == [IPF_MF, IPF_DF, IPF_FRAGMENT]


def test_jumbo_ip_length_saturates() -> None:
    (row,) = one_batch(packets({"ts_ns": T0, "src": "2001:db8::1", "dst": "2001:db8:dead::1",
                                "ip_len": 100_000})).flows
    assert int(row["ip_len"]) == 65535


def test_samples_first_k_per_source_in_time_order() -> None:
    pk = packets(
        *({"ts_ns": T0 + i * S, "dst": f"198.18.0.{i}", "ip_id": 54321, "tcp_seq": 1000 + i}
          for i in range(6)),
        *({"ts_ns": T0 + i * S, "src": "192.0.2.9", "dst": f"198.18.1.{i}", "tcp_seq": i} for i in range(2)),
    )
    batch = one_batch(pk, samples_per_source=3)
    s = batch.samples
    assert [format_addr16(x) for x in s["src_ip"]] == ["192.0.2.1"] * 3 + ["192.0.2.9"] * 2
    assert s["tcp_seq"].tolist() == [1000, 1001, 1002, 0, 1]
    assert s["ts_ns"].tolist() == [T0, T0 + S, T0 + 2 * S, T0, T0 + S]
    assert s["ip_id"].tolist() == [54321] * 3 + [0, 0]
    assert [format_addr16(x) for x in s["dst_ip"][:3]] == ["198.18.0.0", "198.18.0.1", "198.18.0.2"]
    assert batch.stats["samples"] == 5
    assert batch.stats["sources"] == 2


def test_samples_keep_the_first_k_with_a_payload_too() -> None:
    # masscan's UDP cookie shows only in its few probes with a payload, late among empty ones
    empty = [{"ts_ns": T0 + i * S, "protocol": 17, "dst_port": 600 + i, "tcp_seq": i} for i in range(6)]
    full = [{"ts_ns": T0 + (10 + i) * S, "protocol": 17, "dst_port": 53 + i, "tcp_seq": 10 + i,
             "payload_len": 31, "payload_cap": 24, "payload_head": b"\x0a\xb1" + bytes(22)}
            for i in range(4)]  # fmt: skip
    other = [{"ts_ns": T0 + i * S, "src": "192.0.2.9", "tcp_seq": 100 + i} for i in range(5)]
    batch = one_batch(packets(*empty, *full, *other), samples_per_source=2)
    s = batch.samples
    assert [format_addr16(x) for x in s["src_ip"]] == ["192.0.2.1"] * 4 + ["192.0.2.9"] * 2
    assert s["tcp_seq"].tolist() == [0, 1, 10, 11, 100, 101]  # in (source, time) order
    assert s["payload_len"].tolist() == [0, 0, 31, 31, 0, 0]
    assert s["payload_cap"].tolist() == [0, 0, 24, 24, 0, 0]
    assert s["payload_head"][2].tobytes()[:2] == b"\x0a\xb1"
    # a payload among the first K is not sampled twice
    early = packets({"ts_ns": T0, "payload_len": 5}, *({"ts_ns": T0 + i * S} for i in range(1, 4)))
    assert one_batch(early, samples_per_source=2).samples["ts_ns"].tolist() == [T0, T0 + S]


def test_samples_follow_timestamps_not_arrival_within_the_slack() -> None:
    pk = packets({"ts_ns": T0 + 3 * S, "tcp_seq": 3}, {"ts_ns": T0 + 1 * S, "tcp_seq": 1},
                 {"ts_ns": T0 + 2 * S, "tcp_seq": 2}, {"ts_ns": T0 + 1 * S, "tcp_seq": 11})
    batch = one_batch(pk, samples_per_source=3, reorder_slack=5.0)
    # ties on the timestamp keep arrival order
    assert batch.samples["tcp_seq"].tolist() == [1, 11, 2]


def test_samples_raw_fields() -> None:
    pk = packets({"ts_ns": T0, "tcp_flags": TCP_SYN | TCP_NS, "tcp_opt_kinds": 0x0402, "tcp_mss": 1460,
                  "tcp_seq": 0xC6120001, "tcp_ack": 7, "ip_id": 4242, "ttl": 255, "tcp_window": 1024})
    (s,) = one_batch(pk).samples
    assert int(s["tcp_flags"]) == TCP_SYN | TCP_NS
    assert (int(s["tcp_opt_kinds"]), int(s["tcp_mss"])) == (0x0402, 1460)
    assert (int(s["tcp_seq"]), int(s["tcp_ack"]), int(s["ip_id"])) == (0xC6120001, 7, 4242)
    assert (int(s["ttl"]), int(s["tcp_window"]), int(s["tcp_hdr_len"])) == (255, 1024, 20)
    assert (int(s["src_port"]), int(s["dst_port"]), int(s["protocol"])) == (40000, 80, 6)


def test_zero_samples_per_source() -> None:
    batch = one_batch(packets({"ts_ns": T0}, {"ts_ns": T0, "src": "192.0.2.9"}, {"ts_ns": T0, "ttl": 1}),
                      samples_per_source=0)
    assert batch.samples.shape == (0,)
    assert (batch.stats["sources"], batch.stats["flows"]) == (2, 3)


def test_stats_count_not_ip_and_malformed_by_reason() -> None:
    pk = packets(
        {"ts_ns": T0},
        {"ts_ns": T0, "dst": "8.8.8.8"},
        {"ts_ns": T0, "status": int(Status.NOT_IP), "layers": 0, "ip_version": 0},
        {"ts_ns": T0, "status": int(Status.TRUNCATED_IP), "layers": 0},
        {"ts_ns": T0, "status": int(Status.TRUNCATED_IP), "layers": 0},
        {"ts_ns": T0, "status": int(Status.BAD_TRANSPORT_HEADER)},
        {"ts_ns": T0, "status": int(Status.UNKNOWN_LINKTYPE), "layers": 0},
    )
    batch = one_batch(pk)
    assert list(batch.stats) == list(STAT_NAMES)
    expect = dict.fromkeys(STAT_NAMES, 0)
    expect.update(
        packets=7, dark_packets=1, outside_packets=1, not_ip_packets=1, malformed_packets=4,
        truncated_ip_packets=2, bad_transport_header_packets=1, unknown_linktype_packets=1,
        flows=1, sources=1, samples=1,
    )
    assert dict(batch.stats) == expect


def test_intervals_with_only_outside_traffic_still_report_stats() -> None:
    batch = one_batch(packets({"ts_ns": T0, "dst": "8.8.8.8"}))
    assert batch.flows.shape == (0,) and batch.samples.shape == (0,)
    assert batch.stats["outside_packets"] == 1


def test_builder_stats_accumulate() -> None:
    b = builder()
    b.push(packets({"ts_ns": T0}, {"ts_ns": T0 + 61 * S, "dst": "8.8.8.8"}))
    b.push(packets({"ts_ns": T0 + 121 * S}))
    b.flush()
    st = b.stats
    assert (st["packets"], st["dark_packets"], st["outside_packets"]) == (3, 2, 1)
    assert (st["flows"], st["intervals"]) == (2, 3)


def test_wrong_dtype_is_refused() -> None:
    with pytest.raises(TypeError):
        builder().push(np.zeros(3, dtype=[("ts_ns", "<i8")]))


def test_empty_push_returns_nothing() -> None:
    b = builder()
    assert b.push(packets()) == []
    assert b.flush() == []


def test_replay_is_byte_identical() -> None:
    pk = packets(*({"ts_ns": T0 + i * 7 * S, "ttl": i % 3} for i in range(30)))
    runs = []
    for _ in range(2):
        b = builder()
        runs.append(b"".join(encode_batch(x) for x in b.push(pk) + b.flush()))
    assert runs[0] == runs[1]
    assert len(runs[0]) > 0


def test_timestamps_at_the_int64_limits_are_kept_in_range() -> None:
    lo, hi = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)
    b = builder(interval=86400)
    out = b.push(packets({"ts_ns": lo}, {"ts_ns": 0}, {"ts_ns": hi - 10}, {"ts_ns": hi}, {"ts_ns": 5}))
    out += b.flush() + b.push(packets({"ts_ns": hi})) + b.flush()
    day = 86400 * S
    floor = lo + 2 * day  # garbage far before 1970 is raised to this
    assert [(o.interval_start_ns, o.stats["packets"], o.stats["late_packets"]) for o in out] == [
        (floor - floor % day, 1, 0), (0, 1, 0), (hi - hi % day, 2, 1), (hi - hi % day, 0, 1)]
    for o in out:
        for r in o.flows:
            assert o.interval_start_ns <= int(r["first_ns"]) <= int(r["last_ns"]) < o.interval_start_ns + day
        assert all(o.interval_start_ns <= int(t) for t in o.samples["ts_ns"])
