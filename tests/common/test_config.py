"""Configuration assembly and ``darknet-iodef check``: every problem named, exit 2."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from darknet_iodef import cli
from darknet_iodef.bus import BusSettings
from darknet_iodef.config import SECTIONS, check_config, default_toml, load_config, section_class
from darknet_iodef.errors import ConfigError
from darknet_iodef.metrics import MetricsSettings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_every_registered_section_is_a_settings_dataclass() -> None:
    for name in SECTIONS:
        cls = section_class(name)
        assert load_config(None, environ={}).sections[name] == cls()


def test_priority_defaults_file_environment_flags(tmp_path: Path) -> None:
    path = write(tmp_path, '[bus]\nkafka = "file:1"\nflows_partitions = 3\nevents_partitions = 5\n')
    env = {"DARKNET_IODEF_BUS_KAFKA": "env:2", "DARKNET_IODEF_BUS_FLOWS_PARTITIONS": "6"}
    config = load_config(path, {"bus": {"kafka": "flag:3", "flows_partitions": None}}, env)
    bus = config.section("bus", BusSettings)
    assert (bus.kafka, bus.flows_partitions, bus.events_partitions) == ("flag:3", 6, 5)
    assert bus.reporter_group == "darknet-reporter"
    assert config.section("metrics", MetricsSettings) == MetricsSettings()
    with pytest.raises(TypeError):
        config.section("bus", MetricsSettings)


def test_load_config_stops_at_the_first_problem_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "[bus]\nflows_partitions = 0\n"), environ={})
    assert str(err.value) == "setting [bus] flows_partitions: must be at least 1, got 0"
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "[buss]\nkafka = 'h:1'\n"), environ={})
    assert err.value.setting == "[buss]"
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "absent.toml", environ={})
    assert err.value.setting == "--config"


BAD = """\
[bus]
kafka = "localhost"
flows_partitions = 0
colour = "blue"

[metrics]
listen = "everywhere"

[nosuch]
x = 1
"""


def test_check_lists_every_problem_one_line_each(tmp_path: Path) -> None:
    env = {"DARKNET_IODEF_BUS_KAFAK": "h:1", "DARKNET_IODEF_SHARED": "/elsewhere"}
    assert check_config(write(tmp_path, BAD), env) == [
        "setting [nosuch]: unknown section (known: sensor, live, aggregator, reporter, delivery, receiver, "
        "bus, metrics, pipeline)",
        "setting DARKNET_IODEF_BUS_KAFAK: no such setting in [bus]",
        "setting [bus] kafka: 'localhost' is not HOST:PORT",
        "setting [bus] flows_partitions: must be at least 1, got 0",
        "setting [bus] colour: unknown setting",
        "setting [metrics] listen: 'everywhere' is not HOST:PORT",
    ]


def test_check_reports_a_cross_field_problem_and_bad_environment_values(tmp_path: Path) -> None:
    path = write(tmp_path, "[bus]\nsession_timeout_ms = 2000\n")
    assert check_config(path, {"DARKNET_IODEF_BUS_MAX_POLL_RECORDS": "many"}) == [
        "setting [bus] heartbeat_interval_ms: must be at most a third of session_timeout_ms",
        "setting DARKNET_IODEF_BUS_MAX_POLL_RECORDS: expected an integer, got 'many'",
    ]
    path = write(tmp_path, "[bus]\nsession_timeout_ms = 2000\nheartbeat_interval_ms = 500\n")
    assert check_config(path, {}) == []
    path = write(tmp_path, "[bus]\nsession_timeout_ms = 3000\nheartbeat_interval_ms = 1500\n")
    assert check_config(path, {}) == [
        "setting [bus] heartbeat_interval_ms: must be at most a third of session_timeout_ms"
    ]
    assert check_config(write(tmp_path, "[bus\n"), {})[0].startswith("setting --config: ")


def test_check_command_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in __import__("os").environ if v.startswith("DARKNET_IODEF_")]:
        monkeypatch.delenv(var)
    bad = write(tmp_path, BAD)
    assert cli.main(["check", str(bad)]) == 2
    out = capsys.readouterr()
    assert out.out.splitlines()[1] == f"{bad}: setting [bus] kafka: 'localhost' is not HOST:PORT"
    assert len(out.out.splitlines()) == 5
    assert out.err == f"{bad}: 5 problems\n"
    good = tmp_path / "good.toml"
    good.write_text('[bus]\nkafka = "127.0.0.1:9092,127.0.0.1:9093"\n[metrics]\nlisten = "127.0.0.1:9464"\n')
    assert cli.main(["check", str(good)]) == 0
    assert capsys.readouterr().out.startswith(f"{good}: ok (")
    assert cli.main(["check"]) == 2


def test_print_defaults_is_the_whole_configuration_at_its_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["check", "--print-defaults"]) == 0
    text = capsys.readouterr().out
    assert text == default_toml()
    assert tomllib.loads(text) == {name: {} for name in SECTIONS}  # everything commented out
    # uncommenting every option gives a valid file that sets every option to its default
    uncommented = "\n".join(line[1:] if re.match(r"^#[a-z_0-9]+ = ", line) else line
                            for line in text.splitlines())
    doc = tomllib.loads(uncommented)
    for name in SECTIONS:
        cls = section_class(name)
        assert set(doc[name]) == {f for f in cls.__dataclass_fields__}
    path = write(tmp_path, uncommented)
    assert check_config(path, {}) == []
    assert load_config(path, environ={}).sections == load_config(None, environ={}).sections


def test_repo_example_config_is_the_generated_one(repo_root: Path) -> None:
    example = repo_root / "deploy" / "darknet-iodef.example.toml"
    assert example.read_text() == default_toml(), "regenerate: darknet-iodef check --print-defaults > " + str(
        example)
