"""One configuration for every component: a TOML file, environment variables and flags.

Theory of operation (STYLE.md habit 8). Each component declares its options
once, as a settings dataclass in its own package (:mod:`darknet_iodef.settings`);
this module only knows *where* those declarations are (:data:`SECTIONS`, a
TOML table per component) and assembles them:

* :func:`load_config` reads one TOML file and builds every section in rising
  priority: defaults, the file, ``DARKNET_IODEF_<SECTION>_<NAME>`` environment
  variables, flags (``overrides``). The first bad value raises
  :class:`~darknet_iodef.errors.ConfigError` naming the setting.
* :func:`check_config` does the same without stopping at the first problem:
  it returns one line per problem (unknown section, unknown setting, bad
  value, inconsistent values, misspelt environment variable), for
  ``darknet-iodef check CONFIG``.
* :func:`default_toml` prints every option with its default and doc as a
  commented TOML file (``deploy/darknet-iodef.example.toml`` is its output).

Sections are named by ``"module:Class"`` and imported on first use, so
loading the configuration of one component does not import the others.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from darknet_iodef.errors import ConfigError
from darknet_iodef.settings import ENV_PREFIX, describe, load, load_toml

__all__ = [
    "SECTIONS",
    "Config",
    "check_config",
    "default_toml",
    "load_config",
    "register_section",
    "section_class",
]

T = TypeVar("T")

#: TOML table -> the settings dataclass that declares its options, in file order
SECTIONS: dict[str, str] = {
    "sensor": "sensor.settings:SensorSettings",
    "live": "sensor.live.settings:LiveSettings",
    "aggregator": "aggregator.settings:AggregatorSettings",
    "reporter": "reporter.settings:ReporterSettings",
    "delivery": "reporter.delivery_settings:DeliverySettings",
    "receiver": "reporter.delivery_settings:ReceiverSettings",
    "bus": "darknet_iodef.bus.settings:BusSettings",
    "metrics": "darknet_iodef.metrics:MetricsSettings",
    "pipeline": "darknet_iodef.pipeline.settings:PipelineSettings",
}

_classes: dict[str, type] = {}


def register_section(name: str, cls: type) -> None:
    """Add (or replace) a section, e.g. for a plugin; ``cls`` is a settings dataclass."""
    if not dataclasses.is_dataclass(cls) or not name.isidentifier() or "_" in name:
        raise TypeError(f"section {name!r}: needs a settings dataclass and a name without '_'")
    SECTIONS[name] = f"{cls.__module__}:{cls.__qualname__}"
    _classes[name] = cls


def section_class(name: str) -> type:
    """The settings dataclass of section ``name``."""
    if name not in _classes:
        try:
            module, _, attr = SECTIONS[name].partition(":")
        except KeyError:
            raise ConfigError(f"[{name}]", f"unknown section (known: {', '.join(SECTIONS)})") from None
        _classes[name] = getattr(importlib.import_module(module), attr)
    return _classes[name]


@dataclass(frozen=True, slots=True)
class Config:
    """Every section's settings, validated; ``config.section("bus", BusSettings)``."""

    path: Path | None
    sections: Mapping[str, Any]
    #: the raw TOML document, for components that read tables of their own (contacts...)
    table: Mapping[str, Any]

    def section(self, name: str, cls: type[T]) -> T:
        value = self.sections[name]
        if not isinstance(value, cls):
            raise TypeError(f"section [{name}] is {type(value).__name__}, not {cls.__name__}")
        return value

    def __getitem__(self, name: str) -> Any:
        return self.sections[name]


def _read(path: str | Path | None) -> dict[str, Any]:
    return {} if path is None else load_toml(path)


