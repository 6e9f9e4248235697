"""Fixtures of the ops tests: hostile upload files and the synthetic product set."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_GEN = Path(__file__).resolve().parents[1] / "fixtures" / "hostile" / "generate.py"


@pytest.fixture(scope="session")
def hostile() -> dict[str, bytes]:
    spec = importlib.util.spec_from_file_location("hostile_generate", _GEN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.hostile_files()
