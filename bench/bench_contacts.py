"""Longest-prefix match over a million-prefix constituency table.

Runs, on the same table and the same addresses, in one process:

* ``interval``: :meth:`reporter.contacts.ContactTable.lookup_addr16` -- the
  prefixes flattened into disjoint ranges, one ``searchsorted`` per batch;
* ``per-length``: the other numpy layout -- a sorted array per prefix length,
  addresses masked and searched once per length, longest first (what IPv6 uses);
* ``dict``: the classic scalar lookup -- for each address, mask with every
  prefix length present, longest first, and probe a Python dict -- run on a
  sample and scaled (it would take minutes on the full set);

and prints both rates and their ratio, plus the time to load the table from a
CSV file and to build it from arrays. Usage::

    python bench/bench_contacts.py [--prefixes 1000000] [--v6 100000] [--lookups 1000000]

No assertion: speed is measured, not asserted (see STYLE.md).
"""

from __future__ import annotations

import argparse
import ipaddress
import tempfile
import time
from pathlib import Path

import numpy as np

from darknet_iodef.addresses import ADDR_DTYPE, addr16_from_v4
from reporter.contacts import Contact, ContactTable, load_contacts

#: share of each IPv4 prefix length, roughly the shape of a full BGP table (most are /24)
V4_LENGTHS = {8: 0.0001, 12: 0.001, 16: 0.013, 18: 0.01, 19: 0.02, 20: 0.04, 21: 0.04, 22: 0.11,
              23: 0.1, 24: 0.6659, 32: 0.0}
V6_LENGTHS = {29: 0.05, 32: 0.2, 36: 0.05, 40: 0.1, 44: 0.1, 48: 0.5}


