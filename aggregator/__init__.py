"""Aggregator: flow summaries -> scan, tool, spoofing and backscatter events.

The sans-I/O core is :class:`aggregator.engine.Aggregator` (flow batches in,
IntelMQ-named event dicts out); ``darknet-iodef aggregate`` is its command
(:mod:`aggregator.aggregate_cmd`). Rules, thresholds and their sources:
docs/detection.md.
"""
