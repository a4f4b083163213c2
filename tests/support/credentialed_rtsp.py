"""A real RTSP server that requires a user and password (rtsp_server.py's ``--user``/``--password``).

Its ``url`` carries the credentials (``rtsp://user:pass@127.0.0.1:PORT/stream``), as a backend sends a
camera's URL.
"""

from __future__ import annotations

import subprocess
import threading
from dataclasses import dataclass

from tests.support.servers import RTSP_SCRIPT, SYSTEM_PYTHON, RtspServer

USER, PASSWORD = "viewer", "Rtsp-Secret9"


@dataclass
class CredentialedRtspServer(RtspServer):
    user: str = USER
    password: str = PASSWORD

    @property
    def url(self) -> str:
        return f"rtsp://{self.user}:{self.password}@127.0.0.1:{self.port}/stream"

    def start(self) -> CredentialedRtspServer:
        self._process = subprocess.Popen(
            [SYSTEM_PYTHON, str(RTSP_SCRIPT), str(self.port), str(self.video), "--mode", self.mode,
             "--user", self.user, "--password", self.password],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self._process.stdout is not None
        first = self._process.stdout.readline().strip()
        if first != "READY":
            self.stop()
            raise RuntimeError(f"RTSP server did not start: {first!r}")
        threading.Thread(target=self._count_clients, args=(self._process,), daemon=True).start()
        return self
