"""Prometheus metrics of delivery and of the receiver, declared in one place.

Names follow ``darknet_<component>_<what>_<unit>[_total]`` (STYLE.md); labels
are outcomes, channels and states -- never a peer's address or name.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = [
    "DELIVERY_ATTEMPTS",
    "OUTBOX_REPORTS",
    "RECEIVER_CONNECTIONS_REFUSED",
    "RECEIVER_REQUESTS",
    "RECEIVER_STORED_BYTES",
]

DELIVERY_ATTEMPTS = Counter(
    "darknet_reporter_delivery_attempts_total",
    "Delivery attempts of reports, by channel (rid, mail, dir) and outcome",
    ["channel", "outcome"],
)
OUTBOX_REPORTS = Gauge(
    "darknet_reporter_outbox_reports",
    "Reports in the outbox by state (queued, sent, failed, rejected)",
    ["state"],
)
RECEIVER_REQUESTS = Counter(
    "darknet_reporter_receiver_requests_total",
    "HTTP requests answered by the RID receiver, by status code",
    ["status"],
)
RECEIVER_CONNECTIONS_REFUSED = Counter(
    "darknet_reporter_receiver_connections_refused_total",
    "Connections closed before any HTTP answer, by reason (tls, busy, timeout)",
    ["reason"],
)
RECEIVER_STORED_BYTES = Counter(
    "darknet_reporter_receiver_stored_bytes_total",
    "Bytes of RID messages accepted and stored by the receiver",
)
