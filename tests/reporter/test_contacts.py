"""Constituency table: longest-prefix match (IPv4, IPv6, nested, none), ASNs, TOML/CSV loading and errors."""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path

import numpy as np
import pytest

from darknet_iodef.addresses import ADDR_DTYPE, parse_addr16
from darknet_iodef.errors import ConfigError
from reporter.contacts import Contact, ContactTable, load_contacts, slug


def ids(table: ContactTable, *ips: str) -> list[str | None]:
    out = []
    for ip in ips:
        c = table.lookup(ip)
        out.append(c.id if c else None)
    return out


def test_nested_prefixes_ipv6_and_no_match(contacts: ContactTable) -> None:
    assert ids(contacts, "198.51.100.23", "198.51.100.255", "198.51.7.9", "198.52.0.1") == [
        "example-hosting", "example-hosting", "example-transit", None]
    assert ids(contacts, "2001:db8:1::5", "2001:db9::1", "192.0.2.0", "192.0.3.0") == [
        "example-isp", None, "example-isp", None]
    assert contacts.prefix_count == 4


def test_asn_matches_only_without_a_prefix(contacts: ContactTable) -> None:
    assert contacts.lookup("100.70.0.1") is None
    assert contacts.lookup("100.70.0.1", asn=64501).id == "example-cgn"
    assert contacts.lookup("192.0.2.1", asn=64501).id == "example-isp"  # the prefix is more specific
    assert contacts.lookup("100.70.0.1", asn=64999) is None


def test_bulk_lookup_of_mixed_families(contacts: ContactTable) -> None:
    addrs = np.frombuffer(b"".join(parse_addr16(ip) for ip in (
        "198.51.100.1", "2001:db8::1", "10.0.0.1", "198.51.0.0", "::1")), dtype=ADDR_DTYPE)
    got = [contacts.contacts[i].id if i >= 0 else None for i in contacts.lookup_addr16(addrs)]
    assert got == ["example-hosting", "example-isp", None, "example-transit", None]
    assert contacts.lookup_addr16(np.zeros(0, dtype=ADDR_DTYPE)).tolist() == []


def test_matches_brute_force_on_random_nested_prefixes() -> None:
    rng = random.Random(7)
    nets: dict[str, int] = {}
    for n in range(400):
        if n % 2:
            length = rng.choice([8, 12, 16, 20, 23, 24, 28, 32])
            addr = ipaddress.IPv4Address(rng.getrandbits(32) & 0xF0FFFFFF)
            net = ipaddress.ip_network(f"{addr}/{length}", strict=False)
        else:
            length = rng.choice([16, 29, 32, 48, 56, 64, 65, 100, 128])
            base = (0x2001_0DB8 << 96) | (rng.getrandbits(96) & ((1 << 40) - 1)) << 56
            net = ipaddress.ip_network(f"{ipaddress.IPv6Address(base)}/{length}", strict=False)
        nets.setdefault(str(net), len(nets))
    contacts = [Contact(f"c{i}", f"Org {i}", f"abuse{i}@example.net") for i in range(len(nets))]
    table = ContactTable.build(contacts, list(nets.items()))
    parsed = [(ipaddress.ip_network(n), i) for n, i in nets.items()]
    probes = [str(ipaddress.ip_network(n).network_address + rng.randrange(4)) for n in list(nets)[:300]]
    probes += [str(ipaddress.IPv4Address(rng.getrandbits(32) & 0xF0FFFFFF)) for _ in range(300)]
    addrs = np.frombuffer(b"".join(parse_addr16(p) for p in probes), dtype=ADDR_DTYPE)
    got = table.lookup_addr16(addrs).tolist()
    want = []
    for p in probes:
        a = ipaddress.ip_address(p)
        hits = [(n.prefixlen, i) for n, i in parsed if n.version == a.version and a in n]
        want.append(max(hits)[1] if hits else -1)
    assert got == want
    assert sum(1 for w in want if w >= 0) > 300  # the probes do exercise matches