def make_v4(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array(list(V4_LENGTHS))
    share = np.array(list(V4_LENGTHS.values()))
    plen = rng.choice(lengths, size=n, p=share / share.sum())
    starts = rng.integers(0x01000000, 0xDFFFFFFF, size=n, dtype=np.uint64).astype(np.uint32)
    masks = ((0xFFFFFFFF << (32 - plen.astype(np.uint64))) & 0xFFFFFFFF).astype(np.uint32)
    starts &= masks
    key = (starts.astype(np.uint64) << np.uint64(8)) | plen.astype(np.uint64)
    _, first = np.unique(key, return_index=True)
    return starts[first], plen[first]


def make_v6(rng: np.random.Generator, n: int) -> list[str]:
    lengths = list(V6_LENGTHS)
    share = np.array(list(V6_LENGTHS.values()))
    out = set()
    for plen, hi in zip(rng.choice(lengths, size=n, p=share / share.sum()),
                        rng.integers(0, 1 << 40, size=n), strict=True):
        base = (0x2000 << 112) | (int(hi) << 72)
        out.add(str(ipaddress.ip_network(f"{ipaddress.IPv6Address(base)}/{plen}", strict=False)))
    return sorted(out)


def per_length_lookup(table: ContactTable, v4: np.ndarray) -> np.ndarray:
    out = np.full(v4.shape[0], -1, dtype=np.int32)
    todo = np.arange(v4.shape[0])
    for level in table.v4:  # longest first: the first hit is the longest match
        key = v4[todo] & np.uint32((0xFFFFFFFF << (32 - level.length)) & 0xFFFFFFFF)
        pos = np.minimum(np.searchsorted(level.keys, key), level.keys.size - 1)
        hit = level.keys[pos] == key
        out[todo[hit]] = level.index[pos[hit]]
        todo = todo[~hit]
    return out


def dict_lookup(tables: dict[int, dict[int, int]], lengths: list[int], addrs: list[int]) -> list[int]:
    out = []
    for a in addrs:
        hit = -1
        for plen in lengths:
            idx = tables[plen].get(a & ((0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF))
            if idx is not None:
                hit = idx
                break
        out.append(hit)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefixes", type=int, default=1_000_000, help="IPv4 prefixes in the table")
    ap.add_argument("--v6", type=int, default=100_000, help="IPv6 prefixes in the table")
    ap.add_argument("--lookups", type=int, default=1_000_000, help="addresses to look up")
    ap.add_argument("--sample", type=int, default=100_000, help="addresses for the scalar dict lookup")
    ap.add_argument("--no-csv", action="store_true", help="skip the CSV load measurement")
    args = ap.parse_args()
    rng = np.random.default_rng(42)

    starts, plen = make_v4(rng, args.prefixes)
    n = len(starts)
    contacts = [Contact(f"org{i}", f"Org {i}", f"abuse{i}@example.net") for i in range(n)]
    index = np.arange(n, dtype=np.int32)
    t = time.perf_counter()
    table = ContactTable.from_v4_arrays(contacts, starts, plen, index)
    build_s = time.perf_counter() - t
    print(f"table: {n} IPv4 prefixes, {len(table.v4)} distinct lengths, "
          f"{table.v4_bounds.size} disjoint ranges; build from arrays {build_s:.2f} s")

    # half the addresses inside random table prefixes, half anywhere
    pick = rng.integers(0, n, size=args.lookups // 2)
    host = rng.integers(0, 256, size=pick.size).astype(np.uint32)
    inside = starts[pick] | (host & ~((0xFFFFFFFF << (32 - plen[pick].astype(np.uint64))) & 0xFFFFFFFF)
                             .astype(np.uint32))
    anywhere = rng.integers(0, 1 << 32, size=args.lookups - pick.size, dtype=np.uint64).astype(np.uint32)
    v4 = np.concatenate([inside, anywhere])
    rng.shuffle(v4)
    addrs = addr16_from_v4(v4)

    t = time.perf_counter()
    got = table.lookup_addr16(addrs)
    np_s = time.perf_counter() - t
    np_rate = len(v4) / np_s
    print(f"interval  : {len(v4)} lookups in {np_s:.3f} s = {np_rate / 1e6:.2f} M lookups/s "
          f"({(got >= 0).mean() * 100:.1f}% matched)")
    t = time.perf_counter()
    alt = per_length_lookup(table, v4)
    pl_s = time.perf_counter() - t
    pl_rate = len(v4) / pl_s
    print(f"per-length: {len(v4)} lookups in {pl_s:.3f} s = {pl_rate / 1e6:.2f} M lookups/s "
          f"(results identical: {bool((alt == got).all())})")

    tables: dict[int, dict[int, int]] = {}
    for s, p, i in zip(starts.tolist(), plen.tolist(), index.tolist(), strict=True):
        tables.setdefault(int(p), {})[int(s)] = i
    lengths = sorted(tables, reverse=True)
    sample = v4[: args.sample].tolist()
    t = time.perf_counter()
    want = dict_lookup(tables, lengths, sample)
    dict_s = time.perf_counter() - t
    dict_rate = len(sample) / dict_s
    same = want == got[: args.sample].tolist()
    print(f"dict      : {len(sample)} lookups in {dict_s:.3f} s = {dict_rate / 1e6:.2f} M lookups/s "
          f"(results identical: {same})")
    print(f"ratios    : interval = {np_rate / pl_rate:.1f}x per-length = {np_rate / dict_rate:.1f}x dict")

    if args.v6:
        v6 = make_v6(rng, args.v6)
        t6 = ContactTable.build(contacts[: len(v6)], [(p, i) for i, p in enumerate(v6)])
        probes = np.frombuffer(b"".join(
            ipaddress.ip_network(v6[i]).network_address.packed for i in rng.integers(0, len(v6), 200_000)
        ), dtype=ADDR_DTYPE)
        t = time.perf_counter()
        hit = t6.lookup_addr16(probes)
        s6 = time.perf_counter() - t
        print(f"IPv6 LPM  : {len(v6)} prefixes, {len(probes)} lookups in {s6:.3f} s = "
              f"{len(probes) / s6 / 1e6:.2f} M lookups/s ({(hit >= 0).mean() * 100:.0f}% matched)")

    if not args.no_csv:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "contacts.csv"
            with open(path, "w") as fh:
                fh.write("network,id,organisation,abuse_email\n")
                # ~80,000 organisations over the prefixes, about as many as there are ASes in BGP
                for i, (s, p) in enumerate(zip(starts.tolist(), plen.tolist(), strict=True)):
                    o = i % 80_000
                    fh.write(f"{ipaddress.IPv4Address(s)}/{p},org{o},Org {o},abuse{o}@example.net\n")
            t = time.perf_counter()
            loaded = load_contacts(path)
            print(f"CSV load  : {loaded.prefix_count} rows, {len(loaded.contacts)} organisations "
                  f"in {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
