"""Scan detector on hand-made batches, telescope 198.18.0.0/16 (n = 65536).

On a /16 the scaled thresholds are the floors: 10 distinct destinations
(100 * 2^16 / 2^24 = 0.4 -> floor 10), 15 ports (Zeek), rate >= 10 pps after
x 65536 extrapolation, idle timeout 1 day (capped).
"""

from __future__ import annotations

from darknet_iodef.events import decode_event, encode_event
from tests.aggregator.flowmaker import SEC, T0, batch


def run(agg, *batches):
    events = []
    for b in batches:
        events += agg.process(b)
    events += agg.flush()
    for e in events:  # every event passes the shared contract
        decode_event(encode_event(e))
    return events


def horizontal(src: str, count: int, port: int = 23, start: int = T0) -> list[dict]:
    return [
        {"src_ip": src, "dst_ip": f"198.18.{i // 200}.{i % 200 + 1}", "dst_port": port, "ts": i}
        for i in range(count)
    ]


def test_thresholds_scaled_for_a_slash16(make_agg) -> None:
    th = make_agg().th
    assert (th.n, th.scan_min_destinations, th.scan_min_ports, th.extrapolation) == (65536, 10, 15, 65536.0)
    assert th.scan_idle_ns == 86400 * SEC
    th8 = make_agg("10.0.0.0/8", internal_sources="").th
    assert (th8.scan_min_destinations, th8.scan_idle_ns, th8.bs_min_packets, th8.bs_min_window_packets) == (
        100,
        480 * SEC,
        25,
        30,
    )


def test_nine_destinations_is_no_scan_ten_is(make_agg) -> None:
    assert run(make_agg(), batch(horizontal("45.1.1.1", 9))) == []
    (ev,) = run(make_agg(), batch(horizontal("45.1.1.1", 10)))
    assert ev["source.ip"] == "45.1.1.1"
    assert ev["classification.identifier"] == "scan"
    assert (ev["extra.kind"], ev["extra.destinations_distinct"], ev["extra.packets"]) == (
        "horizontal",
        10,
        10,
    )
    assert (ev["destination.port"], ev["protocol.transport"], ev["extra.ports_distinct"]) == (23, "tcp", 1)
    assert ev["extra.coverage"] == 0.000152588  # 10 / 65536, 6 significant digits
    # 10 packets over 9 s, x 65536
    assert ev["extra.rate_pps_estimated"] == round(10 / 9 * 65536, 1)
    assert ev["extra.rate_pps_observed"] == round(10 / 9, 3)
    assert ev["time.source"] == "2024-01-01T00:00:00+00:00"
    assert ev["extra.time_end"] == "2024-01-01T00:00:09+00:00"
    assert ev["extra.tool"] is None and ev["extra.tool_evidence"] == {}


def test_repeated_destinations_count_once(make_agg) -> None:
    rows = horizontal("45.1.1.1", 9) * 3
    assert run(make_agg(), batch(rows)) == []


def test_destinations_accumulate_across_intervals(make_agg) -> None:
    b1 = batch(horizontal("45.1.1.1", 6))
    rows = [{"src_ip": "45.1.1.1", "dst_ip": f"198.18.9.{i}", "dst_port": 23, "ts": 1} for i in range(1, 5)]
    (ev,) = run(make_agg(), b1, batch(rows, start=T0 + 60 * SEC))
    assert ev["extra.destinations_distinct"] == 10


def test_rate_threshold(make_agg) -> None:
    # 10 destinations over a day (one every 9,600 s): 10/86400 * 65536 = 7.6 pps < 10 pps
    batches = [
        batch([{"src_ip": "45.1.1.1", "dst_ip": f"198.18.0.{i + 1}"}], start=T0 + i * 9600 * SEC)
        for i in range(10)
    ]
    assert run(make_agg(), *batches) == []
    (ev,) = run(make_agg(scan_min_rate_pps=5.0), *batches)
    assert ev["extra.destinations_distinct"] == 10


def test_flow_times_outside_their_interval_are_clamped(make_agg) -> None:
    rows = horizontal("45.1.1.1", 10)
    rows[3]["first_ns"] = rows[3]["last_ns"] = T0 - 10**18  # a broken sensor
    (ev,) = run(make_agg(), batch(rows))
    assert ev["time.source"] == "2024-01-01T00:00:00+00:00"


