"""Hand-made PACKET_DTYPE rows for flow builder tests (what the parser would produce)."""

from __future__ import annotations

import ipaddress
from typing import Any

import numpy as np
import numpy.typing as npt

from sensor.fields import LAYER_INNER, LAYER_INNER_PORTS, LAYER_IP, LAYER_TRANSPORT, PACKET_DTYPE, TCP_SYN

__all__ = ["T0", "S", "packets"]

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
