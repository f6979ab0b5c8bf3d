"""UDP and ICMP payload templates the planted probes carry.

Theory of operation: darknet UDP probes are requests of well-known services
(DNS, NTP, SNMP, SSDP, SIP), sent by scanners looking for amplifiers and
exposed devices. Each template is the request as such a scanner sends it,
built from the protocol's own layout so tshark dissects it as that protocol;
``id_at`` marks a 16-bit transaction id written per packet.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["MASSCAN_UDP_PAYLOAD_PORTS", "PAYLOADS", "PING_DATA", "UDP_SERVICE_PAYLOAD", "Payload"]


@dataclass(frozen=True, slots=True)
class Payload:
    name: str
    data: bytes
    id_at: int | None = None  # offset of a per-packet 16-bit id, if any


def _dns_query() -> bytes:
    # RFC 1035 query: id, flags RD, 1 question; "version.bind" CH TXT is a common
    # resolver-discovery probe; scanners also ask for A records of their own names.
    qname = b"".join(bytes([len(p)]) + p for p in (b"example", b"com")) + b"\x00"
    return (
        struct.pack(">HHHHHH", 0, 0x0100, 1, 0, 0, 1)
        + qname
        + struct.pack(">HH", 255, 1)
        + (
            b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00"  # EDNS0 OPT, 4096-byte UDP (amplifier hunting)
        )
    )


def _ntp_client() -> bytes:
    # RFC 5905 client request: LI 3, version 4, mode 3 (0xE3), 48 bytes
    return bytes([0xE3, 0x00, 0x06, 0xEC]) + bytes(44)


def _snmp_get() -> bytes:
    # SNMPv1 GetRequest, community "public", sysDescr.0 (1.3.6.1.2.1.1.1.0), BER
    oid = bytes([0x06, 0x08, 0x2B, 0x06, 0x01, 0x02, 0x01, 0x01, 0x01, 0x00])
    varbind = bytes([0x30, len(oid) + 2]) + oid + b"\x05\x00"
    vblist = bytes([0x30, len(varbind)]) + varbind
    pdu_body = b"\x02\x02\x00\x00" + b"\x02\x01\x00" + b"\x02\x01\x00" + vblist
    pdu = bytes([0xA0, len(pdu_body)]) + pdu_body
    body = b"\x02\x01\x00" + b"\x04\x06public" + pdu
    return bytes([0x30, len(body)]) + body


def _nbns_nbstat() -> bytes:
    # RFC 1002 node status request for the wildcard name "*" (what masscan and
    # nbtscan send to 137): id, flags 0, 1 question, name "*" encoded, NBSTAT IN
    name = b"\x20" + b"CK" + b"A" * 30 + b"\x00"
    return struct.pack(">HHHHHH", 0, 0, 1, 0, 0, 0) + name + struct.pack(">HH", 0x21, 1)


def _ssdp_msearch() -> bytes:
    return (
        b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n"
        b'MAN: "ssdp:discover"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n'
    )


def _sip_options() -> bytes:
    # the OPTIONS request of SIP scanners (sipvicious svmap style)
    return (
        b"OPTIONS sip:100@198.18.0.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-1819401712;rport\r\n"
        b"Max-Forwards: 70\r\n"
        b'To: "sipvicious"<sip:100@1.1.1.1>\r\n'
        b'From: "sipvicious"<sip:100@1.1.1.1>;tag=6434396633623535313363340131313530393835393239\r\n'
        b"User-Agent: friendly-scanner\r\n"
        b"Call-ID: 491541372536405328451137\r\n"
        b"Contact: sip:100@192.0.2.10:5060\r\n"
        b"CSeq: 1 OPTIONS\r\n"
        b"Accept: application/sdp\r\n"
        b"Content-Length: 0\r\n\r\n"
    )


#: Linux ping's 56 data bytes: a 16-byte struct timeval, then bytes 0x10..0x37
PING_DATA = bytes.fromhex("5f1e6b6900000000a2c30b0000000000") + bytes(range(0x10, 0x38))

#: template id -> payload (id 0 is "zeros of the row's paylen")
PAYLOADS: dict[int, Payload] = {
    1: Payload("dns", _dns_query(), id_at=0),
    2: Payload("ntp", _ntp_client()),
    3: Payload("snmp", _snmp_get(), id_at=17),
    4: Payload("ssdp", _ssdp_msearch()),
    5: Payload("sip", _sip_options()),
    6: Payload("ping", PING_DATA),
    7: Payload("nbns", _nbns_nbstat(), id_at=0),
}

#: UDP destination port -> template id
UDP_SERVICE_PAYLOAD: dict[int, int] = {53: 1, 123: 2, 137: 7, 161: 3, 1900: 4, 5060: 5}
#: the ports masscan has a built-in payload for, among those above; it sends
#: other UDP probes empty
MASSCAN_UDP_PAYLOAD_PORTS = (53, 123, 137, 161)
