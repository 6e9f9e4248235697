"""One real two-node Ray cluster on loopback, shared by every Ray test of the session (Ray's
start-up is ~20 s on 2 cores)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if "/tests/ray/" in str(item.fspath):
            item.add_marker(pytest.mark.ray)
