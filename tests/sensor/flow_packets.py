"""Hand-made PACKET_DTYPE rows for flow builder tests (what the parser would produce)."""

from __future__ import annotations

import ipaddress
from typing import Any

import numpy as np
import numpy.typing as npt

from sensor.fields import (
    LAYER_INNER,
    LAYER_INNER_PORTS,
    LAYER_IP,
    LAYER_TRANSPORT,
    PACKET_DTYPE,
    TCP_SYN,
    Status,
)

__all__ = ["T0", "S", "packets", "synthetic"]

S = 1_000_000_000
#: 2021-08-20 05:47:00 UTC, a multiple of 60 s
T0 = 1_629_438_420 * S
assert T0 % (60 * S) == 0


def _ip(row: npt.NDArray[np.void], prefix: str, text: str) -> None:
    ip = ipaddress.ip_address(text)
    if ip.version == 4:
        row[f"{prefix}_ip4"] = int(ip)
    else:
        row[f"{prefix}_ip6"] = np.frombuffer(ip.packed, dtype="V16")[0]


def packets(*rows: dict[str, Any]) -> npt.NDArray[np.void]:
    """One PACKET_DTYPE row per dict; ``src``/``dst``/``inner_src``/``inner_dst`` as text.

    Defaults: an IPv4 TCP SYN, TTL 64, IP length 40, status OK.
    """
    out = np.zeros(len(rows), dtype=PACKET_DTYPE)
    for i, spec in enumerate(rows):
        spec = dict(spec)
        row = out[i : i + 1]
        src = spec.pop("src", "192.0.2.1")
        dst = spec.pop("dst", "198.18.0.1")
        version = ipaddress.ip_address(dst).version
        row["ip_version"] = version
        row["layers"] = LAYER_IP | LAYER_TRANSPORT
        row["protocol"] = 6
        row["ttl"] = 64
        row["ip_len"] = 40 if version == 4 else 60
        row["tcp_flags"] = TCP_SYN
        row["tcp_hdr_len"] = 20
        row["tcp_window"] = 65535
        row["src_port"] = 40000
        row["dst_port"] = 80
        _ip(row, "src", src)
        _ip(row, "dst", dst)
        for inner in ("inner_src", "inner_dst"):
            if inner in spec:
                text = spec.pop(inner)
                row["inner_ip_version"] = ipaddress.ip_address(text).version
                row["layers"] = row["layers"] | LAYER_INNER
                _ip(row, inner, text)
        if "inner_dst_port" in spec:
            row["layers"] = row["layers"] | LAYER_INNER_PORTS
        for name, value in spec.items():
            row[name] = value
    return out


def synthetic(n: int, seed: int, span_s: int = 200, jitter_s: float = 0.0,
              v6_share: float = 0.2) -> npt.NDArray[np.void]:
    """n packets over span_s seconds: few sources and keys so that flows repeat, some IPv6,
    some outside the darknet, some malformed; timestamps sorted, then jittered."""
    rng = np.random.default_rng(seed)
    pk = np.zeros(n, dtype=PACKET_DTYPE)
    ts = T0 + np.sort(rng.integers(0, span_s * S, n))
    if jitter_s:
        ts = ts - rng.integers(0, int(jitter_s * S), n)
    pk["ts_ns"] = ts
    pk["layers"] = LAYER_IP | LAYER_TRANSPORT
    v6 = rng.random(n) < v6_share
    pk["ip_version"] = np.where(v6, 6, 4)
    pk["src_ip4"] = 0xC0000200 + rng.integers(0, 5, n)
    pk["dst_ip4"] = 0xC6120000 + rng.integers(0, 300, n)  # 198.18.0.0 .. 198.18.1.43
    src6 = np.zeros((n, 16), np.uint8)
    src6[:, :4] = [0x20, 0x01, 0x0D, 0xB8]
    src6[:, 15] = rng.integers(0, 3, n)
    dst6 = np.zeros((n, 16), np.uint8)
    dst6[:, :6] = [0x20, 0x01, 0x0D, 0xB8, 0xDE, 0xAD]
    dst6[:, 15] = rng.integers(0, 200, n)
    pk["src_ip6"] = src6.view("V16").reshape(-1)
    pk["dst_ip6"] = dst6.view("V16").reshape(-1)
    pk["protocol"] = rng.choice([1, 6, 17], n)
    pk["ttl"] = rng.choice([64, 255], n)
    pk["src_port"] = rng.integers(40000, 40003, n)
    pk["dst_port"] = rng.choice([22, 23, 80], n)
    pk["tcp_flags"] = np.where(pk["protocol"] == 6, rng.choice([0x02, 0x12, 0x04], n), 0)
    pk["tcp_seq"] = rng.integers(0, 2**32, n)
    pk["ip_id"] = rng.integers(0, 2**16, n)
    pk["ip_len"] = 40
    # a few carry a payload: the builder samples those separately
    pay = (rng.random(n) < 0.15) & (pk["protocol"] != 1)
    pk["payload_len"] = np.where(pay, rng.integers(1, 100, n), 0)
    head = np.where(pay[:, None], rng.integers(0, 256, (n, 24), dtype=np.uint8), 0).astype(np.uint8)
    pk["payload_head"] = head.view("V24")[:, 0]
    bad = rng.random(n) < 0.03
    pk["status"][bad] = rng.choice([int(Status.NOT_IP), int(Status.TRUNCATED_IP)], int(bad.sum()))
    return pk
