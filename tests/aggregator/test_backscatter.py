"""Backscatter: vectors per (victim, protocol), Moore's thresholds on a /16 (floors: 5 packets,
3 in a 60 s window sliding by 10 s, 60 s long, 300 s idle)."""

from __future__ import annotations

from tests.aggregator.flowmaker import SEC, T0, batch
from tests.aggregator.test_scan import run

VICTIM = "93.184.216.34"


def synack(ts: float, dst: str = "198.18.1.1", port: int = 443, victim: str = VICTIM, n: int = 1) -> dict:
    return {
        "src_ip": victim,
        "dst_ip": dst,
        "src_port": port,
        "dst_port": 40000,
        "tcp_flags": 0x12,
        "ts": ts,
        "packet_count": n,
    }


def test_slash16_thresholds(make_agg) -> None:
    th = make_agg().th
    assert (th.bs_min_packets, th.bs_min_window_packets, th.bs_min_duration_ns, th.bs_idle_ns) == (
        5,
        3,
        60 * SEC,
        300 * SEC,
    )


def test_vector_just_below_and_above(make_agg) -> None:
    # 3 packets in the first 10 s slot, 2 more at 60 s and 65 s: 5 packets, 65 s, peak 3
    first = batch([synack(0), synack(1), synack(2)])
    (ev,) = run(make_agg(), first, batch([synack(0), synack(5)], start=T0 + 60 * SEC))
    assert ev["source.ip"] == VICTIM and ev["classification.identifier"] == "backscatter"
    assert (ev["classification.taxonomy"], ev["classification.type"]) == ("availability", "ddos")
    assert (ev["extra.packets"], ev["extra.peak_window_packets"], ev["source.port"]) == (5, 3, 443)
    assert ev["extra.responses"] == {"tcp-syn-ack": 5}
    assert ev["time.source"] == "2024-01-01T00:00:00+00:00"
    assert ev["extra.time_end"] == "2024-01-01T00:01:05+00:00"
    # 4 packets: too few
    assert run(make_agg(), first, batch([synack(5)], start=T0 + 60 * SEC)) == []
    # 5 packets in 59 s: too short
    assert run(make_agg(), batch([synack(0), synack(1), synack(2), synack(30), synack(59)])) == []
    # 5 packets 30 s apart over 120 s: never 3 in one window
    spread = [
        batch([synack(0), synack(30)]),
        batch([synack(0), synack(30)], start=T0 + 60 * SEC),
        batch([synack(0)], start=T0 + 120 * SEC),
    ]
    assert run(make_agg(), *spread) == []


def test_window_slides_across_the_interval_boundary(make_agg) -> None:
    # 2 packets in the last slot of one interval, 2 in the first of the next: a window of 4
    a = [synack(0), synack(51), synack(52)]
    b = [synack(1), synack(2), synack(8)]
    (ev,) = run(make_agg(), batch(a), batch(b, start=T0 + 60 * SEC))
    assert ev["extra.peak_window_packets"] == 5


def test_two_sensors_same_interval_merge(make_agg) -> None:
    a = batch([synack(1), synack(2)], sensor="s1")
    b = batch([synack(3), synack(4)], sensor="s2")
    c = batch([synack(5)], start=T0 + 60 * SEC, sensor="s1")
    (ev,) = run(make_agg(), a, b, c)
    assert ev["extra.peak_window_packets"] == 4 and ev["extra.packets"] == 5


def test_icmp_errors_name_the_quoted_destination(make_agg) -> None:
    def unreach(ts: float, dst: str) -> dict:
        return {
            "src_ip": "62.115.0.1",
            "dst_ip": dst,
            "protocol": 1,
            "src_port": 3,
            "dst_port": 3,
            "tcp_flags": 0,
            "quoted_dst_ip": "45.33.32.156",
            "quoted_protocol": 17,
            "quoted_dst_port": 53,
            "ts": ts,
        }

    rows = [unreach(i, f"198.18.{i}.1") for i in range(5)]
    (ev,) = run(make_agg(), batch(rows), batch([unreach(0, "198.18.9.9")], start=T0 + 60 * SEC))
    assert ev["source.ip"] == "45.33.32.156"
    assert (ev["protocol.transport"], ev["source.port"]) == ("udp", 53)
    assert ev["extra.responses"] == {"icmp-error": 6}
    assert ev["extra.attacker_networks_16"] == 1  # all inside 198.18.0.0/16


