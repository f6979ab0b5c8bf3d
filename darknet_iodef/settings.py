"""Settings: each option declared once, with type, default, environment variable and doc.

Theory of operation (STYLE.md habit 8, after faust): a component declares its
options as a frozen dataclass whose fields are made with :func:`setting`. The
field's annotation is its type, its default the default, ``doc`` the one-line
help. :func:`load` builds an instance from, in rising priority, the defaults,
a TOML table (``[aggregator]`` ...), environment variables
``DARKNET_IODEF_<SECTION>_<NAME>``, and explicit overrides (command-line
flags). Every value is coerced and validated at start-up; a bad one raises
:class:`~darknet_iodef.errors.ConfigError` naming the setting, so the program
exits before doing any work.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from darknet_iodef.errors import ConfigError

__all__ = ["describe", "env_name", "load", "load_toml", "setting"]

T = TypeVar("T")
ENV_PREFIX = "DARKNET_IODEF"


def setting(default: Any, doc: str) -> Any:
    """Declare one option: ``window_s: float = setting(60.0, "interval length")``."""
    if isinstance(default, list | dict | set):
        raise TypeError("mutable defaults: use a tuple")
    return dataclasses.field(default=default, metadata={"doc": doc})


def env_name(section: str, name: str) -> str:
    return f"{ENV_PREFIX}_{section}_{name}".upper().replace("-", "_").replace(".", "_")


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file; a syntax error names the file and line."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError("--config", f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", f"{path}: {exc}") from None


def _coerce(value: Any, typ: Any, where: str) -> Any:
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise ConfigError(where, f"expected a list, got {value!r}")
        elem = args[0] if args else str
        return tuple(_coerce(v.strip() if isinstance(v, str) else v, elem, where) for v in items if v != "")
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(where, f"expected true or false, got {value!r}")
    if typ is int:
        if isinstance(value, bool):
            raise ConfigError(where, f"expected an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(where, f"expected an integer, got {value!r}") from None
    if typ is float:
        if isinstance(value, bool):
            raise ConfigError(where, f"expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(where, f"expected a number, got {value!r}") from None
    if typ is Path:
        return Path(value)
    if typ is str:
        if not isinstance(value, str | int | float):
            raise ConfigError(where, f"expected text, got {value!r}")
        return str(value)
    return value


def load(
    cls: type[T],
    section: str,
    table: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> T:
    """Build settings ``cls`` for ``[section]`` from TOML, environment and flags."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a settings dataclass")
    environ = os.environ if environ is None else environ
    table = dict(table or {})
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"[{section}] {unknown[0]}", "unknown setting")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        where = f"[{section}] {f.name}"
        raw: Any = dataclasses.MISSING
        if f.name in table:
            raw = table[f.name]
        env = env_name(section, f.name)
        if env in environ:
            raw, where = environ[env], env
        if overrides and overrides.get(f.name) is not None:
            raw, where = overrides[f.name], f"--{f.name.replace('_', '-')}"
        if raw is not dataclasses.MISSING:
            values[f.name] = _coerce(raw, hints[f.name], where)
    try:
        obj = cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[{section}]", str(exc)) from None
    return obj


def describe(cls: type, section: str) -> list[tuple[str, str, str, str]]:
    """(name, default, environment variable, doc) rows for docs and --help."""
    rows = []
    for f in dataclasses.fields(cls):
        default = "" if f.default is dataclasses.MISSING else repr(f.default)
        rows.append((f.name, default, env_name(section, f.name), f.metadata.get("doc", "")))
    return rows
