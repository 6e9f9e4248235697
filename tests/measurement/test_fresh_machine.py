"""A fresh machine (issue 11, part 1): ``make test`` installs the Debian packages the tests run
as real processes, or stops at once with the command to run; under ``CI=true`` (and under
``make test``) a test whose real service is missing fails instead of skipping.

A truly fresh machine is out of reach here; these run the real script and the real helpers
with a PATH that lacks the binaries, and fake ``apt-get`` / ``id`` that only record their calls.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "system-deps"
PACKAGES = ["redis-server", "nginx", "prometheus", "chromium", "nodejs", "npm"]


def _fake_bin(tmp_path: Path, uid: int) -> Path:
    """A PATH holding only a fake ``id`` (answering ``uid``) and a fake ``apt-get`` that logs."""
    d = tmp_path / "bin"
    d.mkdir()
    (d / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (d / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/apt.log\n')
    for f in d.iterdir():
        f.chmod(0o755)
    return d


def _run_script(tmp_path: Path, uid: int, **env: str) -> subprocess.CompletedProcess[str]:
    path = str(_fake_bin(tmp_path, uid))
    return subprocess.run(["/bin/bash", str(SCRIPT)], capture_output=True, text=True, timeout=30,
                          env={"PATH": path, "SWIFTSHOT_SBIN_DIR": "", **env})


def test_as_root_the_missing_packages_are_installed_with_apt_get(tmp_path):
    r = _run_script(tmp_path, 0)
    calls = (tmp_path / "apt.log").read_text().splitlines()
    assert calls[0] == "update -qq"
    assert calls[1].split()[:4] == ["install", "-y", "-qq", "--no-install-recommends"]
    assert calls[1].split()[4:] == PACKAGES
    # the fake apt-get installed nothing: the script checks again and says what is still missing
    assert r.returncode == 1 and "still missing" in r.stderr and "redis-server" in r.stderr


def test_not_root_it_stops_at_once_with_the_exact_command(tmp_path):
    r = _run_script(tmp_path, 1000)
    assert r.returncode == 1
    assert not (tmp_path / "apt.log").exists(), "nothing may be installed without root"
    cmd = "sudo apt-get install -y --no-install-recommends " + " ".join(PACKAGES)
    assert cmd in r.stderr, r.stderr


def test_dry_run_names_the_packages_and_installs_nothing(tmp_path):
    r = _run_script(tmp_path, 0, SWIFTSHOT_DEPS_DRY_RUN="1")
    assert r.returncode == 0 and " ".join(PACKAGES) in r.stdout
    assert not (tmp_path / "apt.log").exists()


def test_with_everything_present_it_does_nothing(tmp_path):
    r = subprocess.run(["/bin/bash", str(SCRIPT)], capture_output=True, text=True, timeout=30,
                       env={**os.environ, "SWIFTSHOT_DEPS_DRY_RUN": "1"})
    assert r.returncode == 0 and r.stdout == "", "this machine has all four installed"


def test_make_test_runs_the_install_step_and_requires_services():
    r = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True,
                       timeout=30, env={**os.environ, "PYTHON": sys.executable})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    deps = next(i for i, line in enumerate(lines) if ".ci/system-deps" in line)
    tests = next(i for i, line in enumerate(lines) if "-m pytest" in line)
    assert deps < tests and "SWIFTSHOT_REQUIRE_SERVICES=1" in lines[tests]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


PROBE = """
import pytest
import swiftshot.testing.nginx as nginx
from swiftshot.testing.services import start_redis
from swiftshot.testing.browser import find_chromium
from swiftshot.testing.services import missing_service

nginx._DEBIAN_BINARY = "/nonexistent/nginx"

def test_redis(tmp_path):
    start_redis(tmp_path)

def test_nginx(tmp_path):
    nginx.start_nginx(tmp_path, ["127.0.0.1:1"])

def test_chromium():
    if find_chromium() is None:
        missing_service("no chromium binary")
"""


@pytest.mark.parametrize("env,outcome", [
    ({"CI": "true"}, "3 failed"),
    ({"SWIFTSHOT_REQUIRE_SERVICES": "1"}, "3 failed"),
    ({}, "3 skipped"),
])
def test_a_missing_service_fails_under_ci_and_skips_elsewhere(tmp_path, env, outcome):
    (tmp_path / "test_probe.py").write_text(textwrap.dedent(PROBE))
    base = {k: v for k, v in os.environ.items()
            if k not in ("CI", "SWIFTSHOT_REQUIRE_SERVICES", "PYTEST_ADDOPTS")}
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfs", "test_probe.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**base, "PATH": str(tmp_path / "empty"), "PYTHONPATH": str(ROOT / "src"), **env})
    assert outcome in r.stdout, r.stdout[-2000:]
    for name in ("redis-server", "nginx", "chromium"):
        assert name in r.stdout
