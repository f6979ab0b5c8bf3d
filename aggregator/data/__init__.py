"""Data files shipped with the aggregator (IANA registries, example allow-list).

See SOURCES.json for where each file comes from and when it was compiled;
``python -m aggregator.data.refresh`` re-downloads the IANA registries.
"""
