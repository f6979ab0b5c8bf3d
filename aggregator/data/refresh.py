"""Refresh the IANA special-purpose registries shipped in this directory.

Usage: ``python -m aggregator.data.refresh [--dir DIR]``

Downloads IANA's own CSV form of the IPv4 and IPv6 special-purpose address
registries (the files are kept byte for byte as IANA publishes them, so a
refresh is a plain download), checks that :mod:`aggregator.bogons` can read
them, and records the retrieval date in SOURCES.json. Nothing is replaced if
a download or the check fails.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import urllib.request
from pathlib import Path

__all__ = ["main"]

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", type=Path, default=HERE, help="where the registry files live")
    args = parser.parse_args(argv)
    meta_path = args.dir / "SOURCES.json"
    meta = json.loads(meta_path.read_text())
    fetched: dict[str, bytes] = {}
    for name, url in meta["files"].items():
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                fetched[name] = resp.read()
        except OSError as exc:
            print(f"refresh: cannot fetch {url}: {exc}", file=sys.stderr)
            return 1
    from aggregator.bogons import parse_registry

    for name, data in fetched.items():
        try:
            rows = parse_registry(data.decode("utf-8"), name)
        except ValueError as exc:
            print(f"refresh: {name} is not readable: {exc}", file=sys.stderr)
            return 1
        print(f"{name}: {len(rows)} prefixes")
    for name, data in fetched.items():
        fd, tmp = tempfile.mkstemp(dir=args.dir, prefix=f".{name}.")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, args.dir / name)
    meta["compiled"] = dt.date.today().isoformat()
    meta["how"] = "Downloaded from iana.org by python -m aggregator.data.refresh"
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
