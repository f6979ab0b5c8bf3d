"""libpcap capture (through scapy's ctypes bindings): where the ring cannot be used.

Theory of operation: same interface as :class:`~sensor.live.ring.PacketRing`
(``wait``, ``take``, ``release``, ``stats``, ``close``) so the agent does not
care which one runs. libpcap hands over one packet per ``pcap_next_ex`` call,
so this path makes a Python call per packet and copies each frame into a
batch buffer -- several times slower than the ring (see docs/live-capture.md),
which is why the agent says so in its log. Timestamps are asked for in
nanoseconds (``pcap_set_tstamp_precision``); libpcap then reports the
kernel's receive time like the ring does. libpcap puts back VLAN tags the
kernel stripped, so ``vlan_tci`` stays 0 here.
"""

from __future__ import annotations

import ctypes
import logging
import select

import numpy as np

from darknet_iodef.errors import ConfigError
from sensor.live.bpf import MAX_SNAPLEN
from sensor.live.frames import FrameBatch, empty_batch
from sensor.live.ring import KernelStats

__all__ = ["LibpcapCapture"]

log = logging.getLogger(__name__)

_TSTAMP_PRECISION_NANO = 1
_NETMASK_UNKNOWN = 0xFFFFFFFF
#: frames per batch: bounds the buffer and the latency of one take()
_BATCH_FRAMES = 8192


class LibpcapCapture:
    def __init__(
        self,
        interface: str,
        bpf: str = "",
        snaplen: int = 0,
        promiscuous: bool = True,
        timeout_ms: int = 100,
        buffer_bytes: int = 64 << 20,
    ) -> None:
        try:
            from scapy.libs import winpcapy as pc
        except (ImportError, OSError) as exc:
            raise ConfigError("[live] method", f"libpcap is not available: {exc}") from None
        self._pc = pc
        self.interface = interface
        errbuf = ctypes.create_string_buffer(256)
        self._p = pc.pcap_create(interface.encode(), errbuf)
        if not self._p:
            raise ConfigError("interface", f"libpcap cannot open {interface!r}: {errbuf.value.decode()}")
        try:
            self._nano = pc._lib.pcap_set_tstamp_precision(self._p, _TSTAMP_PRECISION_NANO) == 0
            pc.pcap_set_snaplen(self._p, snaplen if snaplen > 0 else MAX_SNAPLEN)
            pc.pcap_set_promisc(self._p, 1 if promiscuous else 0)
            pc.pcap_set_timeout(self._p, timeout_ms)
            pc.pcap_set_buffer_size(self._p, buffer_bytes)
            if pc.pcap_activate(self._p) < 0:
                reason = pc.pcap_geterr(self._p).decode(errors="replace")
                raise ConfigError("interface", f"libpcap cannot capture on {interface!r}: {reason}")
            if bpf:
                prog = pc.bpf_program()
                if pc.pcap_compile(self._p, ctypes.byref(prog), bpf.encode(), 1, _NETMASK_UNKNOWN) < 0:
                    reason = pc.pcap_geterr(self._p).decode(errors="replace")
                    raise ConfigError("bpf", f"cannot compile {bpf!r}: {reason}")
                try:
                    if pc.pcap_setfilter(self._p, ctypes.byref(prog)) < 0:
                        raise ConfigError("bpf", pc.pcap_geterr(self._p).decode(errors="replace"))
                finally:
                    pc.pcap_freecode(ctypes.byref(prog))
            pc.pcap_setnonblock(self._p, 1, errbuf)
            self.linktype = int(pc.pcap_datalink(self._p))
            self._fd = int(pc.pcap_get_selectable_fd(self._p))
        except BaseException:
            pc.pcap_close(self._p)
            raise
        self._hdr = ctypes.POINTER(pc.pcap_pkthdr)()
        self._data = ctypes.POINTER(ctypes.c_ubyte)()
        self._scale = 1 if self._nano else 1000

    def fileno(self) -> int:
        return self._fd

    def wait(self, timeout_s: float) -> bool:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        try:
            return bool(poller.poll(int(timeout_s * 1000)))
        except InterruptedError:
            return False

    def take(self, max_blocks: int) -> FrameBatch:
        """Up to ``max_blocks`` x 8192 frames that libpcap has ready, copied into one buffer."""
        pc = self._pc
        chunks: list[bytes] = []
        caps: list[int] = []
        wires: list[int] = []
        ts: list[int] = []
        limit = max(1, max_blocks) * _BATCH_FRAMES
        hdr, data = self._hdr, self._data
        nxt = pc.pcap_next_ex
        while len(caps) < limit:
            rc = nxt(self._p, ctypes.byref(hdr), ctypes.byref(data))
            if rc != 1:
                if rc < 0:
                    log.warning("libpcap stopped reading %s: %s", self.interface,
                                pc.pcap_geterr(self._p).decode(errors="replace"))
                break
            h = hdr.contents
            chunks.append(ctypes.string_at(data, h.caplen))
            caps.append(h.caplen)
            wires.append(h.len)
            ts.append(h.ts.tv_sec * 1_000_000_000 + h.ts.tv_usec * self._scale)
        if not caps:
            return empty_batch(self.linktype)
        cap = np.asarray(caps, dtype=np.uint32)
        offsets = np.zeros(cap.shape[0], np.int64)
        np.cumsum(cap[:-1], out=offsets[1:])
        n = cap.shape[0]
        return FrameBatch(
            np.frombuffer(b"".join(chunks), dtype=np.uint8),
            offsets,
            cap,
            np.asarray(wires, dtype=np.uint32),
            np.asarray(ts, dtype=np.int64),
            np.zeros(n, np.uint16),
            np.zeros(n, np.uint16),
            self.linktype,
        )

    def release(self) -> None:
        """Nothing to give back: frames were copied out of libpcap's buffer."""

    def stats(self) -> KernelStats:
        st = self._pc.pcap_stat()
        if self._pc.pcap_stats(self._p, ctypes.byref(st)) < 0:
            return KernelStats(0, 0, 0)
        # libpcap on Linux: ps_recv counts drops too, like the ring's tp_packets
        return KernelStats(int(st.ps_recv), int(st.ps_drop), 0)

    def close(self) -> None:
        if self._p:
            self._pc.pcap_close(self._p)
            self._p = None
