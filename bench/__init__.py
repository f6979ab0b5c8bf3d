"""Benchmarks and the darknet traffic generator (not installed with the package).

Run from the repository root: ``python -m bench.gen_darknet --help`` and
``python -m bench.bench_parse --help``.
"""

__all__: list[str] = []
