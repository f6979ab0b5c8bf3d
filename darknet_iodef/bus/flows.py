"""Flow batches on the bus: one sensor batch -> one message per partition, by source address.

Theory of operation. Everything an aggregator learns about a source must reach
the same aggregator, so the sensor splits each interval's :class:`FlowBatch`
by ``partition_for(address)`` (Kafka's murmur2, vectorised: one numpy pass over
the batch) -- flows and probe samples alike -- and sends each part to its
partition explicitly. The address is the source, except for ICMP error rows
(a non-zero ``quoted_dst_ip``): their outer source is a router on the path,
and the one they speak about -- the backscatter victim (DOMAIN.md section 3) --
is the quoted destination. Partitioning those rows by the router would split
one victim's vector across aggregators, each below the thresholds.

Two more rules make the parts safe to consume independently:

* **Every partition gets a part for every interval, even an empty one.** An
  aggregator closes its windows on event time; a partition that received
  nothing for an interval would otherwise never learn that the interval is
  over. An empty batch is a ~60-byte watermark.
* **The batch's counters (``stats``) ride on exactly one part** -- the first
  part of partition ``partition_for(sensor name)`` -- so summing stats over
  everything consumed counts each packet once.

Parts are further cut so that each encoded message stays under ``max_bytes``
(default below Kafka's 1 MiB ``message.max.bytes``); rows keep their order.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from darknet_iodef.bus.partitioner import partition_for, partitions_of_addresses
from darknet_iodef.flowtuple import FLOW_DTYPE, SAMPLE_DTYPE, FlowBatch

__all__ = ["DEFAULT_MAX_BYTES", "partition_batch"]

#: encoded size bound per message: Kafka's default message.max.bytes is 1 MiB (1048588)
DEFAULT_MAX_BYTES = 900_000
#: header, sensor name and stats JSON are small; keep this much room for them
_OVERHEAD = 4096


def _sources(rows: npt.NDArray[np.void]) -> npt.NDArray[np.uint8]:
    """The partition address of each row: the quoted destination of ICMP errors, else the source."""
    src = np.ascontiguousarray(rows["src_ip"]).view(np.uint8).reshape(-1, 16)
    quoted = np.ascontiguousarray(rows["quoted_dst_ip"]).view(np.uint8).reshape(-1, 16)
    icmp_error: npt.NDArray[np.bool_] = np.any(quoted != 0, axis=1)
    if not icmp_error.any():
        return src
    return np.where(icmp_error.reshape(-1, 1), quoted, src)


def partition_batch(
    batch: FlowBatch, partitions: int, max_bytes: int = DEFAULT_MAX_BYTES
) -> list[tuple[int, FlowBatch]]:
    """``(partition, part)`` for every partition (at least one part each), in partition order."""
    if max_bytes < _OVERHEAD + FLOW_DTYPE.itemsize + SAMPLE_DTYPE.itemsize:
        raise ValueError(f"max_bytes {max_bytes} is too small for one flow and one sample")
    flow_part = partitions_of_addresses(_sources(batch.flows), partitions)
    sample_part = partitions_of_addresses(_sources(batch.samples), partitions)
    stats_home = partition_for(batch.sensor.encode("utf-8"), partitions)
    budget = max_bytes - _OVERHEAD
    out: list[tuple[int, FlowBatch]] = []
    for p in range(partitions):
        flows = batch.flows[flow_part == p]
        samples = batch.samples[sample_part == p]
        f = s = 0
        first = True
        while first or f < len(flows) or s < len(samples):
            # fill with flows first, then samples, within the byte budget
            nf = min(len(flows) - f, budget // FLOW_DTYPE.itemsize)
            room = budget - nf * FLOW_DTYPE.itemsize
            ns = min(len(samples) - s, room // SAMPLE_DTYPE.itemsize)
            out.append((p, FlowBatch(
                batch.interval_start_ns, batch.interval_ns, batch.sensor,
                flows[f : f + nf], samples[s : s + ns],
                dict(batch.stats) if first and p == stats_home else {},
            )))
            f, s, first = f + nf, s + ns, False
    return out
