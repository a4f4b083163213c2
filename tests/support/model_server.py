"""Archives over HTTP on loopback: workers load models from http(s) URLs only, never local paths."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def serve_files(*paths: Path) -> Iterator[str]:
    """Serve each file at ``/<its name>``; yields the base URL (``http://127.0.0.1:<port>``)."""
    with serve_mutable({path.name: path.read_bytes() for path in paths}) as base:
        yield base


@contextlib.contextmanager
def serve_mutable(files: dict[str, bytes]) -> Iterator[str]:
    """Serve ``files`` (``/<name>`` → bytes) as they are at each request: a test may change what a URL serves."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = files.get(self.path.split("?")[0].lstrip("/"))
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
