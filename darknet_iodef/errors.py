"""The project's exception tree: the contract every stage keeps.

Theory of operation (STYLE.md habits 4 and 5): untrusted input -- captures, Kafka
messages, XML from peers -- that is malformed raises an :class:`InputError` that
says *where* (file, byte offset, topic/partition/offset, field) and *why*, in one
line. The runner that owns the stage counts it and skips or dead-letters the item;
it never becomes a traceback. Anything else that escapes a core is a bug.

Configuration problems raise :class:`ConfigError` naming the setting; the CLI
exits non-zero with that one line. Peers or brokers that are down raise
:class:`TransientError`; the runner backs off and retries.
"""

from __future__ import annotations

__all__ = [
    "CaptureError",
    "ConfigError",
    "DarknetError",
    "DocumentError",
    "InputError",
    "RecordError",
    "TransientError",
]


class DarknetError(Exception):
    """Base of every error this project raises on purpose."""


class InputError(DarknetError):
    """Malformed untrusted input.

    ``source`` names the input (a file path, ``topic[partition]``, a peer),
    ``position`` where in it (``"offset 1234"``, ``"field source.ip"``), and
    ``reason`` what is wrong. ``str()`` gives the one-line message users see.
    """

    def __init__(self, source: str, position: str, reason: str) -> None:
        self.source = source
        self.position = position
        self.reason = reason
        super().__init__(self.line())

    def line(self) -> str:
        where = f"{self.source}: {self.position}" if self.position else self.source
        return f"{where}: {self.reason}"


class CaptureError(InputError):
    """A capture file (or live ring block) that cannot be read as a whole."""


class RecordError(InputError):
    """A flow batch or event message that does not decode (poison message)."""


class DocumentError(InputError):
    """An XML/JSON document from a peer that is refused."""


class ConfigError(DarknetError):
    """A bad setting; the message names the setting and the reason."""

    def __init__(self, setting: str, reason: str) -> None:
        self.setting = setting
        self.reason = reason
        super().__init__(f"setting {setting}: {reason}")


class TransientError(DarknetError):
    """A peer or broker that is unavailable for now; retry with backoff."""
