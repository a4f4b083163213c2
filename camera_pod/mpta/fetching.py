"""Download an .mpta over http(s): streamed, size-limited, timed out, hashed on the fly.

Three clocks bound a download: the connect timeout, the read timeout (no byte for this long), and a
total deadline, so that a server trickling one byte a second cannot hold a camera pod forever. The
download runs on its own event loop (callers are worker threads or tools), where cancelling at the
deadline interrupts whatever phase it is in, headers included.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import httpx
from tqdm import tqdm

from camera_pod.mpta.errors import MptaError, MptaFetchError
from detector.kit.redaction import redact_text, redact_url

if TYPE_CHECKING:
    from camera_pod.settings import PodSettings

log = logging.getLogger(__name__)
_CHUNK = 1 << 16
_ALLOWED_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class DownloadLimits:
    max_bytes: int = 2 << 30
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    total_timeout_s: float = 900.0
    max_redirects: int = 5

    @classmethod
    def from_settings(cls, settings: PodSettings) -> DownloadLimits:
        return cls(max_bytes=settings.max_mpta_bytes, connect_timeout_s=settings.mpta_connect_timeout_s,
                   read_timeout_s=settings.mpta_read_timeout_s, total_timeout_s=settings.mpta_total_timeout_s)


@dataclass(frozen=True)
class Download:
    path: Path
    sha256: str
    size: int


def is_url(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


def _progress(total: int | None, url: str) -> tqdm | None:
    if not sys.stderr.isatty():
        return None
    return tqdm(total=total, unit="B", unit_scale=True, desc=redact_url(url)[-40:], leave=False)


async def _check_redirect(response: httpx.Response) -> None:
    if not response.has_redirect_location:
        return
    target = response.url.join(response.headers["location"])
    if target.scheme not in _ALLOWED_SCHEMES:
        raise MptaError.single("modelUrl", f"redirect to a non-http(s) URL ({target.scheme or 'no scheme'}:)")


def _client(limits: DownloadLimits) -> httpx.AsyncClient:
    timeout = httpx.Timeout(limits.read_timeout_s, connect=limits.connect_timeout_s)
    return httpx.AsyncClient(timeout=timeout, follow_redirects=True, max_redirects=limits.max_redirects,
                             event_hooks={"response": [_check_redirect]})


async def _fetch(url: str, sink: IO[bytes], limits: DownloadLimits) -> tuple[str, int]:
    """Stream ``url`` into ``sink`` within ``limits.total_timeout_s``; the sha256 and size of what was read."""
    digest, size = hashlib.sha256(), 0
    async with asyncio.timeout(limits.total_timeout_s), _client(limits) as client, \
            client.stream("GET", url) as response:
        if response.status_code != 200:
            raise MptaFetchError(f"GET {redact_url(url)}: HTTP {response.status_code}", delay=5.0)
        declared = int(response.headers.get("content-length") or 0) or None
        if declared and declared > limits.max_bytes:
            raise MptaError.single("modelUrl", f"{declared} bytes, more than the limit of {limits.max_bytes}")
        bar = _progress(declared, url)
        async for chunk in response.aiter_bytes():  # each piece as it arrives (no chunk size: no waiting)
            size += len(chunk)
            if size > limits.max_bytes:
                raise MptaError.single("modelUrl", f"download exceeds the limit of {limits.max_bytes} bytes")
            digest.update(chunk)
            sink.write(chunk)
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
    return digest.hexdigest(), size


def download(url: str, directory: Path, limits: DownloadLimits) -> Download:
    """Stream ``url`` into a new temp file in ``directory``; the caller renames it by hash.

    Blocking, with an event loop of its own: call it from a worker thread (``asyncio.to_thread``).
    """
    safe_url = redact_url(url)
    handle, temp_name = tempfile.mkstemp(prefix="download-", suffix=".part", dir=directory)
    try:
        with os.fdopen(handle, "wb") as sink:
            sha256, size = asyncio.run(_fetch(url, sink, limits))
    except TimeoutError as exc:
        os.unlink(temp_name)
        raise MptaFetchError(f"GET {safe_url}: not complete after {limits.total_timeout_s:g} s "
                             "(DETECTOR_MPTA_TOTAL_TIMEOUT_S)", delay=5.0) from exc
    except httpx.TooManyRedirects as exc:
        os.unlink(temp_name)
        raise MptaError.single("modelUrl", f"too many redirects fetching {safe_url}") from exc
    except httpx.HTTPError as exc:
        os.unlink(temp_name)
        raise MptaFetchError(f"GET {safe_url}: {type(exc).__name__}: {redact_text(str(exc))}", delay=5.0) from exc
    except BaseException:
        os.unlink(temp_name)
        raise
    log.info("downloaded .mpta", extra={"url": safe_url, "bytes": size})
    return Download(Path(temp_name), sha256, size)


def hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
