"""``darknet-iodef run --interface``: live capture in a test network namespace, then the whole pipeline.

The sample capture is replayed (tcpreplay, top speed) into a veth pair whose
other end the command captures on; SIGTERM ends the capture, and what was
captured is aggregated and reported. Packet times are the replay's, so the
detections are not the file run's (a whole capture in one second); the test
checks that every frame went through and that documents came out.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from darknet_iodef.addresses import DarkPrefixes
from sensor.capture import iter_packet_batches
from tests.pipeline.helpers import SAMPLE_DARKNET
from tests.sensor.live_netns import VethPair, veth_pair


def dark_sources(capture: Path) -> int:
    """Distinct source addresses of the capture's packets to the darknet."""
    dark = DarkPrefixes.parse(SAMPLE_DARKNET)
    seen: set[bytes] = set()
    for pk in iter_packet_batches(capture):
        v4 = (pk["ip_version"] == 4) & dark.contains_v4(pk["dst_ip4"])
        v6 = (pk["ip_version"] == 6) & dark.contains_addr16(pk["dst_ip6"])
        seen.update(int(a).to_bytes(4, "big") for a in pk["src_ip4"][v4])
        seen.update(a.tobytes() for a in pk["src_ip6"][v6])
    return len(seen)


@contextmanager
def live_run(
    veth: VethPair, repo_root: Path, *args: str
) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """``darknet-iodef run --interface`` in the capture namespace, yielded once the capture is open.

    The stderr lines read so far are yielded too (for failure messages and
    for tests that wait for a later line); the process is killed on the way
    out if the test did not end it.
    """
    cmd = [
        "ip", "netns", "exec", veth.cap_ns, sys.executable, "-m", "darknet_iodef.cli",
        "run", "--interface", veth.cap_if, "--darknet", SAMPLE_DARKNET, "--name", "live", *args,
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        wait_for_line(proc, lines, "Capturing on")
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_for_line(proc: subprocess.Popen[str], lines: list[str], text: str) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append(line)
        if text in line:
            return
    raise AssertionError(f"the process ended (rc {proc.wait()}) before logging {text!r}:\n" + "".join(lines))


def replay_sample(veth: VethPair, repo_root: Path) -> None:
    subprocess.run(
        veth.send_cmd("tcpreplay", "-q", "--topspeed", "-i", veth.send_if,
                      str(repo_root / "pcaps/sample-darknet.pcap")),
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


def stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    return proc.communicate(timeout=120)


def test_run_captures_live_until_sigterm_then_reports(tmp_path: Path, repo_root: Path) -> None:
    out = tmp_path / "out"
    with veth_pair() as veth, live_run(veth, repo_root, "--out", str(out)) as (proc, lines):
        replay_sample(veth, repo_root)
        stdout, rest = stop(proc)
    assert proc.returncode == 0, "".join(lines) + rest
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sensor"]["interface"] == veth.cap_if
    assert summary["sensor"]["packets"] == 40_000
    assert summary["sensor"]["dark_packets"] == 39_950
    # a sensor counts sources per interval; the replay takes about a second
    distinct = dark_sources(repo_root / "pcaps/sample-darknet.pcap")
    if summary["sensor"]["intervals"] == 1:
        assert summary["sensor"]["sources"] == distinct
    else:  # the replay crossed a minute boundary: some sources are counted in both
        assert distinct <= summary["sensor"]["sources"] <= 2 * distinct
    assert summary["reports"]["documents"] > 0 and summary["events"]["scans"] > 0
    rows = (out / "incidents/reports.jsonl").read_text().splitlines()
    assert len(rows) == summary["reports"]["documents"]
    assert stdout.splitlines()[0].startswith("packets   40,000 read, 39,950 to the darknet")


NOBODY = """\
[[contact]]
id = "documentation-net"
organisation = "Documentation network"
abuse_email = "abuse@doc.example"
prefixes = ["192.0.2.0/24"]
"""

EVERYONE = """\
[[contact]]
id = "everyone"
organisation = "Catch-all operator"
abuse_email = "abuse@everyone.example"
format = "xml"
prefixes = ["0.0.0.0/0", "::/0"]
"""


def test_sighup_reloads_the_contacts_of_a_live_run(tmp_path: Path, repo_root: Path) -> None:
    """The table is swapped while capturing; SIGHUP makes the reports go to the new recipient."""
    out = tmp_path / "out"
    contacts = tmp_path / "contacts.toml"
    contacts.write_text(NOBODY)
    args = ("--contacts", str(contacts), "--out", str(out))
    with veth_pair() as veth, live_run(veth, repo_root, *args) as (proc, lines):
        contacts.write_text(EVERYONE)
        proc.send_signal(signal.SIGHUP)
        wait_for_line(proc, lines, "Reloaded the contacts table")  # done in the capture loop
        assert "1 organisations, 2 prefixes" in lines[-1]
        replay_sample(veth, repo_root)
        _, rest = stop(proc)
    assert proc.returncode == 0, "".join(lines) + rest
    rows = (out / "incidents/reports.jsonl").read_text().splitlines()
    recipients = {json.loads(row)["recipient"] for row in rows}
    assert recipients == {"everyone"}
    assert list((out / "incidents/everyone").glob("*.xml"))
