"""Live capture: an AF_PACKET TPACKET_V3 ring (libpcap where it cannot be used) feeding the flow builder.

Modules: ``kernel`` (the kernel's structures as tables), ``frames`` (the
block walk, sans-I/O), ``ring`` (the mapped ring), ``bpf`` (filters through
libpcap's compiler), ``fallback`` (libpcap capture), ``archive`` (rotating
pcap evidence), ``settings``, ``agent`` (``run_live``) and ``command``
(``sensor --interface``). Metrics are declared in :mod:`darknet_iodef.metrics`
(``LiveMetrics``).
See docs/live-capture.md.
"""

__all__: list[str] = []
