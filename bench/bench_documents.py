"""Documents per second: events -> IODEF 2.0 XML, RFC 8727 JSON, signed RID Reports.

Runs on the same synthetic events (one scan per source, sources spread so that
each lands in its own /24, the worst case: one document per event), in one
process, and prints the rate of each stage and the alternatives side by side:

* grouping + XML only;
* XML + JSON written compact (what ``report`` does) vs indented (the pure-Python
  ``json`` encoder);
* XML + a signed RID Report with an ECDSA P-256 key vs an RSA-2048 key.

Usage::

    python bench/bench_documents.py [--events 20000] [--signed 2000]

No assertion: speed is measured, not asserted (STYLE.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from reporter import iodef, jsoniodef
from reporter.documents import build_documents
from reporter.grouping import group_events, parse_reportable
from reporter.rid import SigningIdentity
from reporter.settings import ReporterSettings


def make_events(n: int) -> list[tuple[str, dict[str, Any]]]:
    rng = random.Random(1)
    out = []
    for i in range(n):
        ip = f"{rng.randrange(1, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        out.append((f"line {i + 1}", {
            "classification.taxonomy": "information-gathering", "classification.type": "scanner",
            "classification.identifier": "mirai", "feed.name": "bench", "extra.event_id": f"e{i}",
            "extra.revision": 1, "time.source": "2024-03-01T00:01:00+00:00",
            "extra.time_end": "2024-03-01T00:09:00+00:00", "time.observation": "2024-03-01T00:10:00+00:00",
            "source.ip": ip, "protocol.transport": "tcp", "destination.port": 23,
            "extra.ports": [{"protocol": "tcp", "port": 23, "packets": 40, "destinations": 40},
                            {"protocol": "tcp", "port": 2323, "packets": 4, "destinations": 4}],
            "extra.ports_distinct": 2, "extra.kind": "strobe", "extra.packets": 44, "extra.bytes": 1760,
            "extra.destinations_distinct": 44, "extra.tool": "mirai",
            "extra.tool_evidence": {"mirai": "3/3 sampled probes: TCP seq == destination address"},
            "extra.confidence": 0.9, "extra.rate_pps_estimated": 160.0,
        }))
    return out


def signer(directory: Path, kind: str) -> SigningIdentity:
    key = ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"bench-{kind}")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    kp, cp = directory / f"{kind}.key", directory / f"{kind}.crt"
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return SigningIdentity.load(kp, cp)


def rate(label: str, n: int, seconds: float) -> float:
    r = n / seconds
    print(f"{label:<34} {n:>6} documents in {seconds:6.2f} s = {r:7.0f} documents/s")
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--signed", type=int, default=2_000, help="events for the signing runs")
    args = ap.parse_args()
    events = make_events(args.events)
    settings = ReporterSettings()

    t = time.perf_counter()
    groups, _ = group_events([parse_reportable(e) for _, e in events], None, settings)
    roots = [iodef.build_iodef(g, settings) for g in groups]
    xml = [iodef.serialize(r) for r in roots]
    rate("check + group + XML", len(xml), time.perf_counter() - t)

    t = time.perf_counter()
    docs = [jsoniodef.to_json(r) for r in roots]
    rate("XML tree -> RFC 8727 object", len(docs), time.perf_counter() - t)
    t = time.perf_counter()
    compact = [jsoniodef.dumps(d) for d in docs]
    c = rate("JSON text, compact (written)", len(compact), time.perf_counter() - t)
    t = time.perf_counter()
    indented = [json.dumps(d, indent=2, sort_keys=True).encode() for d in docs]
    i = rate("JSON text, indented (alternative)", len(indented), time.perf_counter() - t)
    print(f"{'':34} compact is {c / i:.1f}x indented; mean size: XML {sum(map(len, xml)) / len(xml):.0f} B, "
          f"JSON {sum(map(len, compact)) / len(compact):.0f} B compact, "
          f"{sum(map(len, indented)) / len(indented):.0f} B indented")

    t = time.perf_counter()
    full = build_documents(events, None, settings)
    rate("all of it: build_documents", len(full.reports), time.perf_counter() - t)

    with tempfile.TemporaryDirectory() as d:
        few = events[: args.signed]
        for kind, label in (("ec", "ECDSA P-256"), ("rsa", "RSA-2048")):
            ident = signer(Path(d), kind)
            t = time.perf_counter()
            out = build_documents(few, None, settings.replace(formats=("xml",)), ident)
            rate(f"XML + signed RID ({label})", len(out.reports), time.perf_counter() - t)


if __name__ == "__main__":
    main()
