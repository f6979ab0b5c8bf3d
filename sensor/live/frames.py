"""Frame batches and the TPACKET_V3 block walk (sans-I/O).

Theory of operation: the kernel fills a block of the ring with a chain of
``tpacket3_hdr`` headers, each followed by its frame. The only sequential
step is following ``tp_next_offset`` from one header to the next; that loop
touches one 32-bit word per packet and collects header offsets. Everything
else -- timestamps, lengths, VLAN tags, where each frame starts -- is read
for all packets at once with numpy fancy indexing over the ring, and the
decoder then reads the frames in place: no bytes are copied and no Python
object is made per packet.

The walk takes the ring as bytes and returns arrays, so it is tested on
synthetic blocks without a socket; the ring adapter (``ring.py``) only maps
memory and hands blocks over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from darknet_iodef.errors import CaptureError
from sensor.decode import DECODE_PAD
from sensor.live.kernel import BLOCK_DESC, TP_STATUS_VLAN_VALID, TPACKET3_HDR_LEN

__all__ = ["FrameBatch", "empty_batch", "walk_blocks"]


@dataclass(frozen=True, slots=True)
class FrameBatch:
    """Frames in place in ``buf``: what ``decode_frames`` and the archive take.

    ``buf`` may be a view of the live ring: use the batch before the blocks
    go back to the kernel, and keep nothing that points into it afterwards.
    """

    buf: npt.NDArray[np.uint8]
    offsets: npt.NDArray[np.int64]  # frame start in buf
    cap_lens: npt.NDArray[np.uint32]
    wire_lens: npt.NDArray[np.uint32]
    ts_ns: npt.NDArray[np.int64]  # kernel receive time, ns since the epoch
    vlan_tci: npt.NDArray[np.uint16]  # the 802.1Q TCI the kernel stripped, 0 if none
    vlan_tpid: npt.NDArray[np.uint16]  # its TPID (0 when not stripped)
    linktype: int

    def __len__(self) -> int:
        return int(self.offsets.shape[0])


def empty_batch(linktype: int) -> FrameBatch:
    return FrameBatch(
        np.zeros(0, np.uint8),
        np.zeros(0, np.int64),
        np.zeros(0, np.uint32),
        np.zeros(0, np.uint32),
        np.zeros(0, np.int64),
        np.zeros(0, np.uint16),
        np.zeros(0, np.uint16),
        linktype,
    )


def walk_blocks(
    ring: npt.NDArray[np.uint8],
    block_starts: Sequence[int],
    block_size: int,
    linktype: int,
    from_network_header: bool = False,
    source: str = "ring",
    fast: bool = True,
) -> FrameBatch:
    """Index the packets of retired blocks at ``block_starts`` (in ring order).

    ``ring`` is the whole mapped ring as uint8 (its length a multiple of 8).
    With ``from_network_header`` a frame starts at ``tp_net`` (devices
    without an Ethernet header), else at ``tp_mac``. Headers that point
    outside their block raise :class:`CaptureError` (a kernel/ABI mismatch,
    never expected). ``fast=False`` always follows the chain one header at a
    time (for tests: both must agree).
    """
    if not block_starts:
        return empty_batch(linktype)
    r32 = np.frombuffer(ring, dtype=np.uint32)
    r16 = np.frombuffer(ring, dtype=np.uint16)
    u32 = memoryview(ring.data).cast("B").cast("I")
    chains: list[npt.NDArray[np.int64]] = []
    ends: list[int] = []
    counts: list[int] = []
    for start in block_starts:
        desc = np.frombuffer(ring, BLOCK_DESC, count=1, offset=start)[0]
        n = int(desc["num_pkts"])
        first = int(desc["offset_to_first_pkt"])
        if n > (block_size - min(first, block_size)) // TPACKET3_HDR_LEN:
            raise CaptureError(source, f"block at {start}", f"{n} packets cannot fit in the block")
        used = min(int(desc["blk_len"]), block_size)
        chain = _chain_guess(r32, r16, start + first, start + used, n) if fast else None
        if chain is None:
            chain = _chain_follow(u32, start + first, n, source, start)
        chains.append(chain)
        ends.append(start + block_size)
        counts.append(n)
    h = np.concatenate(chains)
    block_end = np.repeat(np.asarray(ends, dtype=np.int64), counts)
    w = h >> 2  # header offsets are 8-byte aligned: index the ring as u32
    if h.size and (h.min() < 0 or (h + TPACKET3_HDR_LEN > block_end).any() or (h & 7).any()):
        raise CaptureError(source, "block header", "packet header outside its block or misaligned")
    sec = r32[w + 1].astype(np.int64)
    nsec = r32[w + 2].astype(np.int64)
    snap = r32[w + 3]
    wire = r32[w + 4]
    status = r32[w + 5]
    start_field = r16[(h >> 1) + (13 if from_network_header else 12)].astype(np.int64)
    offsets = h + start_field
    if from_network_header:
        # tp_snaplen counts from the link header; the raw-IP frame is shorter by the gap
        gap = (start_field - r16[(h >> 1) + 12].astype(np.int64)).astype(np.uint32)
        snap = snap - np.minimum(snap, gap)
        wire = wire - np.minimum(wire, gap)
    if (offsets + snap > block_end).any():
        raise CaptureError(source, "packet header", "captured bytes run past the end of the block")
    vlan_ok = (status & TP_STATUS_VLAN_VALID) != 0
    tci = np.where(vlan_ok, r32[w + 8], 0).astype(np.uint16)
    tpid = np.where(vlan_ok, r16[(h >> 1) + 18], 0).astype(np.uint16)
    tpid[vlan_ok & (tpid == 0)] = 0x8100  # old kernels set no TPID: 802.1Q
    # hand over only the span of these blocks (plus the decoder's read-ahead
    # where the ring has it), so a decoder that must pad copies one batch at
    # most, never the whole ring
    lo = min(block_starts)
    hi = min(ring.shape[0], max(block_starts) + block_size + DECODE_PAD)
    return FrameBatch(
        ring[lo:hi],
        offsets - lo,
        snap.astype(np.uint32),
        wire.astype(np.uint32),
        sec * 1_000_000_000 + nsec,
        tci,
        tpid,
        linktype,
    )


def _chain_follow(u32: memoryview, first: int, n: int, source: str, start: int) -> npt.NDArray[np.int64]:
    """Header offsets by following ``tp_next_offset``: one Python step per packet."""
    hdrs = [0] * n
    off = first
    try:
        for i in range(n):
            hdrs[i] = off
            off += u32[off >> 2]
    except IndexError:
        raise CaptureError(source, f"block at {start}", "packet chain leaves the ring") from None
    return np.asarray(hdrs, dtype=np.int64)


def _chain_guess(
    r32: npt.NDArray[np.uint32], r16: npt.NDArray[np.uint16], first: int, end: int, n: int
) -> npt.NDArray[np.int64] | None:
    """Header offsets without a per-packet step, or None to follow the chain instead.

    Every header is 8-byte aligned, and on one socket every packet has the
    same ``tp_mac`` and ``tp_net`` (the kernel reserves the same room before
    each frame). So the candidates are the 8-byte slots whose ``tp_mac`` and
    ``tp_net`` words equal the first header's -- strided views of the block,
    no gather. The guess is then *proved*: exactly ``n`` candidates, the
    first at ``first``, each one's ``tp_next_offset`` landing on the next;
    by induction they are the chain. Frame bytes that happen to (or are made
    to) look like a header only make the proof fail, and the caller follows
    the chain the slow way: never a wrong answer.
    """
    if n == 0:
        return np.zeros(0, np.int64)
    if first & 7 or end - first < TPACKET3_HDR_LEN:
        return None
    slots = (end - first - TPACKET3_HDR_LEN) // 8 + 1
    if slots < n:
        return None
    h0 = first >> 1
    mac = r16[h0 + 12 : h0 + 12 + 4 * slots : 4]  # tp_mac at byte 24 of each slot
    net = r16[h0 + 13 : h0 + 13 + 4 * slots : 4]  # tp_net at byte 26
    if mac.shape[0] != slots or net.shape[0] != slots:
        return None
    cand = np.flatnonzero((mac == mac[0]) & (net == net[0]))
    if cand.shape[0] != n:
        return None
    pos = first + cand.astype(np.int64) * 8
    nxt = r32[(pos[:-1] >> 2)].astype(np.int64)
    if not np.array_equal(pos[:-1] + nxt, pos[1:]):
        return None
    return pos