def test_large_batches_take_the_sorted_path_with_the_same_answers() -> None:
    rng = np.random.default_rng(3)
    starts = rng.integers(0, 1 << 32, size=5000, dtype=np.uint64).astype(np.uint32)
    lengths = rng.choice([8, 16, 20, 24, 32], size=5000)
    masks = (0xFFFFFFFF << (32 - lengths.astype(np.uint64))) & 0xFFFFFFFF
    keep = np.unique((starts & masks).astype(np.uint64) * 64 + lengths, return_index=True)[1]
    contacts = [Contact(f"c{i}", "Org", "a@example.net") for i in range(keep.size)]
    table = ContactTable.from_v4_arrays(contacts, starts[keep], lengths[keep],
                                        np.arange(keep.size, dtype=np.int32))
    probes = np.concatenate([starts[keep] + 1, rng.integers(0, 1 << 32, 20_000).astype(np.uint32)])
    big = table.lookup_v4(probes)
    small = np.concatenate([table.lookup_v4(probes[i:i + 1000]) for i in range(0, probes.size, 1000)])
    assert big.tolist() == small.tolist()
    assert (big >= 0).sum() > 5000


def test_default_route_and_host_route() -> None:
    table = ContactTable.build(
        [Contact("any", "Anyone", "a@example.net"), Contact("host", "One host", "h@example.net")],
        [("0.0.0.0/0", 0), ("192.0.2.1", 1)])
    assert ids(table, "192.0.2.1", "192.0.2.2", "8.8.8.8", "2001:db8::1") == ["host", "any", "any", None]


def test_bulk_v4_build_equals_text_build() -> None:
    contacts = [Contact("a", "A", "a@example.net"), Contact("b", "B", "b@example.net")]
    starts = np.array([0xC0000200, 0xC0000000, 0x0A000000], dtype=np.uint32)
    index = np.array([1, 0, 0], np.int32)
    table = ContactTable.from_v4_arrays(contacts, starts, np.array([24, 16, 8]), index)
    assert ids(table, "192.0.2.9", "192.0.9.9", "10.1.2.3", "11.0.0.1") == ["b", "a", "a", None]


CSV = """network,id,organisation,abuse_email,rid_url,format,tlp,send
192.0.2.0/24,example-isp,Example ISP,abuse@isp.example,https://rid.isp.example:4590/,rid,amber,true
2001:db8::/32,example-isp,Example ISP,abuse@isp.example,https://rid.isp.example:4590/,rid,amber,true
198.51.100.0/24,,Example Hosting,abuse@hosting.example,,json,red,yes
AS64501,example-cgn,Example Mobile,abuse@mobile.example,,,,
203.0.113.0/24,quiet,Quiet Org,,,,green,false
"""


def test_csv_table(tmp_path: Path) -> None:
    p = tmp_path / "contacts.csv"
    p.write_text(CSV)
    table = load_contacts(p)
    isp = table.lookup("2001:db8::1")
    assert isp == Contact("example-isp", "Example ISP", "abuse@isp.example", "https://rid.isp.example:4590/",
                          "rid", "amber", True)
    assert table.lookup("192.0.2.1") == isp
    assert table.lookup("198.51.100.7") == Contact(
        "example-hosting", "Example Hosting", "abuse@hosting.example", None, "json", "red", True)
    assert table.lookup("100.64.0.1", asn=64501).format == "xml"  # no rid_url: files/e-mail
    quiet = table.lookup("203.0.113.5")
    assert (quiet.id, quiet.send, quiet.abuse_email) == ("quiet", False, None)
    assert len(table.contacts) == 4


def test_toml_table(contacts: ContactTable) -> None:
    assert [c.id for c in contacts.contacts] == ["example-isp", "example-transit", "example-hosting",
                                                 "example-cgn"]
    assert contacts.contacts[1].format == "json"
    assert contacts.contacts[0].format == "rid"  # a rid_url makes RID the default


@pytest.mark.parametrize(("row", "message"), [
    ("10.0.0.1/24,x,X,a@example.net,,,,", "line 2: '10.0.0.1/24' has host bits set"),
    ("10.0.0.0/33,x,X,a@example.net,,,,", "line 2: '10.0.0.0/33': prefix length out of range"),
    ("10.0.0/8,x,X,a@example.net,,,,", "line 2: '10.0.0/8' is not an IP prefix"),
    ("10.0.0.0/8,x,X,not-an-email,,,,", "line 2: abuse_email 'not-an-email' is not an e-mail address"),
    ("10.0.0.0/8,x,X,a@example.net,http://rid.example/,,,", "must be an https:// URL"),
    ("10.0.0.0/8,x,X,a@example.net,,rid,,", "format rid needs a rid_url"),
    ("10.0.0.0/8,x,X,a@example.net,,,purple,", "tlp 'purple' is not one of"),
    ("10.0.0.0/8,x,X,a@example.net,,,,maybe", "send: expected true or false, got 'maybe'"),
    ("10.0.0.0/8,x,X,,,,,", "needs an abuse_email or a rid_url"),
    ("10.0.0.0/8,X Y,X,a@example.net,,,,", "id 'X Y' may only hold"),
    ("10.0.0.0/8,x,,a@example.net,,,,", "organisation is missing"),
])
def test_csv_errors_name_the_line(tmp_path: Path, row: str, message: str) -> None:
    p = tmp_path / "c.csv"
    p.write_text("network,id,organisation,abuse_email,rid_url,format,tlp,send\n" + row + "\n")
    with pytest.raises(ConfigError) as exc:
        load_contacts(p)
    assert message in str(exc.value)
    assert str(p) in str(exc.value)


