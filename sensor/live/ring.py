"""The AF_PACKET TPACKET_V3 memory-mapped receive ring (Linux), a thin adapter.

Theory of operation: one ``socket(AF_PACKET, SOCK_RAW, ETH_P_ALL)`` bound to
the interface, switched to TPACKET_V3, with a ring of ``block_count`` blocks of
``block_size`` bytes mapped into our memory. The kernel writes packets into
the current block and hands the block over (``block_status`` gets
TP_STATUS_USER) when it is full or ``block_timeout_ms`` after its first
packet. We ``poll`` the socket, take the retired blocks in ring order, index
them with :func:`~sensor.live.frames.walk_blocks` and, once the caller has
decoded (and archived) them, give them back by writing TP_STATUS_KERNEL.
Nothing is copied between the kernel and the decoder.

Ordering matters once: the socket is opened with protocol 0 (it receives
nothing), the filter and the ring are set up, and only then ``bind`` names
the interface and ETH_P_ALL -- so no frame from another interface, and none
the filter refuses, can reach the ring first (libpcap does the same).

The kernel's counters (PACKET_STATISTICS) reset on each read; :meth:`stats`
accumulates them.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import mmap
import select
import socket
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from darknet_iodef.errors import ConfigError
from sensor.live import kernel as k
from sensor.live.bpf import compile_filter
from sensor.live.frames import FrameBatch, empty_batch, walk_blocks

__all__ = ["KernelStats", "PacketRing", "RingUnavailable", "interface_linktype"]

log = logging.getLogger(__name__)

_PAGE = mmap.PAGESIZE
_SIOCGIFHWADDR = 0x8927


class RingUnavailable(OSError):
    """The TPACKET_V3 ring cannot be used here (not Linux, old kernel, no mmap)."""


@dataclass(frozen=True, slots=True)
class KernelStats:
    """Cumulative socket counters since the ring opened (PACKET_STATISTICS)."""

    packets: int  # seen by the socket, drops included (the kernel adds them)
    drops: int  # no room in the ring
    freeze_q_cnt: int  # times the ring was full and the queue froze


def interface_linktype(sock: socket.socket, interface: str) -> tuple[int, bool]:
    """(pcap link type, frame starts at the link header) from the device type.

    Asked of the kernel with SIOCGIFHWADDR on ``sock`` (which answers for the
    socket's own network namespace, where /sys might show another one).
    """
    req = struct.pack("16s16s", interface.encode()[:15], b"")
    try:
        res = fcntl.ioctl(sock.fileno(), _SIOCGIFHWADDR, req)
    except OSError as exc:
        raise ConfigError("interface", f"cannot read the type of {interface!r}: {exc.strerror}") from None
    (arphrd,) = struct.unpack_from("=H", res, 16)  # ifr_hwaddr.sa_family
    return k.linktype_for_arphrd(arphrd)


class PacketRing:
    """A TPACKET_V3 receive ring on one interface.

    ``bpf`` is a tcpdump-style expression (empty: every frame) and
    ``snaplen`` the bytes kept per frame (0: all); both become one classic
    BPF program run by the kernel (:mod:`sensor.live.bpf`).
    """

    def __init__(
        self,
        interface: str,
        block_size: int,
        block_count: int,
        block_timeout_ms: int,
        bpf: str = "",
        snaplen: int = 0,
        promiscuous: bool = True,
        ignore_outgoing: bool = True,
        fanout_group: int = 0,
        fanout_mode: str = "hash",
    ) -> None:
        if block_size <= 0 or block_size % _PAGE:
            raise ConfigError("[live] block_size",
                              f"{block_size} is not a positive multiple of the page size {_PAGE}")
        if block_count < 2:
            raise ConfigError("[live] block_count", "the ring needs at least 2 blocks")
        if not hasattr(socket, "AF_PACKET"):
            raise RingUnavailable("AF_PACKET sockets exist only on Linux")
        self.interface = interface
        self.block_size = block_size
        self.block_count = block_count
        self._next = 0  # the next block we expect the kernel to retire
        self._held: list[int] = []  # block offsets taken and not yet released
        self._totals = [0, 0, 0]
        try:
            ifindex = socket.if_nametoindex(interface)
        except OSError:
            raise ConfigError("interface", f"no network interface named {interface!r}") from None
        # protocol 0: the socket receives nothing until bind() names the protocol
        # and the interface, so no frame from another interface, or one the
        # filter would refuse, lands in the ring first (libpcap does the same)
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            self.linktype, link_header = interface_linktype(self._sock, interface)
            self._from_net = not link_header
            program = compile_filter(bpf, self.linktype, snaplen) if bpf or snaplen > 0 else None
            self._setup(ifindex, block_timeout_ms, program, promiscuous, ignore_outgoing)
            if fanout_group:
                self._join_fanout(fanout_group, fanout_mode)
        except BaseException:
            self._sock.close()
            raise

    def _setup(
        self,
        ifindex: int,
        block_timeout_ms: int,
        bpf_program: bytes | None,
        promiscuous: bool,
        ignore_outgoing: bool,
    ) -> None:
        s = self._sock
        if bpf_program is not None:
            attach_filter(s, bpf_program)
        try:
            s.setsockopt(k.SOL_PACKET, k.PACKET_VERSION, k.TPACKET_V3)
        except OSError as exc:
            raise RingUnavailable(f"TPACKET_V3 refused: {exc.strerror}") from None
        frame_size = 2048  # only checked for alignment under V3
        frames = self.block_count * (self.block_size // frame_size)
        req = k.TPACKET_REQ3.pack(
            self.block_size, self.block_count, frame_size, frames, block_timeout_ms, 0, 0
        )
        try:
            s.setsockopt(k.SOL_PACKET, k.PACKET_RX_RING, req)
            self._mm = mmap.mmap(
                s.fileno(), self.block_size * self.block_count, mmap.MAP_SHARED,
                mmap.PROT_READ | mmap.PROT_WRITE,
            )
        except OSError as exc:
            raise RingUnavailable(f"cannot map a {self.block_count} x {self.block_size} ring: "
                                  f"{exc.strerror}") from None
        self._ring: npt.NDArray[np.uint8] = np.frombuffer(self._mm, dtype=np.uint8)
        self._status = np.frombuffer(self._mm, dtype=np.uint32)  # block_status at word 2 of each block
        if ignore_outgoing:
            try:
                s.setsockopt(k.SOL_PACKET, k.PACKET_IGNORE_OUTGOING, 1)
            except OSError:
                log.warning("This kernel cannot ignore outgoing packets (Linux < 4.20); "
                            "the sensor also sees what its host sends on %s.", self.interface)
        s.bind((self.interface, k.ETH_P_ALL))
        if promiscuous:
            s.setsockopt(k.SOL_PACKET, k.PACKET_ADD_MEMBERSHIP,
                         k.MREQ.pack(ifindex, k.PACKET_MR_PROMISC, 0, b""))
        self.stats()  # zero the kernel counters: count from here

    def _join_fanout(self, group: int, mode: str) -> None:
        """Share the interface's packets with the other sockets of ``group`` (PACKET_FANOUT).

        Several sensor processes with the same group each get a part: "hash"
        keeps a flow on one socket, "lb" goes round robin, "cpu" by receiving
        CPU. No PACKET_FANOUT_FLAG_DEFRAG: the kernel would then deliver
        reassembled datagrams instead of the fragments, which the sensor
        must see as they arrived (fragment offsets feed the spoofing rules);
        a later fragment, which has no ports, may so reach another sensor
        than its first -- the sensor never reassembles anyway.
        """
        if not 0 < group < 1 << 16 or mode not in k.FANOUT_MODES:
            raise ConfigError("[live] fanout_group/fanout_mode", f"{group}/{mode!r} is not a group id "
                              f"1..65535 and one of {', '.join(k.FANOUT_MODES)}")
        try:
            arg = struct.pack("=I", group | (k.FANOUT_MODES[mode] << 16))
            self._sock.setsockopt(k.SOL_PACKET, k.PACKET_FANOUT, arg)
        except OSError as exc:
            raise ConfigError("[live] fanout_group", f"cannot join fanout group {group}: {exc.strerror} "
                              "(the group's other members must use the same mode)") from None

    def fileno(self) -> int:
        return self._sock.fileno()

    def _ready(self, block: int) -> bool:
        word = (block * self.block_size) // 4 + 2
        return bool(self._status[word] & k.TP_STATUS_USER)

    def wait(self, timeout_s: float) -> bool:
        """Block until a retired block is ready or ``timeout_s`` passes."""
        if self._ready(self._next):
            return True
        poller = select.poll()
        poller.register(self._sock, select.POLLIN | select.POLLERR)
        try:
            poller.poll(int(timeout_s * 1000))
        except InterruptedError:  # a signal arrived; the caller checks its stop flag
            return False
        return self._ready(self._next)

    def take(self, max_blocks: int) -> FrameBatch:
        """Index every retired block (up to ``max_blocks``) in ring order.

        The blocks stay ours until :meth:`release`; the batch's ``buf`` is the
        ring itself. Blocks are taken in ring order only, so a batch's
        offsets never wrap.
        """
        starts: list[int] = []
        while len(starts) < max_blocks and len(self._held) < self.block_count:
            if not self._ready(self._next):
                break
            start = self._next * self.block_size
            starts.append(start)
            self._held.append(start)
            self._next = (self._next + 1) % self.block_count
            if self._next == 0:
                break  # keep one batch's offsets increasing
        if not starts:
            return empty_batch(self.linktype)
        return walk_blocks(self._ring, starts, self.block_size, self.linktype, self._from_net,
                           source=f"ring on {self.interface}")

    def release(self) -> None:
        """Give the taken blocks back to the kernel."""
        for start in self._held:
            self._status[start // 4 + 2] = k.TP_STATUS_KERNEL
        self._held.clear()

    def stats(self) -> KernelStats:
        """Read (and so reset) the kernel's counters; return the running totals."""
        raw = self._sock.getsockopt(k.SOL_PACKET, k.PACKET_STATISTICS, k.STATS_V3.size)
        packets, drops, freezes = k.STATS_V3.unpack(raw)
        self._totals[0] += packets
        self._totals[1] += drops
        self._totals[2] += freezes
        return KernelStats(*self._totals)

    def close(self) -> None:
        if getattr(self, "_mm", None) is not None:
            self.release()
            del self._ring, self._status  # numpy views must go before the map can close
            try:
                self._mm.close()
            except BufferError:
                log.warning("A frame batch still points into the ring; leaving it mapped until exit.")
            self._mm = None  # type: ignore[assignment]
        self._sock.close()

    def __enter__(self) -> PacketRing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def attach_filter(sock: socket.socket, program: bytes) -> None:
    """SO_ATTACH_FILTER with packed ``struct sock_filter`` instructions."""
    if len(program) % 8 or not program:
        raise ValueError("a BPF program is a non-empty sequence of 8-byte instructions")
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = k.SOCK_FPROG.pack(len(program) // 8, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, k.SO_ATTACH_FILTER, fprog)
