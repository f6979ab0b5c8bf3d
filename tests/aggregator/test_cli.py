"""The aggregate subcommand: flow files in, events out; bad files; allow-list reload."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from aggregator.known_scanners import KnownScanners, parse_allow_list
from darknet_iodef.cli import main
from darknet_iodef.events import decode_event
from darknet_iodef.flowtuple import write_batch
from tests.aggregator.flowmaker import SEC, T0, batch
from tests.aggregator.test_scan import horizontal

DARK = "198.18.0.0/16"


def write_flows(path: Path, *batches) -> Path:
    with open(path, "wb") as fh:
        for b in batches:
            write_batch(fh, b)
    return path


def events_of(path: Path) -> list[dict]:
    return [decode_event(line) for line in path.read_bytes().splitlines()]


def test_aggregate_command_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flows = write_flows(tmp_path / "a.flows", batch(horizontal("45.1.1.1", 12)))
    allow = tmp_path / "allow.csv"
    allow.write_text("prefix,name\n45.1.0.0/16,example-research\n")
    out = tmp_path / "events.jsonl"
    rc = main(
        [
            "aggregate",
            "--in",
            str(flows),
            "--darknet",
            DARK,
            "--out",
            str(out),
            "--allow-list",
            str(allow),
            "--feed-name",
            "test-telescope",
            "--stats",
        ]
    )
    assert rc == 0
    (ev,) = events_of(out)
    assert (ev["source.ip"], ev["feed.name"], ev["extra.known_scanner"]) == (
        "45.1.1.1",
        "test-telescope",
        "example-research",
    )
    stats = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert (stats["flows_total"], stats["events_total"], stats["bad_files_total"]) == (12, 1, 0)


def test_corrupt_flow_file_is_one_line_and_the_rest_continues(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_flows(tmp_path / "good.flows", batch(horizontal("45.1.1.1", 12)))
    bad = tmp_path / "bad.flows"
    bad.write_bytes(good.read_bytes()[:-7])
    out = tmp_path / "e.jsonl"
    rc = main(["aggregate", "--in", str(bad), str(good), "--darknet", DARK, "--out", str(out)])
    assert rc == 1
    err = capsys.readouterr().err
    assert f"darknet-iodef: {bad}: offset 0: truncated flow batch" in err
    assert "Traceback" not in err
    (ev,) = events_of(out)  # the good file is still read (the damaged one's batch is lost)
    assert ev["extra.packets"] == 12


def test_bad_setting_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flows = write_flows(tmp_path / "a.flows", batch([]))
    rc = main(
        [
            "aggregate",
            "--in",
            str(flows),
            "--darknet",
            DARK,
            "--out",
            str(tmp_path / "o"),
            "--set",
            "scan_min_ports=0",
        ]
    )
    assert rc == 2
    assert "scan_min_ports" in capsys.readouterr().err
    assert main(["aggregate", "--in", str(flows), "--darknet", "300.1.0.0/16", "--out", "-"]) == 2


def test_checkpoint_across_two_runs(tmp_path: Path) -> None:
    ck = tmp_path / "state.npz"
    out = tmp_path / "e.jsonl"
    f1 = write_flows(tmp_path / "1.flows", batch(horizontal("45.1.1.1", 12)))
    f2 = write_flows(tmp_path / "2.flows", batch(horizontal("45.1.1.1", 30), start=T0 + 700 * SEC))
    base = ["aggregate", "--darknet", DARK, "--out", str(out), "--checkpoint", str(ck)]
    assert main([*base, "--in", str(f1)]) == 0
    assert main([*base, "--in", str(f1), str(f2)]) == 0  # f1 again: skipped
    evs = events_of(out)
    assert [(e["extra.revision"], e["extra.packets"]) for e in evs] == [(1, 12), (2, 42)]
    assert len({e["extra.event_id"] for e in evs}) == 1


def test_allow_list_parsing_and_reload(tmp_path: Path) -> None:
    assert parse_allow_list("# c\nprefix,name\n192.0.2.0/24,example-scanner\n2001:db8::/32,v6\n", "x") == [
        (__import__("ipaddress").ip_network("192.0.2.0/24"), "example-scanner"),
        (__import__("ipaddress").ip_network("2001:db8::/32"), "v6"),
    ]
    with pytest.raises(ValueError, match="row 1"):
        parse_allow_list("not-a-prefix,name\n", "x")
    path = tmp_path / "allow.csv"
    path.write_text("45.1.0.0/16,one\n")
    known = KnownScanners(path)
    import numpy as np

    from darknet_iodef.addresses import parse_addr16

    addr = np.frombuffer(parse_addr16("45.1.2.3") + parse_addr16("8.8.8.8"), dtype="V16")
    assert known.names(addr) == ["one", None]
    assert known.maybe_reload() is False
    path.write_text("45.1.2.0/24,two\n8.8.8.0/24,three\n")
    os.utime(path, ns=(1, 1))
    assert known.maybe_reload() is True
    assert known.names(addr) == ["two", "three"]
    path.write_text("garbage\n")
    os.utime(path, ns=(2, 2))
    assert known.maybe_reload() is False  # a bad edit keeps the previous list
    assert known.names(addr) == ["two", "three"]


def test_example_allow_list_parses(repo_root: Path) -> None:
    text = (repo_root / "aggregator/data/known_scanners.example.csv").read_text()
    names = [name for _, name in parse_allow_list(text, "example")]
    assert names == ["example-scanner", "example-research-project", "example-scanner-v6"]