def test_duplicates_and_conflicts(tmp_path: Path) -> None:
    p = tmp_path / "c.csv"
    head = "network,id,organisation,abuse_email\n"
    p.write_text(head + "10.0.0.0/8,a,A,a@example.net\n10.0.0.0/8,b,B,b@example.net\n")
    with pytest.raises(ConfigError, match=r"prefix 10\.0\.0\.0/8 is listed twice"):
        load_contacts(p)
    p.write_text(head + "10.0.0.0/8,a,A,a@example.net\n11.0.0.0/8,a,A,other@example.net\n")
    with pytest.raises(ConfigError, match="line 3: id 'a' is given again with different details"):
        load_contacts(p)
    p.write_text(head + "AS1,a,A,a@example.net\nAS1,b,B,b@example.net\n")
    with pytest.raises(ConfigError, match="AS1 is listed for two contacts"):
        load_contacts(p)
    p.write_text("net,organisation\n10.0.0.0/8,A\n")
    with pytest.raises(ConfigError, match="CSV header needs network and organisation"):
        load_contacts(p)
    p.write_text("network,organisation,colour\n10.0.0.0/8,A,red\n")
    with pytest.raises(ConfigError, match="unknown CSV column 'colour'"):
        load_contacts(p)


def test_toml_errors(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[[contact]]\norganisation = "A"\nabuse_email = "a@example.net"\n')
    with pytest.raises(ConfigError, match="contact 1: needs a list of prefixes and/or asns"):
        load_contacts(p)
    p.write_text('[[contact]]\norganisation = "A"\nabuse_email = "a@example.net"\nprefixes=["10.0.0.0/8"]\n'
                 'colour = "red"\n')
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        load_contacts(p)
    p.write_text("[[contact]\n")
    with pytest.raises(ConfigError, match=str(p)):
        load_contacts(p)
    with pytest.raises(ConfigError, match="cannot read"):
        load_contacts(tmp_path / "missing.csv")


def test_slug() -> None:
    assert slug("Example ISP, Inc.") == "example-isp-inc"
    assert slug("../../etc") == "etc"
    assert slug("!!!") == "recipient"


def test_shipped_examples_load_and_agree(repo_root: Path) -> None:
    toml = load_contacts(repo_root / "deploy/contacts.example.toml")
    csv = load_contacts(repo_root / "deploy/contacts.example.csv")
    assert toml.contacts == csv.contacts
    assert dict(toml.asns) == dict(csv.asns) == {64501: 3}
    for ip in ("192.0.2.1", "2001:db8::1", "198.51.100.9", "198.51.7.1", "203.0.113.5", "8.8.8.8"):
        assert toml.lookup(ip) == csv.lookup(ip)
    nested = [toml.lookup(ip).id for ip in ("198.51.100.9", "198.51.7.1")]
    assert nested == ["example-hosting", "example-transit"]
    assert toml.lookup("203.0.113.5").send is False


def test_asn_rows(tmp_path: Path) -> None:
    p = tmp_path / "c.csv"
    p.write_text("network,organisation,abuse_email\nas64500,A,a@example.net\nAS4200000000,B,b@example.net\n")
    table = load_contacts(p)
    assert dict(table.asns) == {64500: 0, 4200000000: 1}
    p.write_text("network,organisation,abuse_email\nAS4294967296,A,a@example.net\n")
    with pytest.raises(ConfigError, match="not a 32-bit AS number"):
        load_contacts(p)
    p.write_text("network,organisation,abuse_email\n64500,A,a@example.net\n")  # a bare number is no prefix
    with pytest.raises(ConfigError, match="'64500' is not an IP prefix"):
        load_contacts(p)
