"""Downloading .mpta archives over HTTP from a real local server."""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from camera_pod.mpta.errors import MptaError, MptaFetchError
from camera_pod.mpta.fetching import DownloadLimits, download
from camera_pod.mpta.loading import ArchiveStore
from tests.conftest import ArchiveBuilder

REDIRECTS = {"file": "file:///etc/passwd", "ftp": "ftp://127.0.0.1/model.mpta", "gopher": "gopher://127.0.0.1:70/",
             "javascript": "javascript:alert(1)", "data": "data:application/zip;base64,UEsFBgAAAAAAAAAAAAAAAA=="}


@dataclass
class ArchiveServer:
    payload: bytes = b""
    requests: list[str] = field(default_factory=list)
    port: int = 0

    def url(self, path: str = "/model.mpta", userinfo: str = "") -> str:
        return f"http://{userinfo}127.0.0.1:{self.port}{path}"


@pytest.fixture
def server(build_archive: ArchiveBuilder) -> Iterator[ArchiveServer]:
    state = ArchiveServer(payload=build_archive().read_bytes())

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            state.requests.append(self.path)
            if self.path.startswith("/model"):
                time.sleep(0.2)  # keep the download in flight long enough for concurrent callers
                self._send(200, state.payload)
            elif self.path == "/huge-declared":
                self.send_response(200)
                self.send_header("Content-Length", str(10 << 30))
                self.end_headers()
            elif self.path == "/endless":
                self.send_response(200)
                self.end_headers()
                try:
                    for _ in range(64):
                        self.wfile.write(bytes(64 << 10))
                except OSError:
                    pass
            elif self.path == "/stall":
                self.send_response(200)
                self.send_header("Content-Length", "1000000")
                self.end_headers()
                self.wfile.write(b"PK")
                self.wfile.flush()
                time.sleep(5)
            elif self.path.startswith("/to/"):
                self.send_response(302)
                self.send_header("Location", REDIRECTS[self.path.removeprefix("/to/")])
                self.end_headers()
            elif self.path == "/trickle":
                self.send_response(200)
                self.send_header("Content-Length", "1000000")
                self.end_headers()
                self._trickle(b"PK" + bytes(100))
            elif self.path == "/trickle-headers":
                self._trickle(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX-Padding: " + b"x" * 100)
            else:
                self._send(404, b"not found")

        def _trickle(self, data: bytes) -> None:
            """A slow-loris server: one byte every 0.2 s, each well within the client's read timeout."""
            try:
                for byte in data:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass  # the client gave up

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def _store(tmp_path: Path, **limits: float) -> ArchiveStore:
    return ArchiveStore(tmp_path / "cache", download_limits=DownloadLimits(**limits))  # type: ignore[arg-type]


async def test_concurrent_loads_of_one_url_download_and_extract_once(server: ArchiveServer, tmp_path: Path) -> None:
    store = _store(tmp_path)
    loads = await asyncio.gather(*(store.load(server.url()) for _ in range(4)))
    assert all(loaded is loads[0] for loaded in loads)
    assert server.requests == ["/model.mpta"]
    again = await store.load(server.url())
    assert again is loads[0] and server.requests == ["/model.mpta"]
    assert len(list((tmp_path / "cache" / "extracted").glob("*.complete"))) == 1


async def test_same_content_from_two_urls_is_extracted_once(server: ArchiveServer, tmp_path: Path) -> None:
    store = _store(tmp_path)
    first = await store.load(server.url("/model-a.mpta"))
    second = await store.load(server.url("/model-b.mpta"))
    assert first is second
    assert len(list((tmp_path / "cache" / "extracted").iterdir())) == 2  # the folder and its .complete marker


async def test_a_second_process_reuses_the_extracted_archive(server: ArchiveServer, tmp_path: Path) -> None:
    await _store(tmp_path).load(server.url())
    extracted = next((tmp_path / "cache" / "extracted").glob("*.complete"))
    stamp = extracted.stat().st_mtime_ns
    await _store(tmp_path).load(server.url())
    assert extracted.stat().st_mtime_ns == stamp


async def test_declared_size_over_the_limit_is_refused(server: ArchiveServer, tmp_path: Path) -> None:
    with pytest.raises(MptaError, match="more than the limit"):
        await _store(tmp_path, max_bytes=1 << 20).load(server.url("/huge-declared"))


async def test_stream_over_the_limit_is_cut_off(server: ArchiveServer, tmp_path: Path) -> None:
    with pytest.raises(MptaError, match="exceeds the limit"):
        await _store(tmp_path, max_bytes=1 << 20).load(server.url("/endless"))
    assert not list((tmp_path / "cache" / "archives").iterdir()), "a partial download was left behind"


async def test_slow_loris_server_times_out(server: ArchiveServer, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(MptaFetchError, match="ReadTimeout"):
        await _store(tmp_path, read_timeout_s=0.5).load(server.url("/stall"))
    assert time.monotonic() - started < 4


async def test_http_error_is_temporary_and_redacts_credentials(server: ArchiveServer, tmp_path: Path) -> None:
    with pytest.raises(MptaFetchError) as caught:
        await _store(tmp_path).load(server.url("/missing.mpta", userinfo="ops:topsecret@"))
    assert "HTTP 404" in str(caught.value)
    assert "topsecret" not in str(caught.value) and "ops:***@" in str(caught.value)


async def test_unreachable_host_is_a_clear_temporary_error(tmp_path: Path) -> None:
    with pytest.raises(MptaFetchError, match="ConnectError"):
        await _store(tmp_path, connect_timeout_s=2).load("http://127.0.0.1:9/model.mpta")


@pytest.mark.parametrize("scheme", sorted(REDIRECTS))
async def test_redirect_to_another_scheme_is_refused(server: ArchiveServer, tmp_path: Path, scheme: str) -> None:
    with pytest.raises(MptaError, match=f"redirect to a non-http\\(s\\) URL \\({scheme}:\\)"):
        await _store(tmp_path).load(server.url(f"/to/{scheme}"))
    assert not list((tmp_path / "cache" / "archives").iterdir()), "nothing kept from a refused download"


@pytest.mark.parametrize("path", ["/trickle", "/trickle-headers"])
def test_a_server_trickling_bytes_is_cut_off_by_the_total_deadline(server: ArchiveServer, tmp_path: Path,
                                                                    path: str) -> None:
    """Each byte arrives within the read timeout; only the total deadline ends the download."""
    limits = DownloadLimits(read_timeout_s=5, total_timeout_s=1.5)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    started = time.monotonic()
    with pytest.raises(MptaFetchError, match=r"not complete after 1.5 s \(DETECTOR_MPTA_TOTAL_TIMEOUT_S\)"):
        download(server.url(path), downloads, limits)
    assert 1.4 < time.monotonic() - started < 3.5
    assert list(downloads.iterdir()) == [], "the partial download was removed"


def test_download_limits_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from camera_pod.settings import PodSettings

    monkeypatch.setenv("DETECTOR_MPTA_TOTAL_TIMEOUT_S", "120")
    monkeypatch.setenv("DETECTOR_MPTA_READ_TIMEOUT_S", "7")
    limits = DownloadLimits.from_settings(PodSettings())
    assert (limits.total_timeout_s, limits.read_timeout_s, limits.connect_timeout_s) == (120, 7, 10)
