"""darknet-iodef: what every stage shares (records, addresses, settings, errors, CLI)."""

__version__ = "0.1.0"
