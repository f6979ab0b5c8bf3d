"""Building events: stable ids and the fields every event carries.

Theory of operation: an incident's id is a hash of its kind, its key (the
source, the victim and protocol, or the ingress link and interval) and its
start in event time, so replaying the same flows gives the same ids, and a
continuing incident keeps its id while ``extra.revision`` grows. Field names
and the classification triple follow :mod:`darknet_iodef.events`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from darknet_iodef.events import KINDS, iso_time

__all__ = ["PROTO_NAMES", "base_event", "event_id", "proto_name"]

PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp", 41: "ipv6", 47: "gre", 132: "sctp"}


def proto_name(proto: int) -> str:
    return PROTO_NAMES.get(proto, str(proto))


def event_id(kind: str, key: str, start_ns: int) -> str:
    return hashlib.sha256(f"{kind}|{key}|{start_ns}".encode()).hexdigest()[:32]


def base_event(
    kind: str,
    identifier: str,
    key: str,
    start_ns: int,
    end_ns: int,
    observed_ns: int,
    revision: int,
    feed_name: str,
) -> dict[str, Any]:
    taxonomy, typ = KINDS[kind]
    return {
        "classification.identifier": identifier,
        "classification.taxonomy": taxonomy,
        "classification.type": typ,
        "extra.event_id": event_id(kind, key, start_ns),
        "extra.revision": revision,
        "extra.time_end": iso_time(end_ns),
        "feed.name": feed_name,
        "time.observation": iso_time(observed_ns),
        "time.source": iso_time(start_ns),
    }
