"""Fixtures every test package shares: where ../shared is, and tshark."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: third-party captures and schemas live beside the checkout (CI always has them)
SHARED = Path(os.environ.get("DARKNET_IODEF_SHARED", REPO.parent / "shared"))


def _need(path: Path) -> Path:
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing, and CI must run the tests that need ../shared")
        pytest.skip(f"needs {path} (../shared beside the checkout; a user's clone has none)")
    return path


@pytest.fixture(scope="session")
def shared_pcaps() -> Path:
    """../shared/pcaps: real third-party captures (skip where absent)."""
    return _need(SHARED / "pcaps")


@pytest.fixture(scope="session")
def shared_schemas() -> Path:
    """../shared/schemas: the official XSDs and JSON schema (skip where absent)."""
    return _need(SHARED / "schemas")


@pytest.fixture(scope="session")
def tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("tshark is not installed; scripts/test.sh installs it")
        pytest.skip("tshark is not installed (scripts/test.sh installs it)")
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
