"""Download an .mpta over http(s): streamed, size-limited, timed out, hashed on the fly."""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
from tqdm import tqdm

from camera_pod.mpta.errors import MptaError, MptaFetchError
from detector.kit.redaction import redact_text, redact_url

log = logging.getLogger(__name__)
_CHUNK = 1 << 16


@dataclass(frozen=True)
class DownloadLimits:
    max_bytes: int = 2 << 30
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    max_redirects: int = 5


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


def _check_redirect(response: httpx.Response) -> None:
    if not response.has_redirect_location:
        return
    target = response.url.join(response.headers["location"])
    if target.scheme not in ("http", "https"):
        raise MptaError.single("modelUrl", f"redirect to a non-http(s) URL ({target.scheme}:)")


def _client(limits: DownloadLimits) -> httpx.Client:
    timeout = httpx.Timeout(limits.read_timeout_s, connect=limits.connect_timeout_s)
    return httpx.Client(timeout=timeout, follow_redirects=True, max_redirects=limits.max_redirects,
                        event_hooks={"response": [_check_redirect]})


def download(url: str, directory: Path, limits: DownloadLimits) -> Download:
    """Stream ``url`` into a new temp file in ``directory``; the caller renames it by hash."""
    safe_url = redact_url(url)
    handle, temp_name = tempfile.mkstemp(prefix="download-", suffix=".part", dir=directory)
    digest, size = hashlib.sha256(), 0
    try:
        with os.fdopen(handle, "wb") as sink, _client(limits) as client, client.stream("GET", url) as response:
            if response.status_code != 200:
                raise MptaFetchError(f"GET {safe_url}: HTTP {response.status_code}", delay=5.0)
            declared = int(response.headers.get("content-length") or 0) or None
            if declared and declared > limits.max_bytes:
                raise MptaError.single("modelUrl", f"{declared} bytes, more than the limit of {limits.max_bytes}")
            bar = _progress(declared, url)
            for chunk in response.iter_bytes(_CHUNK):
                size += len(chunk)
                if size > limits.max_bytes:
                    raise MptaError.single("modelUrl", f"download exceeds the limit of {limits.max_bytes} bytes")
                digest.update(chunk)
                sink.write(chunk)
                if bar is not None:
                    bar.update(len(chunk))
            if bar is not None:
                bar.close()
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
    return Download(Path(temp_name), digest.hexdigest(), size)


def hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
