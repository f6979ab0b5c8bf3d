"""Bulk address helpers and dark-prefix membership."""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest

from darknet_iodef.addresses import (
    DarkPrefixes,
    addr16_from_v4,
    addr16_is_v4,
    addr16_to_v4,
    format_addr16,
    parse_addr16,
)
from darknet_iodef.errors import ConfigError


def test_v4_round_trip_and_text() -> None:
    v4 = np.array([0, 0xC0000201, 0xFFFFFFFF], dtype=np.uint32)
    a16 = addr16_from_v4(v4)
    assert a16.dtype.itemsize == 16
    assert addr16_is_v4(a16).tolist() == [True, True, True]
    assert addr16_to_v4(a16).tolist() == v4.tolist()
    assert [format_addr16(x) for x in a16] == ["0.0.0.0", "192.0.2.1", "255.255.255.255"]
    assert parse_addr16("192.0.2.1") == a16[1].tobytes()


def test_v6_text_round_trip() -> None:
    raw = parse_addr16("2001:db8::1")
    assert raw == ipaddress.IPv6Address("2001:db8::1").packed
    assert format_addr16(raw) == "2001:db8::1"
    assert not addr16_is_v4(np.array([raw], dtype="V16"))[0]


def test_prefixes_size_merges_overlaps() -> None:
    p = DarkPrefixes.parse("198.18.0.0/16, 198.18.128.0/17,198.19.0.0/24,2001:db8::/32")
    assert p.size_v4 == 65536 + 256
    assert [str(n) for n in p.v6_networks] == ["2001:db8::/32"]
    q = DarkPrefixes.parse("2001:db8::/32,2001:db8:1::/48,2001:db9::/48")
    assert q.size_v6 == 2**96 + 2**80 and q.size_v4 == 0


def test_prefix_membership_matches_ipaddress() -> None:
    spec = "10.0.0.0/8,198.18.0.0/15,203.0.113.128/25"
    p = DarkPrefixes.parse(spec)
    nets = [ipaddress.ip_network(s) for s in spec.split(",")]
    rng = np.random.default_rng(7)
    v4 = np.concatenate(
        [
            rng.integers(0, 2**32, 5000, dtype=np.uint64).astype(np.uint32),
            np.array([0x0A000000, 0x0AFFFFFF, 0x0B000000, 0x09FFFFFF, 0xC6120000, 0xC613FFFF,
                      0xC6140000, 0xCB00717F, 0xCB007180, 0xCB0071FF, 0xCB007200], dtype=np.uint32),
        ]
    )
    want = [any(ipaddress.IPv4Address(int(x)) in n for n in nets) for x in v4]
    assert p.contains_v4(v4).tolist() == want
    assert p.contains_addr16(addr16_from_v4(v4)).tolist() == want


def test_v6_membership_with_partial_byte_prefix() -> None:
    p = DarkPrefixes.parse("2001:db8:8000::/33")
    addrs = np.array(
        [parse_addr16(t) for t in ("2001:db8:8000::1", "2001:db8:ffff::", "2001:db8:7fff::1", "198.18.0.1")],
        dtype="V16",
    )
    assert p.contains_addr16(addrs).tolist() == [True, True, False, False]
    assert p.size_v4 == 0


@pytest.mark.parametrize("spec", ["", "10.0.0.1/8", "nonsense", "300.1.1.0/24"])
def test_bad_prefixes_name_the_setting(spec: str) -> None:
    with pytest.raises(ConfigError) as exc:
        DarkPrefixes.parse(spec)
    assert str(exc.value).startswith("setting darknet: ")
