"""Planted entities: scanners, backscatter of DoS victims, spoofed floods, background.

Theory of operation: each function below plants one entity -- it fills rows of
:data:`bench.gen.wire.SPEC_DTYPE` with the header values the real thing puts
on the wire, and returns the entity's static description for the labels.
Header values come from DOMAIN.md:

- tool fingerprints (section 4): ZMap IP ID 54321, TTL 255, window 65535;
  Masscan IP ID = (dst ^ dport ^ seq) & 0xFFFF, TTL 255, window 1024;
  Mirai seq = destination address, dport 23 or 2323 one in ten, TTL 64;
  Nmap -sS window 1024..4096, MSS 1460 only, TTL 37-59, random IP ID, one
  source port; Unicornscan seq ^ dst ^ ((dport << 16) + sport) constant.
  Fields a tool's signature does not fix get plausible values (noted below).
- backscatter (section 3): SYN-ACK, RST, RST-ACK, ICMP echo reply and ICMP
  errors whose quoted header goes from the dark (spoofed) address to the
  victim; the victim is the quoted destination for errors.
- spoofing (section 5): bogon sources, sources inside the dark prefixes,
  random sources seen once or twice with inconsistent TTLs.

Observed TTL = initial TTL - hop count, the hop count fixed per real source
(6..24), so hop-count filtering sees real sources as consistent.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.gen.addrs import DarkSpace, SourcePool, v4_text, v6_text
from bench.gen.payloads import MASSCAN_UDP_PAYLOAD_PORTS, PAYLOADS, UDP_SERVICE_PAYLOAD
from bench.gen.wire import (
    EXT6_FRAG,
    EXT6_HBH_DST,
    EXT6_NONE,
    L4_ARP,
    L4_FRAG_TAIL,
    L4_ICMP_ECHO,
    L4_ICMP_ERR,
    L4_TCP,
    L4_UDP,
    OPT_LINUX_SYN,
    OPT_LINUX_SYNACK,
    OPT_MSS,
    OPT_NONE,
    OPT_WINDOWS_SYN,
    PROTO_TCP,
    PROTO_UDP,
    SPEC_DTYPE,
)

__all__ = ["LINKS", "POPULAR_TCP_PORTS", "Link", "Planter"]

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
DF = 0x4000
MF = 0x2000
NS = 1_000_000_000

#: ports darknets see most (NICTER / ORION reports): telnet, SSH, web, SMB, RDP, IoT
POPULAR_TCP_PORTS = np.array(
    [
        23,
        22,
        80,
        443,
        445,
        3389,
        8080,
        81,
        8443,
        5555,
        6379,
        1433,
        3306,
        21,
        25,
        5900,
        2323,
        7547,
        8000,
        8888,
        37215,
        52869,
        60001,
        9200,
        2375,
        139,
        135,
        110,
        143,
        993,
    ],
    dtype=np.uint16,
)
_POPULAR_W = 1.0 / np.arange(1, len(POPULAR_TCP_PORTS) + 1)
_POPULAR_W /= _POPULAR_W.sum()


@dataclass(frozen=True, slots=True)
class Link:
    """An ingress link of the telescope: VLAN tags and the upstream router's MAC."""

    name: str
    tags: tuple[int, ...]
    mac: int
    weight: float


#: ingress links; the random-spoofed flood arrives on its own (last) link
LINKS: tuple[Link, ...] = (
    Link("transit-a", (), 0x02_1A_2B_00_00_01, 0.60),
    Link("transit-b", (100,), 0x02_1A_2B_00_00_02, 0.20),
    Link("ix-peering", (200,), 0x02_1A_2B_00_00_03, 0.15),
    Link("carrier-qinq", (400, 10), 0x02_1A_2B_00_00_04, 0.05),
    Link("flood-link", (300,), 0x02_1A_2B_00_00_05, 0.0),
)
_LINK_W = np.array([lk.weight for lk in LINKS])
_LINK_W /= _LINK_W.sum()

#: UDP destination port -> payload template id, and template id -> payload length
_SERVICE_LUT = np.zeros(65536, dtype=np.uint8)
for _port, _tpl in UDP_SERVICE_PAYLOAD.items():
    _SERVICE_LUT[_port] = _tpl
_PAYLEN_LUT = np.zeros(256, dtype=np.uint16)
for _tpl, _pay in PAYLOADS.items():
    _PAYLEN_LUT[_tpl] = len(_pay.data)


def _ephemeral(rng: np.random.Generator, n: int, lo: int = 32768, hi: int = 61000) -> npt.NDArray[np.int64]:
    return rng.integers(lo, hi, size=n)


