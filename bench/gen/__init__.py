"""Darknet-like traffic generator: planted scanners, backscatter, spoofed floods.

Theory of operation: every planted entity (a scanner, a DoS victim's
backscatter, a spoofed flood, background radiation) writes its packets as rows
of one numpy table (:data:`bench.gen.wire.SPEC_DTYPE`), one column per header
field. The rows are sorted by event time, turned into Ethernet frames in
chunks (vectorized header and checksum arithmetic, no Python object per
packet), and written as pcap or pcapng records. The labels are computed back
from the very rows that were written, so they describe the file exactly.
"""

__all__: list[str] = []