def load_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    environ: Mapping[str, str] | None = None,
    sections: Iterable[str] | None = None,
) -> Config:
    """Build the settings of ``sections`` (default: all) from file, environment and flags.

    ``overrides`` maps a section to its flag values (``{"bus": {"kafka": "h:9092"}}``);
    None values are ignored, as for unset flags.
    """
    doc = _read(path)
    environ = os.environ if environ is None else environ
    for name, value in doc.items():
        if name not in SECTIONS:
            raise ConfigError(f"[{name}]", f"unknown section (known: {', '.join(SECTIONS)})")
        if not isinstance(value, dict):
            raise ConfigError(name, "must be a [table] of settings")
    built: dict[str, Any] = {
        name: load(section_class(name), name, doc.get(name), environ, (overrides or {}).get(name))
        for name in (sections if sections is not None else SECTIONS)
    }
    return Config(Path(path) if path is not None else None, built, doc)


def check_config(path: str | Path | None, environ: Mapping[str, str] | None = None) -> list[str]:
    """Every problem of a configuration (file plus environment), one line each; [] when valid."""
    environ = os.environ if environ is None else environ
    try:
        doc = _read(path)
    except ConfigError as exc:
        return [str(exc)]
    problems: list[str] = []
    for name, value in doc.items():
        if name not in SECTIONS:
            problems.append(str(ConfigError(f"[{name}]", f"unknown section (known: {', '.join(SECTIONS)})")))
        elif not isinstance(value, dict):
            problems.append(str(ConfigError(name, "must be a [table] of settings")))
    problems.extend(_check_environ(environ))
    for name in SECTIONS:
        table = doc.get(name)
        if not isinstance(table, dict | None):
            continue
        cls = section_class(name)
        try:
            load(cls, name, table, environ)
            continue
        except ConfigError as exc:
            whole = str(exc)
        # find every bad value on its own, then fall back on the combined (cross-field) error
        found = []
        for key, value in (table or {}).items():
            try:
                load(cls, name, {key: value}, {})
            except ConfigError as exc:
                found.append(str(exc))
        for env, value in environ.items():
            if env.startswith(f"{ENV_PREFIX}_{name.upper()}_"):
                try:
                    load(cls, name, {}, {env: value})
                except ConfigError as exc:
                    found.append(str(exc))
        problems.extend(found or [whole])
    return problems


def _check_environ(environ: Mapping[str, str]) -> list[str]:
    """``DARKNET_IODEF_<SECTION>_<NAME>`` variables that name no setting (a typo is silent otherwise)."""
    problems = []
    prefix = f"{ENV_PREFIX}_"
    for env in sorted(environ):
        if not env.startswith(prefix):
            continue
        section, _, rest = env[len(prefix):].partition("_")
        if section.lower() not in SECTIONS:
            continue  # not ours to judge (e.g. DARKNET_IODEF_SHARED for the test suite)
        names = {f.name.upper() for f in dataclasses.fields(section_class(section.lower()))}
        if rest not in names:
            problems.append(str(ConfigError(env, f"no such setting in [{section.lower()}]")))
    return problems


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if value is None:
        return '""'
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def default_toml() -> str:
    """A commented TOML file with every option of every section at its default."""
    lines = [
        "# darknet-iodef configuration: every option, at its default, with its doc.",
        "# Generated by `darknet-iodef check --print-defaults`; uncomment what you change.",
        "# Each option can also be set by the environment variable named beside it, which",
        "# wins over this file; command-line flags win over both.",
        "# Validate a configuration without running anything: darknet-iodef check FILE",
    ]
    for name in SECTIONS:
        cls = section_class(name)
        lines += ["", f"[{name}]"]
        if cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "("):
            lines.append(f"# {cls.__doc__.strip().splitlines()[0]}")
        rows = describe(cls, name)
        for field, (fname, _default, env, doc) in zip(dataclasses.fields(cls), rows, strict=True):
            default = field.default if field.default is not dataclasses.MISSING else None
            lines.extend(textwrap.wrap(doc, 100, initial_indent="# ", subsequent_indent="# "))
            lines.append(f"#{fname} = {_toml_value(default)}    # env {env}")
    return "\n".join(lines) + "\n"
