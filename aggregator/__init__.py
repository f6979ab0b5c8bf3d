"""Aggregator: flow summaries -> scan, tool, spoofing and backscatter events."""
