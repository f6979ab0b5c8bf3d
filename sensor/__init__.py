"""Sensor: capture files and live interfaces -> per-packet arrays -> flow summaries."""
