"""A real RTSP server that requires a user and password (rtsp_server.py's ``--user``/``--password``).

Its ``url`` carries the credentials (``rtsp://user:pass@127.0.0.1:PORT/stream``), as a backend sends a
camera's URL.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.support.servers import RtspServer

USER, PASSWORD = "viewer", "Rtsp-Secret9"


@dataclass
class CredentialedRtspServer(RtspServer):
    user: str = USER
    password: str = PASSWORD

    @property
    def url(self) -> str:
        return f"rtsp://{self.user}:{self.password}@127.0.0.1:{self.port}/stream"

    def server_args(self) -> list[str]:
        return ["--user", self.user, "--password", self.password]
