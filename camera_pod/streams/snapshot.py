"""HTTP snapshot cameras: one GET per interval on a drift-free schedule, Digest or Basic auth."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import unquote, urlsplit, urlunsplit

import cv2
import httpx
import numpy as np

from camera_pod.inference.models import Image
from camera_pod.streams.config import StreamConfig
from camera_pod.streams.errors import BadSnapshot, StreamError
from camera_pod.streams.state import StreamStats
from detector.kit.redaction import redact_text

log = logging.getLogger(__name__)


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """``http://user:pw@host/x`` → (``http://host/x``, (user, pw)); the URL that is used never carries them."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return bare, (unquote(parts.username), unquote(parts.password or ""))


def decode_image(body: bytes) -> Image:
    if not body:
        raise BadSnapshot("empty body")
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise BadSnapshot(f"not a decodable image ({len(body)} bytes, starts {body[:16]!r})")
    return image.astype(np.uint8, copy=False)


class SnapshotConnection:
    def __init__(self, config: StreamConfig, stats: StreamStats, stop: threading.Event) -> None:
        self._config = config
        self._stats = stats
        self._stop = stop
        self._url, credentials = split_credentials(config.url)
        self._credentials = credentials
        self._auth: httpx.Auth | None = httpx.DigestAuth(*credentials) if credentials else None
        self._client: httpx.Client | None = None

    def __enter__(self) -> SnapshotConnection:
        timeout = httpx.Timeout(self._config.read_timeout_s, connect=self._config.open_timeout_s)
        self._client = httpx.Client(timeout=timeout, follow_redirects=True, max_redirects=3)
        return self

    def __exit__(self, *_: object) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _get(self) -> httpx.Response:
        assert self._client is not None
        request = self._client.build_request("GET", self._url)
        response = self._client.send(request, auth=self._auth, stream=True)
        challenge = response.headers.get("www-authenticate", "").lower()
        if response.status_code == 401 and self._credentials and challenge.startswith("basic") and not isinstance(
                self._auth, httpx.BasicAuth):
            response.close()
            log.info("snapshot camera wants Basic auth; switching", extra={"url": self._config.safe_url})
            self._auth = httpx.BasicAuth(*self._credentials)
            response = self._client.send(self._client.build_request("GET", self._url), auth=self._auth, stream=True)
        return response

    def _read_body(self, response: httpx.Response) -> bytes:
        declared = int(response.headers.get("content-length") or 0)
        if declared > self._config.max_snapshot_bytes:
            raise BadSnapshot(f"{declared} bytes, more than the limit of {self._config.max_snapshot_bytes}")
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self._config.max_snapshot_bytes:
                raise BadSnapshot(f"more than the limit of {self._config.max_snapshot_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def fetch(self) -> Image:
        try:
            response = self._get()
            try:
                if response.status_code in (401, 403):
                    raise StreamError(f"{self._config.safe_url}: HTTP {response.status_code}: "
                                      "credentials missing or refused", delay=self._config.reconnect_interval_sec)
                if response.status_code != 200:
                    raise StreamError(f"{self._config.safe_url}: HTTP {response.status_code}")
                return decode_image(self._read_body(response))
            finally:
                response.close()
        except httpx.HTTPError as exc:
            raise StreamError(f"{self._config.safe_url}: {type(exc).__name__}: {redact_text(str(exc))}") from exc

    def frames(self, stopping: Callable[[], bool]) -> Iterator[tuple[Image, float]]:
        interval = self._config.snapshot_interval_ms / 1000
        due = time.monotonic()
        while not stopping():
            delay = due - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            # The next tick is scheduled from the plan, not from when this fetch ends (no drift);
            # ticks missed while a slow fetch ran are skipped, not bunched up.
            due += interval
            now = time.monotonic()
            if due < now:
                due += interval * ((now - due) // interval + 1)
            try:
                yield self.fetch(), time.time()
            except BadSnapshot as exc:
                self._stats.count_decode_error(f"snapshot: {exc}")
                log.warning("bad snapshot", extra={"url": self._config.safe_url, "error": str(exc)})
