"""``darknet-iodef packets``: CSV, JSON lines and npz output, --count, and bad input."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from darknet_iodef.cli import main
from sensor.capture import iter_packet_batches
from sensor.fields import PACKET_DTYPE
from sensor.packets_cmd import COLUMNS
from tests.sensor.conftest import Frame, eth, ip4, pcap_bytes, tcp, udp

Write = Callable[[str, bytes], Path]
T0 = 1_700_000_000_000_001_000
DNS = eth(ip4("192.0.2.1", "198.51.100.9", 17, udp(1234, 53, bytes.fromhex("ab1201000001") + bytes(24))))
ICMP_ERR = eth(ip4("203.0.113.5", "192.0.2.1", 1, bytes([3, 3, 0, 0, 0, 0, 0, 0])
                   + ip4("192.0.2.1", "198.51.100.9", 17, udp(1234, 53))[:28]))


@pytest.fixture
def capture(write_file: Write) -> Path:
    syn = tcp(40000, 23, seq=5, options=b"\x02\x04\x05\xb4\x01\x00\x00\x00")
    frames: list[Frame] = [
        (T0, eth(ip4("192.0.2.1", "198.51.100.9", 6, syn, ttl=250, ident=54321), vlans=[(0x8100, 42)])),
        (T0 + 1000, ICMP_ERR),
        (T0 + 2000, eth(b"\0" * 28, ethertype=0x0806)),
    ]
    frames.append((T0 + 3000, DNS[:14 + 20 + 8 + 5], len(DNS)))  # cut by the snap length
    return write_file("x.pcap", pcap_bytes(frames))


def test_csv_header_and_values(capture: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["packets", str(capture)]) == 0
    out = capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO(out)))
    assert out.splitlines()[0] == ",".join(COLUMNS)
    assert PACKET_DTYPE.names == COLUMNS
    syn, icmp, arp, dns = rows
    assert (syn["ts_ns"], syn["vlan"], syn["src_mac"]) == (str(T0), "42", "02:00:00:00:00:01")
    assert (syn["src_ip4"], syn["dst_ip4"], syn["src_ip6"]) == ("192.0.2.1", "198.51.100.9", "")
    assert (syn["ttl"], syn["ip_id"], syn["dst_port"], syn["tcp_seq"]) == ("250", "54321", "23", "5")
    assert (syn["tcp_flags"], syn["tcp_mss"], syn["tcp_opt_kinds"]) == ("2", "1460", "2-1")
    assert (icmp["icmp_type"], icmp["icmp_code"], icmp["inner_protocol"]) == ("3", "3", "17")
    assert (icmp["inner_src_ip4"], icmp["inner_dst_ip4"], icmp["inner_dst_port"]) == (
        "192.0.2.1", "198.51.100.9", "53")
    assert (arp["status"], arp["ip_version"], arp["src_ip4"]) == ("1", "0", "")
    # the real payload bytes only: the zero-padded rest (and the zeros ending the 5 bytes
    # captured of the 30-byte DNS payload) are real or not by payload_cap, not by value
    assert (dns["payload_len"], dns["payload_cap"], dns["payload_head"]) == ("30", "5", "ab12010000")
    assert (syn["payload_len"], syn["payload_cap"], syn["payload_head"]) == ("0", "0", "")


def test_jsonl_has_the_same_names_and_typed_values(capture: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["packets", "--format", "jsonl", str(capture)]) == 0
    objs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(objs) == 4 and list(objs[0]) == list(COLUMNS)
    assert objs[0]["ts_ns"] == T0 and objs[0]["dst_ip4"] == "198.51.100.9" and objs[0]["src_ip6"] is None
    assert (objs[0]["payload_head"], objs[3]["payload_head"]) == (None, "ab12010000")
    assert objs[3]["payload_len"] == 30
    assert objs[1]["inner_src_port"] == 1234


def test_npz_holds_the_raw_array(capture: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.npz"
    assert main(["packets", "--format", "npz", "--out", str(out), str(capture)]) == 0
    with np.load(out) as z:
        arr = z["packets"]
    assert arr.dtype == PACKET_DTYPE
    assert arr.tobytes() == np.concatenate(list(iter_packet_batches(capture))).tobytes()


def test_count_stops_after_n_packets_across_files(capture: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["packets", "--count", "4", str(capture), str(capture)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1 + 4
    assert main(["packets", "--count", "5", str(capture), str(capture)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1 + 5


def test_unreadable_capture_is_one_line_and_exit_1(capture: Path, write_file: Write,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_file("bad.pcap", b"not a capture at all")
    assert main(["packets", str(bad), str(capture)]) == 1
    out, err = capsys.readouterr()
    assert f"darknet-iodef: {bad}: offset 0: not a pcap or pcapng file (magic number 6e6f7420)\n" in err
    assert "Traceback" not in err
    assert len(out.splitlines()) == 1 + 4  # the good capture is still dumped


def test_truncated_tail_is_a_warning_and_exit_0(capture: Path, write_file: Write,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    cut = write_file("cut.pcap", capture.read_bytes()[:-5])
    assert main(["packets", str(cut)]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1 + 3
    assert "darknet-iodef: warning: " in err and "file ends inside a record (" in err
    assert "\r" not in err  # no progress bar when stderr is not a terminal


def test_out_file(capture: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.csv"
    assert main(["packets", "--out", str(out), str(capture)]) == 0
    assert out.read_text().count("\n") == 5
