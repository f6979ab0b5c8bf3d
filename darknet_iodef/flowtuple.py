"""Flow summaries: the record layout between sensor and aggregator (format v2).

Theory of operation: in the spirit of CAIDA Corsaro's FlowTuple (DOMAIN.md
section 2), the sensor folds the packets of one interval of event time
(default 60 s) into tuples keyed by source, destination, ports (ICMP type and
code in the port fields), protocol, TTL, TCP flags and IP length, with a packet
count. Because the detectors need more than Corsaro keeps, a tuple also holds:

- ``first_ns``/``last_ns``: when the tuple was first/last seen in the interval;
- ``slot_counts``: packets per sixth of the interval (10 s slots by default) so
  the backscatter detector can evaluate Moore's 60 s window sliding by 10 s;
- ``quoted_dst_ip``/``quoted_protocol``/``quoted_dst_port``: for ICMP errors,
  the quoted packet's destination -- the DoS victim (DOMAIN.md section 3);
- ``tcp_window``/``tcp_hdr_len`` (corsaro3 keeps these for SYNs) and
  ``ip_flags`` for the per-packet spoofing heuristics;
- ``vlan``/``src_mac``: the ingress link, for spoofing summaries per neighbour.

And per source, a bounded *sample* of raw probe fields (IP ID, sequence
number, window, options, quoted ICMP fields, the payload's first bytes) for
tool fingerprints.

A :class:`FlowBatch` never mixes intervals. Its binary encoding -- used in
flow files and as the Kafka message value -- is a fixed little-endian header,
the sensor name, a small JSON stats object, then the two arrays' raw bytes.
Decoding checks every length against the header, so a corrupt or hostile
message raises :class:`~darknet_iodef.errors.RecordError` and nothing else.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from darknet_iodef.addresses import format_addr16
from darknet_iodef.errors import RecordError

__all__ = [
    "FLOW_DTYPE",
    "FORMAT_VERSION",
    "IPF_DF",
    "IPF_FRAGMENT",
    "IPF_MF",
    "IPF_RESERVED",
    "MAGIC",
    "SAMPLE_DTYPE",
    "SLOTS",
    "FlowBatch",
    "decode_batch",
    "encode_batch",
    "flow_rows_as_dicts",
    "read_batches",
    "sample_rows_as_dicts",
    "write_batch",
]

FORMAT_VERSION = 2  # 2: payload_len and payload_head in samples
MAGIC = b"DIFT"
#: sub-interval slots per interval (10 s slots for the default 60 s interval)
SLOTS = 6

# ``ip_flags`` bits of a flow tuple
IPF_MF = 0x01
IPF_DF = 0x02
IPF_RESERVED = 0x04
IPF_FRAGMENT = 0x08  # fragment offset != 0 (no ports in this packet)

FLOW_DTYPE = np.dtype(
    [
        ("src_ip", "V16"),
        ("dst_ip", "V16"),
        ("quoted_dst_ip", "V16"),
        ("first_ns", "<i8"),
        ("last_ns", "<i8"),
        ("src_mac", "<u8"),
        ("packet_count", "<u4"),
        ("slot_counts", "<u4", (SLOTS,)),
        ("src_port", "<u2"),  # or ICMP type
        ("dst_port", "<u2"),  # or ICMP code
        ("quoted_dst_port", "<u2"),
        ("ip_len", "<u2"),
        ("vlan", "<u2"),
        ("tcp_window", "<u2"),
        ("protocol", "u1"),
        ("quoted_protocol", "u1"),
        ("ttl", "u1"),
        ("tcp_flags", "u1"),  # one byte, CWR..FIN (Corsaro)
        ("tcp_hdr_len", "u1"),
        ("ip_flags", "u1"),
        ("ip_version", "u1"),
        ("_pad", "u1"),
    ]
)

SAMPLE_DTYPE = np.dtype(
    [
        ("ts_ns", "<i8"),
        ("src_ip", "V16"),
        ("dst_ip", "V16"),
        ("quoted_src_ip", "V16"),
        ("quoted_dst_ip", "V16"),
        ("tcp_opt_kinds", "<u8"),
        ("ip_id", "<u4"),
        ("tcp_seq", "<u4"),
        ("tcp_ack", "<u4"),
        ("src_port", "<u2"),
        ("dst_port", "<u2"),
        ("quoted_src_port", "<u2"),
        ("quoted_dst_port", "<u2"),
        ("tcp_window", "<u2"),
        ("tcp_mss", "<u2"),
        ("tcp_flags", "<u2"),
        ("ip_len", "<u2"),
        ("protocol", "u1"),
        ("quoted_protocol", "u1"),
        ("ttl", "u1"),
        ("ip_version", "u1"),
        ("tcp_hdr_len", "u1"),
        ("icmp_type", "u1"),
        ("icmp_code", "u1"),
        ("payload_cap", "u1"),  # how many bytes of payload_head are real (captured)
        ("payload_len", "<u2"),  # TCP/UDP payload length the headers declare
        ("payload_head", "V24"),  # its first 24 bytes as captured, zero padded
    ]
)

# magic, version, header length, interval_start_ns, interval_ns, n_flows,
# n_samples, sensor-name length, stats length
_HEADER = struct.Struct("<4sHHqqIIHI")
#: largest message we accept when decoding (Corsaro packs at most 512 KB; we
#: allow more for files, but bound it so a hostile length cannot allocate GBs)
MAX_BATCH_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class FlowBatch:
    """The flow tuples and probe samples of one interval from one sensor."""

    interval_start_ns: int
    interval_ns: int
    sensor: str
    flows: npt.NDArray[np.void]
    samples: npt.NDArray[np.void]
    #: counters for the operator (packets seen, outside the darknet, malformed ...)
    stats: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.flows.dtype != FLOW_DTYPE or self.samples.dtype != SAMPLE_DTYPE:
            raise TypeError("FlowBatch arrays must have FLOW_DTYPE and SAMPLE_DTYPE")


def encode_batch(batch: FlowBatch) -> bytes:
    """The compact binary form (Kafka message value, flow file record)."""
    name = batch.sensor.encode("utf-8")
    stats = json.dumps(dict(batch.stats), sort_keys=True, separators=(",", ":")).encode()
    head = _HEADER.pack(
        MAGIC,
        FORMAT_VERSION,
        _HEADER.size,
        batch.interval_start_ns,
        batch.interval_ns,
        batch.flows.shape[0],
        batch.samples.shape[0],
        len(name),
        len(stats),
    )
    return b"".join(
        (
            head,
            name,
            stats,
            np.ascontiguousarray(batch.flows).tobytes(),
            np.ascontiguousarray(batch.samples).tobytes(),
        )
    )


def decode_batch(data: bytes | memoryview, source: str = "message") -> FlowBatch:
    """Inverse of :func:`encode_batch`; raises RecordError on any mismatch."""
    mv = memoryview(data)
    if len(mv) < _HEADER.size:
        raise RecordError(source, "offset 0", f"flow batch shorter than its {_HEADER.size}-byte header")
    if len(mv) > MAX_BATCH_BYTES:
        raise RecordError(source, "offset 0", f"flow batch of {len(mv)} bytes exceeds the limit")
    magic, version, hlen, start, interval, nf, ns, nlen, slen = _HEADER.unpack_from(mv, 0)
    if magic != MAGIC:
        raise RecordError(source, "offset 0", f"not a flow batch (magic {bytes(magic)!r})")
    if version != FORMAT_VERSION:
        raise RecordError(source, "offset 4", f"unsupported flow format version {version}")
    if hlen != _HEADER.size:
        raise RecordError(source, "offset 6", f"header length {hlen}, expected {_HEADER.size}")
    if interval <= 0:
        raise RecordError(source, "offset 16", f"interval of {interval} ns is not positive")
    expect = hlen + nlen + slen + nf * FLOW_DTYPE.itemsize + ns * SAMPLE_DTYPE.itemsize
    if expect != len(mv):
        raise RecordError(
            source, "offset 0", f"length {len(mv)} does not match header (expected {expect})"
        )
    pos = hlen
    try:
        sensor = bytes(mv[pos : pos + nlen]).decode("utf-8")
        pos += nlen
        stats_obj = json.loads(bytes(mv[pos : pos + slen]) or b"{}")
    except (UnicodeDecodeError, ValueError) as exc:
        raise RecordError(source, f"offset {pos}", f"bad sensor name or stats ({exc})") from None
    if not isinstance(stats_obj, dict) or not all(
        isinstance(k, str) and isinstance(v, int) for k, v in stats_obj.items()
    ):
        raise RecordError(source, f"offset {pos}", "stats is not an object of integers")
    pos += slen
    flows = np.frombuffer(mv, dtype=FLOW_DTYPE, count=nf, offset=pos).copy()
    pos += nf * FLOW_DTYPE.itemsize
    samples = np.frombuffer(mv, dtype=SAMPLE_DTYPE, count=ns, offset=pos).copy()
    return FlowBatch(start, interval, sensor, flows, samples, stats_obj)


_FRAME = struct.Struct("<I")


def write_batch(out: BinaryIO, batch: FlowBatch) -> None:
    """Append one length-prefixed batch to a flow file."""
    data = encode_batch(batch)
    out.write(_FRAME.pack(len(data)))
    out.write(data)


def read_batches(inp: BinaryIO, source: str) -> Iterator[FlowBatch]:
    """Read a flow file written by :func:`write_batch`.

    A damaged frame raises RecordError naming the file and offset; the
    caller decides whether to stop (a length prefix cannot be trusted after
    that, so the rest of the file is unreadable).
    """
    offset = 0
    while True:
        head = inp.read(_FRAME.size)
        if not head:
            return
        if len(head) < _FRAME.size:
            raise RecordError(source, f"offset {offset}", "truncated frame length")
        (size,) = _FRAME.unpack(head)
        if size > MAX_BATCH_BYTES:
            raise RecordError(source, f"offset {offset}", f"frame of {size} bytes exceeds the limit")
        data = inp.read(size)
        if len(data) < size:
            raise RecordError(source, f"offset {offset}", "truncated flow batch")
        try:
            yield decode_batch(data, source)
        except RecordError as exc:
            raise RecordError(source, f"offset {offset}", exc.reason) from None
        offset += _FRAME.size + size


def _row_dict(row: np.void, names: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        if name.startswith("_"):
            continue
        value = row[name]
        if isinstance(value, np.void) and value.dtype.itemsize == 16 and name.endswith("_ip"):
            out[name] = format_addr16(value) if value.tobytes() != bytes(16) else None
        elif name == "payload_head":
            out[name] = value.tobytes()[: int(row["payload_cap"])].hex()  # the real bytes only
        elif isinstance(value, np.ndarray):
            out[name] = [int(v) for v in value]
        else:
            out[name] = int(value)
    return out


def flow_rows_as_dicts(batch: FlowBatch) -> Iterator[dict[str, Any]]:
    """Flow tuples as JSON-ready dicts (for people: JSON lines output)."""
    names = FLOW_DTYPE.names or ()
    for row in batch.flows:
        d = _row_dict(row, names)
        d["interval_start_ns"] = batch.interval_start_ns
        yield d


def sample_rows_as_dicts(batch: FlowBatch) -> Iterator[dict[str, Any]]:
    names = SAMPLE_DTYPE.names or ()
    for row in batch.samples:
        yield _row_dict(row, names)
