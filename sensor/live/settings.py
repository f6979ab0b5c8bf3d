"""Options of the live capture agent (section ``[live]``), each declared once.

Sizing the ring (theory of operation): the ring is ``block_count`` blocks of
``block_size`` bytes. The kernel hands a block over when it is full or
``block_timeout_ms`` after its first packet, so the timeout bounds the delay
at low rates and the ring size bounds how long the agent may stall (a flow
interval being written, a slow disk) before the kernel drops. A frame takes
its length plus 82 bytes (the packet header and link address the kernel
writes before it), rounded up to 8: a 60-byte SYN takes 144 bytes (measured),
so the default 64 MiB ring holds ~466,000 of them -- 20 s of a NICTER-class
feed (DOMAIN.md section 1: ~21,700 pps average), several seconds of its
bursts.
"""

from __future__ import annotations

from dataclasses import dataclass

from darknet_iodef.errors import ConfigError
from darknet_iodef.settings import setting
from sensor.live.kernel import FANOUT_MODES

__all__ = ["METHODS", "LiveSettings"]

#: capture methods: the ring where possible, else libpcap; or force one
METHODS = ("auto", "ring", "libpcap")


@dataclass(frozen=True, slots=True)
class LiveSettings:
    method: str = setting("auto", "capture with the AF_PACKET ring (ring), libpcap (libpcap) or "
                                  "the ring with a libpcap fallback (auto)")
    block_size: int = setting(1 << 20, "bytes per ring block (a multiple of the page size)")
    block_count: int = setting(64, "blocks in the ring (ring size = block_size * block_count)")
    block_timeout_ms: int = setting(100, "ms after which the kernel hands over a partly filled block")
    max_blocks_per_batch: int = setting(8, "ring blocks decoded together in one batch")
    bpf: str = setting("", "tcpdump-style filter run in the kernel (empty: every frame)")
    snaplen: int = setting(0, "bytes kept per frame (0: the whole frame)")
    promiscuous: bool = setting(True, "put the interface in promiscuous mode while capturing")
    ignore_outgoing: bool = setting(True, "skip frames this host sends (Linux 4.20+)")
    archive_dir: str = setting("", "write the captured frames to rotating pcap files in this directory "
                                       "(empty: no archive)")
    archive_rotate_bytes: int = setting(1 << 30, "start a new archive file past this size (0: never)")
    archive_rotate_seconds: float = setting(3600.0, "start a new archive file after this much event "
                                                     "time (0: never)")
    archive_keep: int = setting(0, "closed archive files to keep (0: all)")
    fanout_group: int = setting(0, "share the interface with the other sensors of this PACKET_FANOUT "
                                   "group id (1-65535; 0: alone)")
    fanout_mode: str = setting("hash", "how a fanout group shares packets: hash (a flow stays on one "
                                       "sensor), lb (round robin) or cpu")
    stats_interval_s: float = setting(10.0, "how often the kernel drop counters are read (wall clock)")

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError("[live] method", f"{self.method!r} is not one of {', '.join(METHODS)}")
        for name in ("block_size", "block_count", "block_timeout_ms", "max_blocks_per_batch"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"[live] {name}", "must be positive")
        if self.block_count < 2:
            raise ConfigError("[live] block_count", "the ring needs at least 2 blocks")
        if self.snaplen < 0 or self.archive_rotate_bytes < 0 or self.archive_rotate_seconds < 0:
            raise ConfigError("[live] snaplen/archive_rotate_*", "must not be negative")
        if not 0 <= self.fanout_group < 1 << 16:
            raise ConfigError("[live] fanout_group", f"{self.fanout_group} is not between 0 and 65535")
        if self.fanout_mode not in FANOUT_MODES:
            raise ConfigError("[live] fanout_mode", f"{self.fanout_mode!r} is not one of "
                              f"{', '.join(FANOUT_MODES)}")
        if self.stats_interval_s <= 0:
            raise ConfigError("[live] stats_interval_s", "must be positive")
