"""Real servers for stream tests, started and stopped by the tests, all on loopback."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's python3 has the GStreamer bindings (python3-gi)
RTSP_SCRIPT = Path(__file__).with_name("rtsp_server.py")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RtspServer:
    video: Path
    mode: str = "normal"
    port: int = field(default_factory=free_port)
    clients: int = 0
    _process: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/stream"

    def server_args(self) -> list[str]:
        """Options of rtsp_server.py beyond port, video and mode (a subclass adds its own)."""
        return []

    def start(self) -> RtspServer:
        self._process = subprocess.Popen(
            [SYSTEM_PYTHON, str(RTSP_SCRIPT), str(self.port), str(self.video), "--mode", self.mode,
             *self.server_args()],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self._process.stdout is not None
        first = self._process.stdout.readline().strip()
        if first != "READY":
            self.stop()
            raise RuntimeError(f"RTSP server did not start: {first!r}")
        threading.Thread(target=self._count_clients, args=(self._process,), daemon=True).start()
        return self

    def _count_clients(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("CLIENT"):
                self.clients += 1

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(10)
            self._process = None
            time.sleep(0.2)  # let the kernel release the port before a restart
