"""Shared fixtures. Servers and daemons used by tests are real processes on loopback."""

from __future__ import annotations

import socket

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def settings(tmp_path):
    """Settings whose files all live in the test's tmp folder."""
    from swiftshot.config import Settings

    return Settings(data_dir=tmp_path / "var")