def test_vertical_strobe_random(make_agg) -> None:
    vert = [{"src_ip": "45.2.2.2", "dst_ip": "198.18.0.9", "dst_port": p, "ts": p % 60} for p in range(1, 16)]
    # every host on every one of three ports
    strobe = [
        {"src_ip": "45.3.3.3", "dst_ip": f"198.18.1.{i // 3 + 1}", "dst_port": (22, 23, 80)[i % 3], "ts": i}
        for i in range(30)
    ]
    # Mirai-like: each host on one of two ports (23, one probe in ten 2323)
    mirai = [
        {
            "src_ip": "45.9.9.9",
            "dst_ip": f"198.18.5.{i + 1}",
            "dst_port": 2323 if i % 10 == 0 else 23,
            "ts": i,
        }
        for i in range(20)
    ]
    rand = [
        {"src_ip": "45.4.4.4", "dst_ip": f"198.18.2.{i}", "dst_port": 1000 + i, "ts": i} for i in range(1, 21)
    ]
    events = {e["source.ip"]: e for e in run(make_agg(), batch(vert + strobe + rand + mirai))}
    assert {ip: e["extra.kind"] for ip, e in events.items()} == {
        "45.2.2.2": "vertical",
        "45.3.3.3": "strobe",
        "45.4.4.4": "random",
        "45.9.9.9": "horizontal",
    }
    assert events["45.2.2.2"]["extra.ports_distinct"] == 15
    assert events["45.2.2.2"]["extra.destinations_distinct"] == 1
    # one host probed: the telescope saw the whole scan, nothing to extrapolate
    assert events["45.2.2.2"]["extra.rate_pps_estimated"] is None
    assert events["45.2.2.2"]["extra.rate_pps_observed"] == round(15 / 14, 3)  # t = 1..15 s
    assert events["45.3.3.3"]["extra.rate_pps_estimated"] == round(30 / 29 * 65536, 1)
    s = events["45.3.3.3"]
    assert s["extra.ports_distinct"] == 3 and s["extra.destinations_distinct"] == 10
    assert s["extra.ports"] == [
        {"destinations": 10, "packets": 10, "port": 22, "protocol": "tcp"},
        {"destinations": 10, "packets": 10, "port": 23, "protocol": "tcp"},
        {"destinations": 10, "packets": 10, "port": 80, "protocol": "tcp"},
    ]
    # fourteen ports on one host is not a port scan
    vert14 = [r for r in vert if r["dst_port"] != 15]
    assert run(make_agg(), batch(vert14)) == []


def test_multi_port_source_after_single_port_history(make_agg) -> None:
    b1 = batch(horizontal("45.5.5.5", 4, port=23))
    rows = [{"src_ip": "45.5.5.5", "dst_ip": f"198.18.7.{i}", "dst_port": 2323, "ts": 1} for i in range(1, 7)]
    (ev,) = run(make_agg(), b1, batch(rows, start=T0 + 60 * SEC))
    assert ev["extra.kind"] == "horizontal"  # two ports, each host on one of them
    assert ev["extra.ports"] == [
        {"destinations": 6, "packets": 6, "port": 2323, "protocol": "tcp"},
        {"destinations": 4, "packets": 4, "port": 23, "protocol": "tcp"},
    ]
    assert ev["extra.destinations_distinct"] == 10


def test_ongoing_scan_updates_its_event_then_ends(make_agg) -> None:
    agg = make_agg(scan_idle_s=600.0, revision_interval_s=120.0)
    out = agg.process(batch(horizontal("45.1.1.1", 10)))
    assert out == []
    out = agg.process(batch(horizontal("45.1.1.1", 20), start=T0 + 60 * SEC))
    (first,) = out  # emitted at the end of the first interval
    assert (first["extra.revision"], first["extra.packets"], first["extra.state"]) == (1, 10, "ongoing")
    out = agg.process(batch(horizontal("45.1.1.1", 30), start=T0 + 120 * SEC))
    assert out == []  # grown, but only 60 s since the last revision
    out = agg.process(batch([], start=T0 + 180 * SEC))
    (second,) = out
    assert second["extra.event_id"] == first["extra.event_id"]
    assert (second["extra.revision"], second["extra.packets"], second["extra.destinations_distinct"]) == (
        2,
        60,
        30,
    )
    # silence past the idle timeout: one last revision, then the state is gone
    out = agg.process(batch([], start=T0 + 2000 * SEC))
    (last,) = out
    assert (last["extra.revision"], last["extra.state"]) == (3, "ended")
    assert agg.scan.src.size == 0
    # the same source scanning again is a new incident with a new id
    out = agg.process(batch(horizontal("45.1.1.1", 10, start=T0 + 3000 * SEC), start=T0 + 3000 * SEC))
    out += agg.flush()
    (again,) = out
    assert again["extra.event_id"] != first["extra.event_id"] and again["extra.revision"] == 1


def test_idle_timeout_defaults_scale_with_n(make_agg) -> None:
    # k * 2^32 / (R_min * n) = 3 * 2^32 / (1.6 * 2^20) = 7680 s for a /12
    assert make_agg("198.16.0.0/12").th.scan_idle_ns == 7680 * SEC


def test_ipv6_scanner(make_agg) -> None:
    rows = [
        {"src_ip": "2a01:4f8::5", "dst_ip": f"2001:db8:dead::{i:x}", "dst_port": 22, "ts": i}
        for i in range(1, 11)
    ]
    (ev,) = run(make_agg(), batch(rows))
    assert ev["source.ip"] == "2a01:4f8::5"
    assert ev["extra.destinations_distinct"] == 10
    assert ev["extra.kind"] == "horizontal"
    # coverage of the IPv6 dark space (a /48); no Internet-wide extrapolation for IPv6
    assert ev["extra.coverage"] == float(f"{10 / 2**80:.6g}") > 0
    assert ev["extra.rate_pps_estimated"] is None


def test_icmp_echo_sweep_uses_the_type_as_port(make_agg) -> None:
    rows = [
        {
            "src_ip": "45.6.6.6",
            "dst_ip": f"198.18.3.{i}",
            "protocol": 1,
            "src_port": 8,
            "dst_port": 0,
            "tcp_flags": 0,
            "ts": i,
        }
        for i in range(1, 11)
    ]
    (ev,) = run(make_agg(), batch(rows))
    assert (ev["protocol.transport"], ev["destination.port"], ev["extra.kind"]) == ("icmp", 8, "horizontal")
