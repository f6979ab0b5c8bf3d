"""Allow-list of known research scanners (prefix, name), reloaded without restart.

Theory of operation (DOMAIN.md section 6): receivers ask for research
scanners (Censys, Shadowserver, ...) to be marked as such, so their events
carry ``extra.known_scanner`` and the reporter can keep them out of abuse
reports by default. The list is a CSV file of ``prefix,name`` rows ('#'
comments, an optional header). :meth:`KnownScanners.maybe_reload` checks the
file's modification time and size (the aggregator calls it at each interval
end, and a SIGHUP handler may call :meth:`reload`); a file that fails to
parse keeps the previous list and logs one line, so a bad edit never stops
detection. Parsing is a pure function of the text (:func:`parse_allow_list`).
"""

from __future__ import annotations

import csv
import io
import ipaddress
import logging
import os
from pathlib import Path

import numpy as np
import numpy.typing as npt

from aggregator.prefixset import Net, PrefixSet
from darknet_iodef.errors import ConfigError

__all__ = ["KnownScanners", "parse_allow_list"]

log = logging.getLogger(__name__)


def parse_allow_list(text: str, source: str) -> list[tuple[Net, str]]:
    """``prefix,name`` rows -> list; ValueError names the file and line."""
    out: list[tuple[Net, str]] = []
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    for number, row in enumerate(csv.reader(io.StringIO("\n".join(lines))), start=1):
        if not row:
            continue
        if number == 1 and row[0].strip().lower() == "prefix":
            continue
        if len(row) < 2 or not row[1].strip():
            raise ValueError(f"{source}: row {number}: expected 'prefix,name', got {','.join(row)!r}")
        try:
            net = ipaddress.ip_network(row[0].strip(), strict=False)
        except ValueError as exc:
            raise ValueError(f"{source}: row {number}: {exc}") from None
        out.append((net, row[1].strip()))
    return out


class KnownScanners:
    """Bulk lookup of scanner names by source address."""

    __slots__ = ("_names", "_path", "_set", "_stamp", "reloads")

    def __init__(self, path: str | Path | None = None, entries: list[tuple[Net, str]] | None = None) -> None:
        self._path = Path(path) if path else None
        self._stamp: tuple[int, int] | None = None
        self._names: list[str] = []
        self._set = PrefixSet([])
        self.reloads = 0
        if entries is not None:
            self._install(entries)
        if self._path is not None:
            try:
                self.reload(strict=True)
            except ValueError as exc:
                raise ConfigError("allow_list", str(exc)) from None

    def _install(self, entries: list[tuple[Net, str]]) -> None:
        self._names = [name for _, name in entries]
        self._set = PrefixSet([(net, i) for i, (net, _) in enumerate(entries)])

    def __len__(self) -> int:
        return len(self._names)

    def reload(self, strict: bool = False) -> bool:
        """Re-read the file; True if the list changed. A bad file keeps the old list."""
        if self._path is None:
            return False
        try:
            st = os.stat(self._path)
            text = self._path.read_text("utf-8")
            entries = parse_allow_list(text, str(self._path))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            if strict:
                raise ValueError(f"{self._path}: {exc}") from None
            log.warning("Keeping the previous allow-list: %s", exc)
            return False
        self._stamp = (st.st_mtime_ns, st.st_size)
        self._install(entries)
        self.reloads += 1
        log.info("Loaded %d known-scanner prefixes from %s", len(entries), self._path)
        return True

    def maybe_reload(self) -> bool:
        """Reload if the file's mtime or size changed since the last load."""
        if self._path is None:
            return False
        try:
            st = os.stat(self._path)
        except OSError:
            return False
        if (st.st_mtime_ns, st.st_size) == self._stamp:
            return False
        return self.reload()

    def names(self, addrs: npt.NDArray[np.void]) -> list[str | None]:
        """Scanner name for each ``V16`` address (None where not listed)."""
        if not self._names or addrs.shape[0] == 0:
            return [None] * addrs.shape[0]
        lab = self._set.lookup(addrs)
        return [self._names[i] if i >= 0 else None for i in lab.tolist()]