def test_attackers_counted_per_dark_slash16(make_agg) -> None:
    rows = [synack(i, dst=f"10.{i}.0.{j}") for i in range(5) for j in (1, 2)]
    rows.append(synack(0, dst="10.0.0.3"))
    (ev,) = run(
        make_agg("10.0.0.0/8", bs_min_packets=5, bs_min_window_packets=3),
        batch(rows),
        batch([synack(0, dst="10.0.9.9")] * 20, start=T0 + 60 * SEC),
    )
    assert ev["extra.attacker_networks_16"] == 5


def test_udp_is_not_backscatter(make_agg) -> None:
    rows = [
        {
            "src_ip": VICTIM,
            "dst_ip": "198.18.1.1",
            "protocol": 17,
            "src_port": 53,
            "dst_port": 4000,
            "tcp_flags": 0,
            "ts": i * 10,
        }
        for i in range(6)
    ]
    assert run(make_agg(), batch(rows), batch(rows, start=T0 + 60 * SEC)) == []


def test_rst_and_echo_reply_are_separate_vectors(make_agg) -> None:
    rst = [dict(synack(i), tcp_flags=0x14) for i in range(6)]
    echo = [
        {
            "src_ip": VICTIM,
            "dst_ip": "198.18.1.1",
            "protocol": 1,
            "src_port": 0,
            "dst_port": 0,
            "tcp_flags": 0,
            "ts": i,
        }
        for i in range(6)
    ]
    tail = [dict(synack(0), tcp_flags=0x14), {**echo[0], "ts": 0}]
    events = run(make_agg(), batch(rst + echo), batch(tail, start=T0 + 60 * SEC))
    assert sorted((e["protocol.transport"], e["extra.packets"]) for e in events) == [("icmp", 7), ("tcp", 7)]


def test_icmpv6_echo_reply_and_errors(make_agg) -> None:
    v = "2a00:1450::1"
    rows = [
        {
            "src_ip": v,
            "dst_ip": "2001:db8:dead::1",
            "protocol": 58,
            "src_port": 129,
            "dst_port": 0,
            "tcp_flags": 0,
            "ts": i,
        }
        for i in range(6)
    ]
    (ev,) = run(make_agg(), batch(rows), batch([rows[0]], start=T0 + 60 * SEC))
    assert ev["source.ip"] == v and ev["protocol.transport"] == "ipv6-icmp"


def test_idle_timeout_ends_the_vector(make_agg) -> None:
    agg = make_agg()
    agg.process(batch([synack(i) for i in range(6)]))
    out = agg.process(batch([synack(0)], start=T0 + 60 * SEC))
    out += agg.process(batch([], start=T0 + 120 * SEC))
    (first,) = out
    out = agg.process(batch([], start=T0 + 480 * SEC))  # last packet at 60 s: idle > 300 s
    (last,) = out
    assert last["extra.event_id"] == first["extra.event_id"]
    assert (last["extra.revision"], last["extra.state"]) == (2, "ended")
    assert agg.backscatter.vec.size == 0


def test_estimated_rate_at_the_victim(make_agg) -> None:
    rows = [synack(i * 10, n=10) for i in range(6)]
    (ev,) = run(make_agg(), batch(rows), batch([synack(0, n=10)], start=T0 + 60 * SEC))
    # 70 packets over 60 s x 65536; peak 60 per window -> 1 pps x 65536
    assert ev["extra.rate_pps_estimated"] == round(70 / 60 * 65536, 1)
    assert ev["extra.peak_rate_pps_estimated"] == 65536.0


def test_straddling_window_sees_a_second_sensors_batch(make_agg) -> None:
    # interval 1: 2 packets at 55 s; interval 2 arrives from two sensors, 1 packet
    # each at 61 s and 62 s: the window 55-65 s holds 4 only if both are summed with it
    a = batch([synack(0), synack(55), synack(56)], sensor="s1")
    b1 = batch([synack(1)], start=T0 + 60 * SEC, sensor="s1")
    b2 = batch([synack(2), synack(58)], start=T0 + 60 * SEC, sensor="s2")
    (ev,) = run(make_agg(), a, b1, b2)
    assert ev["extra.peak_window_packets"] == 4
