#!/usr/bin/env bash
# Install everything the tests need, then lint, type-check and run the whole suite.
# This is the README's test command; .ci/run runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# tshark is the differential oracle for the parser; tcpreplay and iproute2
# drive the live-capture tests in network namespaces.
need=()
command -v tshark >/dev/null || need+=(tshark)
command -v tcpreplay >/dev/null || need+=(tcpreplay)
command -v ip >/dev/null || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}"
fi

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

python3 -m ruff check .
python3 -m mypy
python3 -m pytest "$@"