@dataclass
class Planter:
    """Collects planted rows and entity descriptions; owns the address pools."""

    dark: DarkSpace
    start_ns: int
    duration_ns: int
    seed: int
    pool: SourcePool = field(init=False)
    blocks: list[npt.NDArray[np.void]] = field(default_factory=list)
    entities: list[dict[str, Any]] = field(default_factory=list)
    _seq: np.random.SeedSequence = field(init=False)

    def __post_init__(self) -> None:
        self.pool = SourcePool(self.dark)
        self._seq = np.random.SeedSequence(self.seed)

    # -- helpers -----------------------------------------------------------------

    def rng(self) -> np.random.Generator:
        """A fresh generator per entity (spawned in planting order: deterministic)."""
        return np.random.default_rng(self._seq.spawn(1)[0])

    def window(
        self, rng: np.random.Generator, frac_lo: float, frac_hi: float, min_s: float = 0.0
    ) -> tuple[int, int]:
        """A random [t0, t1] inside the capture lasting frac_lo..frac_hi of it (at least min_s)."""
        d = self.duration_ns
        length = int(d * rng.uniform(frac_lo, frac_hi))
        length = min(d, max(length, int(min_s * NS)))
        t0 = self.start_ns + int(rng.integers(0, d - length + 1))
        return t0, t0 + length

    @staticmethod
    def times(rng: np.random.Generator, n: int, t0: int, t1: int) -> npt.NDArray[np.int64]:
        """n arrival times in [t0, t1], the first at t0 and the last at t1 (n >= 2)."""
        ts = rng.integers(t0, t1 + 1, size=n, dtype=np.int64)
        if n >= 2:
            ts[0], ts[1] = t0, t1
        return np.sort(ts)

    def link_for(self, rng: np.random.Generator) -> int:
        return int(rng.choice(len(LINKS), p=_LINK_W))

    def public_v6(self, rng: np.random.Generator, n: int) -> npt.NDArray[np.uint8]:
        """Global unicast IPv6 sources (2a00::/12 .. 2a0f::, outside documentation space)."""
        out = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
        out[:, 0] = 0x2A
        out[:, 1] = rng.integers(0, 16, size=n)
        return out

    def add(
        self, rows: npt.NDArray[np.void], meta: dict[str, Any], link: int | npt.NDArray[np.int64]
    ) -> None:
        """Register one entity: stamp its index and ingress link(s) on its rows."""
        idx = len(self.entities)
        rows["entity"] = idx
        links = np.broadcast_to(np.asarray(link, dtype=np.int64), (len(rows),))
        tags = np.array([len(lk.tags) for lk in LINKS], dtype=np.uint8)
        outer = np.array([lk.tags[0] if lk.tags else 0 for lk in LINKS], dtype=np.uint16)
        inner = np.array([lk.tags[1] if len(lk.tags) > 1 else 0 for lk in LINKS], dtype=np.uint16)
        macs = np.array([lk.mac for lk in LINKS], dtype=np.uint64)
        rows["tags"] = tags[links]
        rows["vlan_outer"] = outer[links]
        rows["vlan_inner"] = inner[links]
        rows["src_mac"] = macs[links]
        rows["link"] = links
        used = sorted({int(x) for x in np.unique(links)})
        meta = {"id": meta.pop("id"), **meta, "links": [LINKS[i].name for i in used]}
        self.entities.append(meta)
        self.blocks.append(rows)

    def entity_id(self, prefix: str) -> str:
        n = sum(1 for e in self.entities if str(e["id"]).startswith(prefix + "-")) + 1
        return f"{prefix}-{n:03d}"

    # -- scanners ----------------------------------------------------------------

    def _scan_targets(
        self, rng: np.random.Generator, kind: str, ports: list[int], n: int
    ) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
        """(destination, destination port) per probe for a scan kind (bro-simple-scan kinds)."""
        # a scan larger than a small telescope hits some dark addresses more than once
        if kind == "horizontal":
            dst = self.dark.sample_v4(rng, n, distinct=n <= self.dark.size_v4)
            return dst, np.full(n, ports[0], dtype=np.int64)
        if kind == "strobe":
            n_hosts = -(-n // len(ports))
            hosts = self.dark.sample_v4(rng, n_hosts, distinct=n_hosts <= self.dark.size_v4)
            dst = np.repeat(hosts, len(ports))[:n]
            dport = np.tile(np.asarray(ports, dtype=np.int64), len(hosts))[:n]
            order = rng.permutation(n)  # scanners randomise the probe order
            return dst[order], dport[order]
        if kind == "vertical":
            host = self.dark.sample_v4(rng, 1)
            dport = rng.choice(np.arange(1, 65536), size=n, replace=False)
            return np.repeat(host, n), dport.astype(np.int64)
        if kind == "random":
            return self.dark.sample_v4(rng, n, distinct=False), rng.integers(1, 65536, size=n)
        raise ValueError(f"unknown scan kind {kind!r}")

    def tcp_scanner(
        self,
        tool: str,
        kind: str,
        ports: list[int],
        n: int,
        *,
        frac: tuple[float, float] = (0.3, 0.6),
        bulk: bool = False,
        variant: str = "",
    ) -> None:
        rng = self.rng()
        src = self.pool.draw_one(rng)
        hops = int(rng.integers(6, 25))
        t0, t1 = self.window(rng, *frac, min_s=30)
        dst, dport = self._scan_targets(rng, kind, ports, n)
        if tool == "mirai":  # dport 23, or 2323 one probe in ten (Mirai scanner.c)
            dport = np.where(rng.random(n) < 0.1, 2323, 23)
        rows = np.zeros(n, dtype=SPEC_DTYPE)
        rows["ts_ns"] = self.times(rng, n, t0, t1)
        rows["ipver"], rows["l4"], rows["tcp_flags"] = 4, L4_TCP, SYN
        rows["src4"], rows["dst4"], rows["dport"] = src, dst, dport
        rows["seq"] = rng.integers(0, 1 << 32, size=n, dtype=np.uint64)
        rows["ip_id"] = rng.integers(0, 1 << 16, size=n)
        rows["mss"] = 1460
        sig: dict[str, Any] = {}
        if tool == "zmap":
            initial = 255
            rows["ip_id"] = 54321
            rows["window"] = 65535
            rows["opts"] = OPT_MSS if variant == "mss" else OPT_NONE  # MSS only since ZMap 3.0.0
            rows["sport"] = _ephemeral(rng, n)
            sig = {"ip_id": 54321, "window": 65535, "options": "mss" if variant == "mss" else "none"}
        elif tool == "masscan":
            initial = 255
            rows["window"] = 1024
            rows["opts"] = OPT_NONE
            rows["sport"] = int(rng.integers(40000, 60000))  # one source port per run
            rows["ip_id"] = (rows["dst4"] ^ rows["dport"] ^ rows["seq"]) & 0xFFFF
            sig = {"ip_id": "(dst ^ dport ^ seq) & 0xFFFF", "window": 1024, "options": "none"}
        elif tool == "mirai":
            initial = 64
            rows["seq"] = rows["dst4"]
            rows["window"] = int(rng.integers(1024, 65536))  # chosen once per bot (plausible)
            rows["sport"] = int(rng.integers(1024, 65536))
            rows["opts"] = OPT_NONE
            sig = {"seq": "== dst", "dports": [23, 2323]}
        elif tool == "nmap":
            initial = 0  # per probe, below
            rows["window"] = rng.choice([1024, 2048, 3072, 4096], size=n)
            rows["sport"] = int(rng.integers(32768, 65536))  # reused for the whole scan
            if variant == "xmas":  # -sX: FIN-PSH-URG, and nmap adds options to SYN probes only
                rows["tcp_flags"], rows["opts"] = FIN | PSH | URG, OPT_NONE
                rows["seq"] = int(rng.integers(0, 1 << 32))  # the try number's seq, same for all
                sig = {"window": [1024, 2048, 3072, 4096], "flags": "FIN-PSH-URG", "options": "none",
                       "ttl_initial": "37-59"}
            else:
                rows["opts"] = OPT_MSS
                sig = {"window": [1024, 2048, 3072, 4096], "options": "mss 1460", "ttl_initial": "37-59"}
        elif tool == "unicornscan":
            initial = 64
            key = int(rng.integers(0, 1 << 32))
            rows["sport"] = _ephemeral(rng, n, 1024, 65536)
            mix = ((rows["dport"].astype(np.uint64) << 16) + rows["sport"]) & 0xFFFFFFFF
            rows["seq"] = np.uint64(key) ^ rows["dst4"].astype(np.uint64) ^ mix
            rows["window"] = 4096  # plausible; the signature is the sequence number
            rows["opts"] = OPT_NONE
            sig = {"seq_xor_key": key}
        elif tool == "generic":
            os_kind = variant or ("linux" if rng.random() < 0.6 else "windows")
            if os_kind == "linux":
                initial = 64
                rows["window"] = int(rng.choice([29200, 64240]))
                rows["opts"] = OPT_LINUX_SYN
                rows["tsval"] = int(rng.integers(0, 1 << 31)) + (rows["ts_ns"] - t0) // 1_000_000
                rows["sport"] = _ephemeral(rng, n)
            else:
                initial = 128
                rows["window"] = 64240
                rows["opts"] = OPT_WINDOWS_SYN
                rows["sport"] = _ephemeral(rng, n, 49152, 65536)
            rows["frag"] = DF
            variant = os_kind
            sig = {"os": os_kind}
        else:
            raise ValueError(f"unknown tool {tool!r}")
        if tool == "nmap":
            rows["ttl"] = rng.integers(37, 60, size=n) - hops
        else:
            rows["ttl"] = initial - hops
        meta = {
            "id": self.entity_id("scanner"),
            "role": "scanner",
            "tool": tool,
            "variant": variant,
            "kind": kind,
            "protocol": "tcp",
            "ip_version": 4,
            "src": v4_text(src),
            "ttl_initial": initial or "37-59",
            "hops": hops,
            "signature": sig,
            # the tool a header fingerprint (DOMAIN.md section 4) can name; None for OS-like scanners
            "fingerprint": None if tool == "generic" else tool,
            "bulk": bulk,
        }
        self.add(rows, meta, self.link_for(rng))

    def udp_scanner(
        self,
        kind: str,
        ports: list[int],
        n: int,
        *,
        zmap: bool = False,
        masscan: bool = False,
        frac: tuple[float, float] = (0.3, 0.6),
        bulk: bool = False,
    ) -> None:
        """UDP probes with service payloads; ``masscan``: a port scan of one host over ``ports``."""
        rng = self.rng()
        src = self.pool.draw_one(rng)
        hops = int(rng.integers(6, 25))
        t0, t1 = self.window(rng, *frac, min_s=30)
        if masscan:  # masscan -pU:...: every listed port of one host, in random order
            dst = np.repeat(self.dark.sample_v4(rng, 1), len(ports))
            dport = rng.permutation(np.asarray(ports, dtype=np.int64))
            n = len(ports)
        else:
            dst, dport = self._scan_targets(rng, kind, ports, n)
        rows = np.zeros(n, dtype=SPEC_DTYPE)
        rows["ts_ns"] = self.times(rng, n, t0, t1)
        rows["ipver"], rows["l4"] = 4, L4_UDP
        rows["src4"], rows["dst4"], rows["dport"] = src, dst, dport
        rows["payload"] = _SERVICE_LUT[dport]
        rows["paylen"] = np.where(rows["payload"] > 0, _PAYLEN_LUT[rows["payload"]], 16)
        rows["pay_id"] = rng.integers(0, 1 << 16, size=n)
        if masscan:
            # built-in payloads on a few ports, empty probes elsewhere; the cookie is the
            # request ID where the payload has one, else hidden: IP ID = dst ^ dport ^ cookie
            own = np.isin(dport, MASSCAN_UDP_PAYLOAD_PORTS)
            rows["payload"] = np.where(own, rows["payload"], 0)
            rows["paylen"] = np.where(own, rows["paylen"], 0)
            cookie = rng.integers(0, 1 << 16, size=n)
            rows["pay_id"] = cookie
            rows["ip_id"] = (rows["dst4"].astype(np.int64) ^ dport ^ cookie) & 0xFFFF
            rows["sport"] = int(rng.integers(40000, 60000))  # one source port per run
            initial = 255
        elif zmap:  # ZMap's UDP probes carry the same IP header as its SYNs
            initial = 255
            rows["ip_id"] = 54321
            rows["sport"] = _ephemeral(rng, n)
        else:
            initial = 64
            rows["ip_id"] = rng.integers(0, 1 << 16, size=n)
            rows["sport"] = int(rng.integers(32768, 61000))
        rows["ttl"] = initial - hops
        meta = {
            "id": self.entity_id("scanner"),
            "role": "scanner",
            "tool": "zmap" if zmap else "masscan" if masscan else "generic",
            "variant": "udp",
            "kind": "vertical" if masscan else kind,
            "protocol": "udp",
            "ip_version": 4,
            "src": v4_text(src),
            "ttl_initial": initial,
            "hops": hops,
            "signature": (
                {"ip_id": 54321} if zmap
                else {"ip_id": "(dst ^ dport ^ request id) & 0xFFFF"} if masscan else {}
            ),
            "fingerprint": "zmap" if zmap else "masscan" if masscan else None,
            "bulk": bulk,
        }
        self.add(rows, meta, self.link_for(rng))

    def ipv6_scanner(self, port: int, n: int) -> None:
        rng = self.rng()
        src = self.public_v6(rng, 1)[0]
        hops = int(rng.integers(6, 25))
        t0, t1 = self.window(rng, 0.3, 0.6, min_s=30)
        rows = np.zeros(n, dtype=SPEC_DTYPE)
        rows["ts_ns"] = self.times(rng, n, t0, t1)
        rows["ipver"], rows["l4"], rows["tcp_flags"] = 6, L4_TCP, SYN
        rows["src6"] = src
        rows["dst6"] = self.dark.sample_v6(rng, n)
        rows["dport"] = port
        rows["sport"] = _ephemeral(rng, n)
        rows["seq"] = rng.integers(0, 1 << 32, size=n, dtype=np.uint64)
        rows["window"], rows["opts"], rows["mss"] = 64800, OPT_LINUX_SYN, 1440
        rows["tsval"] = int(rng.integers(0, 1 << 31)) + (rows["ts_ns"] - t0) // 1_000_000
        rows["ttl"] = 64 - hops
        meta = {
            "id": self.entity_id("scanner"),
            "role": "scanner",
            "tool": "generic",
            "variant": "linux",
            "kind": "horizontal",
            "protocol": "tcp",
            "ip_version": 6,
            "src": v6_text(src),
            "ttl_initial": 64,
            "hops": hops,
            "signature": {"os": "linux"},
            "fingerprint": None,
            "bulk": False,
        }
        self.add(rows, meta, self.link_for(rng))

    # -- backscatter -------------------------------------------------------------

    def backscatter(
        self,
        response: str,
        n: int,
        span_s: float,
        *,
        ipv6: bool = False,
        victim: int | None = None,
        expect: str = "pass",
    ) -> None:
        """Replies of one DoS victim to spoofed sources in the dark space.

        ``response``: syn-ack, rst, rst-ack, echo-reply, unreach-port (3/3, sent
        by the victim), unreach-host (3/1) / unreach-admin (3/13) / ttl-exceeded
        (11/0) (sent by a router before the victim, quoting the packet to it).
        """
        rng = self.rng()
        hops = int(rng.integers(6, 25))
        span = min(int(span_s * NS), self.duration_ns)
        t0 = self.start_ns + int(rng.integers(0, self.duration_ns - span + 1))
        t1 = t0 + span
        rows = np.zeros(n, dtype=SPEC_DTYPE)
        rows["ts_ns"] = self.times(rng, n, t0, t1)
        rows["ipver"] = 6 if ipv6 else 4
        if ipv6:
            vic6 = self.public_v6(rng, 1)[0]
            # uniformly spoofed sources: any address of the dark /48 (low hosts as a /64 sees them)
            dark6 = self.dark.sample_v6(rng, n) if n < 0xFFFF else self.dark.sample_v6(rng, 0xFFFE)
            victim_text = v6_text(vic6)
        else:
            vic = self.pool.draw_one(rng) if victim is None else victim
            dark = self.dark.sample_v4(rng, n, distinct=False)
            victim_text = v4_text(vic)
        sender_text = victim_text
        vector = "tcp"
        service = int(rng.choice([80, 443, 53, 25, 22, 3074, 27015]))
        spoof_port = rng.integers(1024, 65536, size=n)
        if response in ("syn-ack", "rst", "rst-ack"):
            rows["l4"] = L4_TCP
            rows["sport"], rows["dport"] = service, spoof_port
            if response == "syn-ack":  # Linux server: DF, IP ID 0, MSS/SACK/TS/WS
                rows["tcp_flags"] = SYN | ACK
                rows["seq"] = rng.integers(0, 1 << 32, size=n, dtype=np.uint64)
                rows["ack"] = rng.integers(0, 1 << 32, size=n, dtype=np.uint64)
                rows["window"], rows["opts"], rows["mss"] = 65160, OPT_LINUX_SYNACK, 1460
                rows["tsval"] = int(rng.integers(0, 1 << 31)) + (rows["ts_ns"] - t0) // 1_000_000
                rows["tsecr"] = rng.integers(0, 1 << 32, size=n, dtype=np.uint64)
            elif response == "rst-ack":  # reply to a SYN at a closed port: seq 0, ack = seq+1
                rows["tcp_flags"] = RST | ACK
                rows["ack"] = rng.integers(0, 1 << 32, size=n, dtype=np.uint64)
            else:  # reply to an ACK flood: RST with seq = the ACK's ack number
                rows["tcp_flags"] = RST
                rows["seq"] = rng.integers(0, 1 << 32, size=n, dtype=np.uint64)
            rows["frag"] = DF
            initial = 64
        elif response == "echo-reply":
            vector = "icmp"
            rows["l4"] = L4_ICMP_ECHO
            rows["icmp_type"] = 129 if ipv6 else 0
            rows["icmp_id"] = int(rng.integers(0, 1 << 16))  # one flooding process
            rows["icmp_seq"] = np.arange(n) & 0xFFFF
            rows["payload"], rows["paylen"] = 6, 56
            rows["ip_id"] = rng.integers(0, 1 << 16, size=n)
            initial = 64
        else:
            codes = {
                "unreach-port": (3, 3),
                "unreach-host": (3, 1),
                "unreach-admin": (3, 13),
                "ttl-exceeded": (11, 0),
            }
            codes6 = {
                "unreach-port": (1, 4),
                "unreach-host": (1, 3),
                "unreach-admin": (1, 1),
                "ttl-exceeded": (3, 0),
            }
            if response not in codes:
                raise ValueError(f"unknown backscatter response {response!r}")
            rows["l4"] = L4_ICMP_ERR
            rows["icmp_type"], rows["icmp_code"] = (codes6 if ipv6 else codes)[response]
            in_proto = {
                "unreach-port": PROTO_UDP,
                "unreach-host": PROTO_TCP,
                "unreach-admin": PROTO_TCP,
                "ttl-exceeded": PROTO_UDP,
            }[response]
            vector = "udp" if in_proto == PROTO_UDP else "tcp"
            rows["in_proto"] = in_proto
            rows["in_sport"] = spoof_port
            rows["in_dport"] = rng.integers(1024, 65536, size=n) if response == "unreach-port" else service
            rows["in_seq"] = rng.integers(0, 1 << 32, size=n, dtype=np.uint64)
            rows["in_ip_id"] = rng.integers(0, 1 << 16, size=n)
            rows["in_ttl"] = 1 if response == "ttl-exceeded" else int(rng.integers(40, 60))
            udp_pay = int(rng.choice([0, 64, 512, 1024]))
            l4len = 8 + udp_pay if in_proto == PROTO_UDP else 40  # a SYN with options
            rows["in_len"] = l4len if ipv6 else 20 + l4len
            rows["ip_id"] = rng.integers(0, 1 << 16, size=n)
            if response == "unreach-port":
                initial = 64
            else:  # a router in front of the victim answers
                initial = 255
                hops = max(1, hops - 1)
                if ipv6:
                    router6 = self.public_v6(rng, 1)[0]
                    sender_text = v6_text(router6)
                else:
                    router = self.pool.draw_one(rng)
                    sender_text = v4_text(router)
        if ipv6:
            rows["dst6"] = dark6[rng.integers(0, len(dark6), size=n)] if len(dark6) < n else dark6
            rows["src6"] = (
                vic6
                if sender_text == victim_text
                else np.frombuffer(ipaddress.IPv6Address(sender_text).packed, dtype=np.uint8)
            )
            if response not in ("syn-ack", "rst", "rst-ack", "echo-reply"):
                rows["in_src6"], rows["in_dst6"] = rows["dst6"], vic6
        else:
            rows["dst4"] = dark
            rows["src4"] = vic if sender_text == victim_text else int(ipaddress.IPv4Address(sender_text))
            if response not in ("syn-ack", "rst", "rst-ack", "echo-reply"):
                rows["in_src4"], rows["in_dst4"] = dark, vic
        rows["ttl"] = initial - hops
        retransmitted = self._synack_retransmissions(rng, rows, t1) if response == "syn-ack" else 0
        meta = {
            "id": self.entity_id("victim"),
            "role": "backscatter",
            "victim": victim_text,
            "protocol": vector if not (vector == "icmp" and ipv6) else "icmpv6",
            "response": response,
            "icmp": [int(rows["icmp_type"][0]), int(rows["icmp_code"][0])]
            if rows["l4"][0] != L4_TCP
            else None,
            "sender": sender_text,
            "ip_version": 6 if ipv6 else 4,
            "designed": expect,
            "retransmissions": retransmitted,
        }
        self.add(rows, meta, self.link_for(rng))

    @staticmethod
    def _synack_retransmissions(rng: np.random.Generator, rows: npt.NDArray[np.void], t1: int) -> int:
        """Turn about a quarter of the SYN-ACKs into retransmissions of earlier ones.

        A Linux victim retransmits an unanswered SYN-ACK 1, 3, 7, 15 and 31 s after the
        first (tcp_synack_retries = 5), to the same spoofed address and port with the same
        sequence numbers. The first and last packets stay originals (the vector's span).
        """
        n = len(rows)
        order = np.argsort(rows["ts_ns"], kind="stable")
        rows[:] = rows[order]
        re = rng.random(n) < 0.25
        re[0] = re[-1] = False
        originals = np.flatnonzero(~re)
        src = originals[rng.integers(0, len(originals), size=n)]
        offset = ((1 << rng.integers(1, 6, size=n)) - 1) * NS  # 1, 3, 7, 15, 31 s
        ts = rows["ts_ns"][src] + offset
        re &= ts <= t1
        idx = np.flatnonzero(re)
        for f in ("dst4", "dst6", "dport", "seq", "ack", "tsecr"):
            rows[f][idx] = rows[f][src[idx]]
        rows["ts_ns"][idx] = ts[idx]
        rows["tsval"][idx] = rows["tsval"][src[idx]] + offset[idx] // 1_000_000
        return len(idx)

    # -- spoofed floods to the darknet -------------------------------------------------

    def spoofed_bogon(self, n: int, blocks: list[str]) -> None:
        rng = self.rng()
        t0, t1 = self.window(rng, 0.2, 0.5, min_s=30)
        rows = np.zeros(n, dtype=SPEC_DTYPE)
        rows["ts_ns"] = self.times(rng, n, t0, t1)
        rows["ipver"], rows["l4"], rows["tcp_flags"] = 4, L4_TCP, SYN
        which = rng.integers(0, len(blocks), size=n)
        src = np.zeros(n, dtype=np.uint32)
        for i, b in enumerate(blocks):
            sel = which == i
            src[sel] = self.pool.bogons(rng, int(sel.sum()), [b])
        rows["src4"] = src
        rows["dst4"] = self.dark.sample_v4(rng, n, distinct=False)
        rows["sport"], rows["dport"] = rng.integers(1024, 65536, size=n), rng.choice([80, 443, 22], size=n)
        rows["seq"] = rng.integers(0, 1 << 32, size=n, dtype=np.uint64)
        rows["ip_id"] = rng.integers(0, 1 << 16, size=n)
        rows["window"] = rng.integers(512, 65536, size=n)
        rows["ttl"] = rng.integers(30, 250, size=n)
        counts = {b: int((which == i).sum()) for i, b in enumerate(blocks)}
        meta = {
            "id": self.entity_id("spoofed"),
            "role": "spoofed",
            "reason": "bogon",
            "protocol": "tcp",
            "sources": {"description": "addresses spread over bogon blocks", "blocks": counts},
        }
        self.add(rows, meta, self.link_for(rng))

    def spoofed_dark_source(self, n: int) -> None:
        rng = self.rng()
        t0, t1 = self.window(rng, 0.2, 0.5, min_s=30)
        rows = np.zeros(n, dtype=SPEC_DTYPE)
        rows["ts_ns"] = self.times(rng, n, t0, t1)
        rows["ipver"], rows["l4"] = 4, L4_UDP
        rows["src4"] = self.dark.sample_v4(rng, n, distinct=False)
        rows["dst4"] = self.dark.sample_v4(rng, n, distinct=False)
        rows["sport"] = rng.integers(1024, 65536, size=n)
        rows["dport"] = rng.choice([53, 123, 19, 1900], size=n)
        rows["paylen"] = 48  # zeros; 48 bytes also make a well-formed (empty) NTP header
        rows["ip_id"] = rng.integers(0, 1 << 16, size=n)
        rows["ttl"] = rng.integers(30, 250, size=n)
        meta = {
            "id": self.entity_id("spoofed"),
            "role": "spoofed",
            "reason": "dark_source",
            "protocol": "udp",
            "sources": {
                "description": "addresses inside the dark prefixes",
                "prefixes": [str(x) for x in self.dark.v4],
            },
        }
        self.add(rows, meta, self.link_for(rng))

    def spoofed_random(self, n: int) -> None:
        """A SYN flood at one dark host from random sources, each seen once or twice, random TTLs."""
        rng = self.rng()
        t0, t1 = self.window(rng, 0.2, 0.4, min_s=30)
        n_src = int(n / 1.3)
        srcs = self.pool.draw(rng, n_src)
        pick = np.concatenate([np.arange(n_src), rng.choice(n_src, size=n - n_src, replace=False)])
        rng.shuffle(pick)
        target = self.dark.sample_v4(rng, 1)[0]
        rows = np.zeros(n, dtype=SPEC_DTYPE)
        rows["ts_ns"] = self.times(rng, n, t0, t1)
        rows["ipver"], rows["l4"], rows["tcp_flags"] = 4, L4_TCP, SYN
        rows["src4"] = srcs[pick]
        rows["dst4"] = target
        rows["sport"] = rng.integers(1024, 65536, size=n)
        rows["dport"] = 80
        rows["seq"] = rng.integers(0, 1 << 32, size=n, dtype=np.uint64)
        rows["ip_id"] = rng.integers(0, 1 << 16, size=n)
        rows["window"] = rng.integers(512, 65536, size=n)
        rows["ttl"] = rng.integers(30, 251, size=n)
        meta = {
            "id": self.entity_id("spoofed"),
            "role": "spoofed",
            "reason": "random",
            "protocol": "tcp",
            "target": v4_text(target),
            "sources": {"description": "random routable sources, each seen once or twice, random TTL 30-250"},
        }
        self.add(rows, meta, len(LINKS) - 1)

    # -- background -------------------------------------------------------------

    def background(self, n: int) -> None:
        """Single probes from many sources: 1-3 packets each, well below any scan threshold."""
        if n <= 0:
            return
        rng = self.rng()
        per = rng.integers(1, 4, size=n)
        per = per[: int(np.searchsorted(np.cumsum(per), n)) + 1]
        per[-1] -= int(per.sum() - n)
        per = per[per > 0]
        n_src = len(per)
        srcs = self.pool.draw(rng, n_src)
        who = np.repeat(np.arange(n_src), per)
        rows = np.zeros(n, dtype=SPEC_DTYPE)
        rows["ts_ns"] = rng.integers(self.start_ns, self.start_ns + self.duration_ns + 1, size=n)
        rows["ipver"] = 4
        rows["src4"] = srcs[who]
        rows["dst4"] = self.dark.sample_v4(rng, n, distinct=False)
        hops = rng.integers(6, 25, size=n_src)[who]
        windows_os = (rng.random(n_src) < 0.35)[who]
        kind = rng.random(n_src)[who]
        tcp, udp, icmp = kind < 0.85, (kind >= 0.85) & (kind < 0.95), kind >= 0.95
        rows["l4"] = np.where(tcp, L4_TCP, np.where(udp, L4_UDP, L4_ICMP_ECHO))
        rows["ttl"] = np.where(windows_os, 128, 64) - hops
        rows["ip_id"] = rng.integers(0, 1 << 16, size=n)
        rows["sport"] = rng.integers(32768, 61000, size=n)
        # TCP: an OS-like SYN to a popular port
        rows["dport"] = rng.choice(POPULAR_TCP_PORTS, size=n, p=_POPULAR_W)
        rows["tcp_flags"] = np.where(tcp, SYN, 0)
        rows["opts"] = np.where(tcp, np.where(windows_os, OPT_WINDOWS_SYN, OPT_LINUX_SYN), OPT_NONE)
        rows["window"] = np.where(tcp, 64240, 0)
        rows["mss"] = 1460
        rows["seq"] = np.where(tcp, rng.integers(0, 1 << 32, size=n, dtype=np.uint64), 0)
        rows["tsval"] = np.where(tcp & ~windows_os, rng.integers(0, 1 << 31, size=n), 0)
        rows["frag"] = np.where(tcp, DF, 0)
        # UDP: a service request
        svc = np.array(sorted(UDP_SERVICE_PAYLOAD), dtype=np.uint16)
        udp_port = rng.choice(svc, size=n)
        rows["dport"] = np.where(udp, udp_port, rows["dport"])
        rows["payload"] = np.where(udp, _SERVICE_LUT[udp_port], 0)
        rows["paylen"] = np.where(udp, _PAYLEN_LUT[_SERVICE_LUT[udp_port]], 0)
        rows["pay_id"] = rng.integers(0, 1 << 16, size=n)
        # ICMP: an echo request (ping sweep)
        rows["icmp_type"] = np.where(icmp, 8, 0)
        rows["icmp_id"] = rng.integers(0, 1 << 16, size=n)
        rows["icmp_seq"] = 1
        rows["payload"] = np.where(icmp, 6, rows["payload"])
        rows["paylen"] = np.where(icmp, 56, rows["paylen"])
        rows["dport"] = np.where(icmp, 0, rows["dport"])
        rows["sport"] = np.where(icmp, 0, rows["sport"])
        link = rng.choice(len(LINKS), size=n_src, p=_LINK_W)[who]
        meta = {
            "id": self.entity_id("background"),
            "role": "background",
            "kind": "single_probes",
            "protocol": "mixed",
        }
        self.add(rows, meta, link)

    def background_ipv6(self, n: int) -> None:
        """A few IPv6 single probes: ICMPv6 echo requests and SYNs from distinct sources."""
        if not self.dark.v6 or n <= 0:
            return
        rng = self.rng()
        rows = np.zeros(n, dtype=SPEC_DTYPE)
        rows["ts_ns"] = rng.integers(self.start_ns, self.start_ns + self.duration_ns + 1, size=n)
        rows["ipver"] = 6
        rows["src6"] = self.public_v6(rng, n)
        rows["dst6"] = self.dark.sample_v6(rng, n)
        echo = rng.random(n) < 0.5
        rows["l4"] = np.where(echo, L4_ICMP_ECHO, L4_TCP)
        rows["icmp_type"] = np.where(echo, 128, 0)
        rows["icmp_id"] = rng.integers(0, 1 << 16, size=n)
        rows["payload"] = np.where(echo, 6, 0)
        rows["paylen"] = np.where(echo, 56, 0)
        rows["tcp_flags"] = np.where(echo, 0, SYN)
        rows["opts"] = np.where(echo, OPT_NONE, OPT_LINUX_SYN)
        rows["mss"], rows["window"] = 1440, np.where(echo, 0, 64800)
        rows["sport"] = np.where(echo, 0, rng.integers(32768, 61000, size=n))
        rows["dport"] = np.where(echo, 0, rng.choice([22, 80, 443], size=n))
        rows["seq"] = rng.integers(0, 1 << 32, size=n, dtype=np.uint64)
        rows["ttl"] = 64 - rng.integers(6, 25, size=n)
        # some carry extension headers the parser must walk: Hop-by-Hop + Destination
        # Options, or an atomic Fragment header (RFC 6946)
        rows["ext6"] = rng.choice([EXT6_NONE, EXT6_HBH_DST, EXT6_FRAG], size=n)
        rows["ext_id"] = rng.integers(0, 1 << 32, size=n, dtype=np.uint64)
        meta = {
            "id": self.entity_id("background"),
            "role": "background",
            "kind": "ipv6_probes",
            "protocol": "mixed",
        }
        self.add(rows, meta, self.link_for(rng))

    def fragments(self, datagrams: int) -> None:
        """Fragmented UDP datagrams (1208-byte UDP, two fragments each) from one source."""
        if datagrams <= 0:
            return
        rng = self.rng()
        src = self.pool.draw_one(rng)
        hops = int(rng.integers(6, 25))
        t0, t1 = self.window(rng, 0.1, 0.3, min_s=10)
        first_pay, total_pay = 592, 1200  # the first fragment holds 8 + 592 = 600 bytes (75 * 8)
        n = 2 * datagrams
        rows = np.zeros(n, dtype=SPEC_DTYPE)
        base_ts = self.times(rng, datagrams, t0, t1)
        rows["ts_ns"] = np.repeat(base_ts, 2) + np.tile([0, 20_000], datagrams)
        rows["ipver"] = 4
        rows["src4"] = src
        rows["dst4"] = np.repeat(self.dark.sample_v4(rng, datagrams, distinct=False), 2)
        rows["ip_id"] = np.repeat(rng.integers(0, 1 << 16, size=datagrams), 2)
        rows["ttl"] = 64 - hops
        first = np.tile([True, False], datagrams)
        rows["l4"] = np.where(first, L4_UDP, L4_FRAG_TAIL)
        rows["in_proto"] = PROTO_UDP  # the tail fragment's IP protocol
        rows["frag"] = np.where(first, MF, (8 + first_pay) // 8)
        rows["paylen"] = np.where(first, first_pay, total_pay - first_pay)
        rows["udp_len"] = np.where(first, 8 + total_pay, 0)
        rows["sport"] = np.where(first, int(rng.integers(1024, 65536)), 0)
        rows["dport"] = np.where(first, 53, 0)
        meta = {
            "id": self.entity_id("background"),
            "role": "background",
            "kind": "fragments",
            "protocol": "udp",
            "src": v4_text(src),
            "datagrams": datagrams,
        }
        self.add(rows, meta, self.link_for(rng))

    def arp(self, n: int) -> None:
        """ARP requests for dark addresses from the upstream router (not IP: the parser counts them)."""
        if n <= 0:
            return
        rng = self.rng()
        rows = np.zeros(n, dtype=SPEC_DTYPE)
        rows["ts_ns"] = self.times(rng, n, self.start_ns, self.start_ns + self.duration_ns)
        rows["l4"] = L4_ARP
        router = self.pool.draw_one(rng)
        rows["src4"] = router
        rows["dst4"] = self.dark.sample_v4(rng, n, distinct=False)
        meta = {
            "id": self.entity_id("other"),
            "role": "other",
            "kind": "arp",
            "protocol": "arp",
            "src": v4_text(router),
        }
        self.add(rows, meta, 0)

    def outside(self, n: int) -> None:
        """SYNs to addresses next to, but outside, the dark prefixes (the sensor drops them)."""
        if n <= 0:
            return
        rng = self.rng()
        rows = np.zeros(n, dtype=SPEC_DTYPE)
        rows["ts_ns"] = self.times(rng, n, self.start_ns, self.start_ns + self.duration_ns)
        rows["ipver"], rows["l4"], rows["tcp_flags"] = 4, L4_TCP, SYN
        src = self.pool.draw(rng, n)
        near = np.array(
            [int(net.broadcast_address) + 1 for net in self.dark.v4]
            + [int(net.network_address) - 1 for net in self.dark.v4],
            dtype=np.int64,
        )
        inside = near[(near > 0) & (near < 1 << 32)].astype(np.uint32)
        cand = inside[~self.dark.contains_v4(inside)]
        rows["src4"] = src
        rows["dst4"] = rng.choice(cand, size=n)
        rows["dport"] = 443
        rows["sport"] = rng.integers(32768, 61000, size=n)
        rows["seq"] = rng.integers(0, 1 << 32, size=n, dtype=np.uint64)
        rows["window"], rows["opts"], rows["mss"], rows["frag"] = 64240, OPT_LINUX_SYN, 1460, DF
        rows["ttl"] = 64 - rng.integers(6, 25, size=n)
        meta = {
            "id": self.entity_id("other"),
            "role": "other",
            "kind": "outside_darknet",
            "protocol": "tcp",
            "dsts": sorted({v4_text(int(x)) for x in cand}),
        }
        self.add(rows, meta, 0)
