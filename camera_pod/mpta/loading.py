"""Turn an .mpta source (path or URL) into a validated pipeline with loaded models, once per archive."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from camera_pod.inference import selection
from camera_pod.inference.models import Model
from camera_pod.mpta import extracting, fetching
from camera_pod.mpta.errors import MptaError, issues_from_validation
from camera_pod.mpta.schema import PipelineConfig
from camera_pod.mpta.validating import load_readers, validate
from camera_pod.ocr.reading import TextReader
from camera_pod.ocr.recognisers import Recognisers
from detector.kit.file_locks import file_lock
from detector.kit.redaction import redact_url

log = logging.getLogger(__name__)

MAX_PIPELINE_JSON_BYTES = 1 << 20
_COMPLETE_MARKER = ".complete"


@dataclass(frozen=True)
class LoadedArchive:
    sha256: str
    root: Path
    config: PipelineConfig
    models: Mapping[str, Model]
    readers: Mapping[str, TextReader] = field(default_factory=dict)  # text (OCR) nodes, by modelId


def parse_pipeline(path: Path) -> PipelineConfig:
    if path.stat().st_size > MAX_PIPELINE_JSON_BYTES:
        raise MptaError.single("pipeline.json", f"larger than {MAX_PIPELINE_JSON_BYTES} bytes")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise MptaError.single("pipeline.json", f"not UTF-8 text: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise MptaError.single("pipeline.json", f"invalid JSON at line {exc.lineno} column {exc.colno}: "
                                                f"{exc.msg}") from exc
    if not isinstance(document, dict):
        raise MptaError.single("(root)", f"must be a JSON object, not {type(document).__name__}")
    try:
        return PipelineConfig.model_validate(document)
    except ValidationError as exc:
        raise MptaError(issues_from_validation(exc)) from exc


def load_extracted(root: Path, load_model: Callable[[Path], Model], recognisers: Recognisers,
                   sha256: str = "") -> LoadedArchive:
    """Parse and validate an extracted archive folder, loading each model file once."""
    config = parse_pipeline(root / extracting.PIPELINE_FILE)
    models, issues = validate(config, root, load_model)
    readers, reader_issues = load_readers(config, root, recognisers)
    if issues or reader_issues:
        raise MptaError(issues + reader_issues)
    return LoadedArchive(sha256, root, config, models, readers)


@dataclass
class ArchiveStore:
    """Content-addressed cache of archives: ``archives/<sha>.mpta`` and ``extracted/<sha>/``.

    Loads are de-duplicated: concurrent requests for one source await the same load, and a loaded
    archive is shared by every subscription that uses it. ``load_model`` defaults to the ONNX Runtime
    backend, its exports cached in ``onnx/`` (see ``inference.selection``).
    """

    cache_dir: Path
    download_limits: fetching.DownloadLimits = field(default_factory=fetching.DownloadLimits)
    extraction_limits: extracting.ExtractionLimits = field(default_factory=extracting.ExtractionLimits)
    load_model: Callable[[Path], Model] | None = None
    recognisers: Recognisers = field(default_factory=Recognisers)  # text nodes' recognisers, shared by archives
    _load_model: Callable[[Path], Model] = field(init=False)
    _loaded: dict[str, LoadedArchive] = field(default_factory=dict, init=False)
    _sha_by_source: dict[str, str] = field(default_factory=dict, init=False)
    _in_flight: dict[str, asyncio.Future[LoadedArchive]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self._load_model = self.load_model or selection.model_loader(self.cache_dir)

    async def load(self, source: str) -> LoadedArchive:
        sha = self._sha_by_source.get(source)
        if sha is not None and sha in self._loaded:
            return self._loaded[sha]
        pending = self._in_flight.get(source)
        if pending is None:
            pending = asyncio.ensure_future(self._load_uncached(source))
            self._in_flight[source] = pending
            pending.add_done_callback(lambda _: self._in_flight.pop(source, None))
        return await asyncio.shield(pending)

    def release(self, sha256: str) -> None:
        """Forget a loaded archive (its models are freed once nothing else holds them); the files stay cached."""
        self._loaded.pop(sha256, None)
        for source in [s for s, sha in self._sha_by_source.items() if sha == sha256]:
            del self._sha_by_source[source]

    def load_blocking(self, source: str) -> LoadedArchive:
        """For tools without an event loop (CLI)."""
        return asyncio.run(self.load(source))

    async def _load_uncached(self, source: str) -> LoadedArchive:
        archive_path, sha = await asyncio.to_thread(self._archive_file, source)
        self._sha_by_source[source] = sha
        if sha in self._loaded:
            return self._loaded[sha]
        try:
            loaded = await asyncio.to_thread(self._extract_and_load, archive_path, sha)
        except MptaError as exc:
            exc.source = redact_url(source)
            raise
        self._loaded[sha] = loaded
        log.info("loaded .mpta", extra={"source": redact_url(source), "sha256": sha[:12],
                                         "models": len(loaded.models)})
        return loaded

    def _archive_file(self, source: str) -> tuple[Path, str]:
        archives = self.cache_dir / "archives"
        archives.mkdir(parents=True, exist_ok=True)
        if fetching.is_url(source):
            download = fetching.download(source, archives, self.download_limits)
            target = archives / f"{download.sha256}.mpta"
            os.replace(download.path, target)
            return target, download.sha256
        path = Path(source)
        if not path.is_file():
            raise MptaError.single("modelUrl", f"no such file: {source}")
        return path, fetching.hash_file(path)

    def _extract_and_load(self, archive_path: Path, sha: str) -> LoadedArchive:
        target = self.cache_dir / "extracted" / sha
        with file_lock(self.cache_dir / "locks" / f"{sha}.lock"):
            marker = target.with_name(f"{sha}{_COMPLETE_MARKER}")
            if not marker.exists():
                shutil.rmtree(target, ignore_errors=True)
                staging = self.cache_dir / "extracted" / f".{sha}.staging"
                shutil.rmtree(staging, ignore_errors=True)
                extracting.extract(archive_path, staging, self.extraction_limits)
                try:
                    root = extracting.find_pipeline_root(staging)
                    parse_pipeline(root / extracting.PIPELINE_FILE)  # fail fast before keeping it
                except MptaError:
                    shutil.rmtree(staging, ignore_errors=True)
                    raise
                os.replace(staging, target)
                marker.touch()
        return load_extracted(extracting.find_pipeline_root(target), self._load_model, self.recognisers, sha)
