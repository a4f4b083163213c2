"""Throwaway Redis and PostgreSQL servers on free loopback ports, for fault tests (never the shared ones).

Each can be stopped and restarted on the same port (and, for PostgreSQL, the same data directory), so a
test can take a service away and bring it back. PostgreSQL refuses to run as root: then the cluster is
created and run as the ``postgres`` user through ``runuser``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.servers import free_port

REDIS_SERVER = "/usr/bin/redis-server"


def _wait_port(port: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


@dataclass
class ThrowawayRedis:
    """Also listens on a Unix socket, so a test can prepare a restarted server before clients reach it."""

    port: int = field(default_factory=free_port)
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="throwaway-redis-")))
    _process: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.directory / "redis.sock"

    def start(self, *, tcp: bool = True) -> ThrowawayRedis:
        """``tcp=False``: only the Unix socket until ``listen()`` (clients on the port still see it down)."""
        self.socket_path.unlink(missing_ok=True)
        self._process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port if tcp else 0), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--unixsocket", str(self.socket_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if tcp:
            _wait_port(self.port)
        else:
            deadline = time.monotonic() + 15
            while not self.socket_path.exists():
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not create its socket")
                time.sleep(0.02)
        return self

    def listen(self) -> None:
        """Open the TCP port of a server started with ``tcp=False`` (CONFIG SET port, Redis 7+)."""
        subprocess.run(["redis-cli", "-s", str(self.socket_path), "CONFIG", "SET", "port", str(self.port)],
                       check=True, stdout=subprocess.DEVNULL)
        _wait_port(self.port)

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(10)
            self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def _postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"no PostgreSQL {name} under /usr/lib/postgresql")
    return found[-1]


@dataclass
class ThrowawayPostgres:
    """A fresh cluster (trust auth, user ``postgres``, database ``postgres``) in a temporary folder."""

    port: int = field(default_factory=free_port)
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="throwaway-pg-")))

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} dbname=postgres user=postgres"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *command], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def init(self) -> ThrowawayPostgres:
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run(_postgres_bin("initdb"), "-D", str(self.directory / "data"), "-U", "postgres", "--auth=trust",
                  "--no-sync")
        return self

    def start(self) -> ThrowawayPostgres:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(_postgres_bin("pg_ctl"), "-D", str(self.directory / "data"), "-o", options, "-w",
                  "-l", str(self.directory / "log"), "start")
        _wait_port(self.port)
        return self

    def stop(self) -> None:
        self._run(_postgres_bin("pg_ctl"), "-D", str(self.directory / "data"), "-m", "immediate", "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@contextmanager
def throwaway_redis() -> Iterator[ThrowawayRedis]:
    server = ThrowawayRedis().start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


@contextmanager
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    server = ThrowawayPostgres()
    try:
        yield server.init().start()
    finally:
        server.remove()
