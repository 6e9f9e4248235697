"""A real nginx in front of swiftshot for tests: ``deploy/nginx/swiftshot.conf`` itself, rendered
into a tmp folder with loopback ports and tmp paths, run as a child process.

The production file is an http-context include; the test wraps it in a minimal main config
whose logs, pid and temp folders all live in the tmp folder, so nothing outside it is touched.
Only the values the production file marks ``(test: ...)`` are swapped, each checked to be
found, so a template that drifts from what the renderer expects fails loudly instead of
silently testing something else.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from swiftshot.testing.services import free_port

TEMPLATE = Path(__file__).resolve().parents[3] / "deploy" / "nginx" / "swiftshot.conf"
"""The production example (in the source tree; the package is installed editable)."""

_DEBIAN_BINARY = "/usr/sbin/nginx"  # not on PATH for non-root users on Debian

_UPSTREAM_SERVER = re.compile(r"^(?P<indent>[ \t]*)server[ \t]+127\.0\.0\.1:8000(?P<params>[^;]*);.*$",
                              re.MULTILINE)
_LISTEN = re.compile(r"^(?P<indent>[ \t]*)listen[ \t]+80;.*$", re.MULTILINE)
_MAX_BODY = re.compile(r"^(?P<indent>[ \t]*)client_max_body_size[ \t]+\S+;.*$", re.MULTILINE)
_CACHE_PATH = "/var/cache/nginx/swiftshot"
_ACCESS_LOG = "/var/log/nginx/swiftshot.access.log"


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return _DEBIAN_BINARY if os.access(_DEBIAN_BINARY, os.X_OK) else None


def render_site(template: str, *, origins: Sequence[str], port: int, cache_dir: Path,
                access_log: Path, max_body_bytes: int | None = None) -> str:
    """The production site file with loopback origins (``host:port``), a loopback listen port,
    and tmp paths. Raises ValueError when a value to swap is missing from ``template``."""
    if not origins:
        raise ValueError("at least one origin (host:port) is needed")

    def servers(m: re.Match[str]) -> str:
        return "\n".join(f"{m['indent']}server {o}{m['params']};" for o in origins)

    out, n = _UPSTREAM_SERVER.subn(servers, template)
    _expect(n >= 1, "upstream 'server 127.0.0.1:8000 ...;' lines")
    out, n = _LISTEN.subn(lambda m: f"{m['indent']}listen 127.0.0.1:{port};", out)
    _expect(n == 1, "one 'listen 80;' line")
    if max_body_bytes is not None:
        out, n = _MAX_BODY.subn(lambda m: f"{m['indent']}client_max_body_size {max_body_bytes};",
                                out)
        _expect(n == 1, "one 'client_max_body_size' line")
    _expect(_CACHE_PATH in out and _ACCESS_LOG in out, f"{_CACHE_PATH} and {_ACCESS_LOG}")
    out = out.replace(_CACHE_PATH, str(cache_dir)).replace(_ACCESS_LOG, str(access_log))
    # Anything still pointing into the system's folders would escape the tmp folder.
    left = [line for line in out.splitlines()
            if re.search(r"(?<![\w/])/(var|etc)/", line.split("#", 1)[0])]
    _expect(not left, f"no other system paths (found {left})")
    return out


def _expect(ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(f"nginx template {TEMPLATE} no longer has {what}; update "
                         "swiftshot.testing.nginx.render_site with it")


def render_main(site: Path, prefix: Path) -> str:
    """A main config that includes ``site`` in http {} with every writable path under ``prefix``."""
    temp = "\n".join(f"    {name}_temp_path {prefix / 'temp' / name};"
                     for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    # As root, workers would drop to "nobody", who cannot enter pytest's 0700 tmp folders.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (f"{user}worker_processes 1;\n"
            f"error_log {prefix / 'error.log'} info;\n"
            "events { worker_connections 256; }\n"
            "http {\n"
            "    default_type application/octet-stream;\n"
            f"    access_log {prefix / 'access.log'};\n"
            f"{temp}\n"
            f"    include {site};\n"
            "}\n")


@dataclass
class NginxProc:
    """nginx (master + one worker) on 127.0.0.1:``port``, configured under ``prefix``."""

    port: int
    prefix: Path
    proc: subprocess.Popen[bytes] = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def site(self) -> Path:
        return self.prefix / "swiftshot.conf"

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: fast shutdown of master and workers
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def start_nginx(tmp_dir: Path, origins: Sequence[str], *, max_body_bytes: int | None = None,
                template: Path = TEMPLATE, attempts: int = 3, timeout_s: float = 10.0) -> NginxProc:
    """Render ``template`` for ``origins`` (``host:port`` of swiftshot servers) into ``tmp_dir``
    and run nginx on a free loopback port until it accepts connections.

    Calls ``missing_service`` (skip, or fail under CI) when no nginx binary is installed; any
    other failure (a config nginx rejects included) raises with nginx's own error log.
    """
    binary = nginx_binary()
    if binary is None:
        from swiftshot.testing.services import missing_service

        missing_service("nginx is not installed (Debian package nginx)")
    prefix = Path(tmp_dir).resolve()
    for sub in ("temp", "cache"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    text = template.read_text()
    last_error = ""
    for _ in range(attempts):
        port = free_port()
        site = prefix / "swiftshot.conf"
        site.write_text(render_site(text, origins=origins, port=port, cache_dir=prefix / "cache",
                                    access_log=prefix / "swiftshot.access.log",
                                    max_body_bytes=max_body_bytes))
        (prefix / "nginx.conf").write_text(render_main(site, prefix))
        proc = subprocess.Popen(
            [binary, "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf"),
             "-e", str(prefix / "error.log"),
             "-g", f"daemon off; pid {prefix / 'nginx.pid'};"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        server = NginxProc(port, prefix, proc)
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and server.alive():
            if _accepts(port):
                if proc.stderr is not None:
                    proc.stderr.close()  # nginx logs to error.log from here on
                return server
            time.sleep(0.02)
        # Lost a race for the port, or the config was refused: collect why and maybe retry.
        server.stop()
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.stderr is not None:
            proc.stderr.close()
        last_error = (stderr + server.error_log())[-2000:]
        if "Address already in use" not in last_error:
            break
    raise RuntimeError(f"nginx did not start on 127.0.0.1 with {prefix / 'nginx.conf'}:\n"
                       f"{last_error}")


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
