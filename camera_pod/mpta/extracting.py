"""Safe extraction of an .mpta zip: no path escapes, no links, no zip bombs."""

from __future__ import annotations

import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from camera_pod.mpta.errors import Issue, MptaError

PIPELINE_FILE = "pipeline.json"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ExtractionLimits:
    max_files: int = 256
    max_total_bytes: int = 4 << 30
    max_compression_ratio: float = 200.0  # per entry; model weights compress ~1.1x


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    mode = info.external_attr >> 16
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in path.parts:
        return "path escapes the archive ('..')"
    file_type = stat.S_IFMT(mode)  # 0 when the archiver stored permission bits only
    if file_type == stat.S_IFLNK:
        return "symbolic link"
    if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "special file"
    if info.flag_bits & 0x1:
        return "encrypted entry"
    if "\x00" in name:
        return "NUL in file name"
    return None


def check_members(archive: zipfile.ZipFile, limits: ExtractionLimits) -> list[zipfile.ZipInfo]:
    """Return the file entries to extract, or raise naming every unsafe one."""
    infos = archive.infolist()
    issues: list[Issue] = []
    files = [info for info in infos if not info.is_dir()]
    if len(files) > limits.max_files:
        issues.append(Issue("(archive)", f"{len(files)} files, more than the limit of {limits.max_files}"))
    declared = sum(info.file_size for info in files)
    if declared > limits.max_total_bytes:
        issues.append(Issue("(archive)", f"{declared} bytes uncompressed, more than the limit of "
                                         f"{limits.max_total_bytes}"))
    seen: set[str] = set()
    for info in infos:
        problem = _member_problem(info)
        normalized = info.filename.replace("\\", "/").rstrip("/")
        if problem is None and normalized.lower() in seen:
            problem = "duplicate entry"
        if problem is None and info.file_size > 1 << 20 and info.compress_size and (
                info.file_size / info.compress_size > limits.max_compression_ratio):
            problem = f"compression ratio {info.file_size / info.compress_size:.0f}:1 looks like a zip bomb"
        seen.add(normalized.lower())
        if problem:
            issues.append(Issue(f"(archive)/{info.filename}", problem))
    if issues:
        raise MptaError(issues)
    return files


def _copy_bounded(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int) -> int:
    """Copy one entry, trusting the real stream length rather than the declared size."""
    written = 0
    with archive.open(info) as source, open(target, "xb") as sink:
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            if written > info.file_size or written > budget:
                raise MptaError.single(f"(archive)/{info.filename}", "entry is larger than it declares (zip bomb?)")
            sink.write(chunk)
    return written


def extract(archive_path: Path, destination: Path, limits: ExtractionLimits) -> None:
    """Extract into ``destination`` (which must not exist); on any error nothing is left behind."""
    try:
        archive = zipfile.ZipFile(archive_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise MptaError.single("(archive)", f"not a readable zip file: {exc}") from exc
    destination.mkdir(parents=True)
    try:
        with archive:
            budget = limits.max_total_bytes
            for info in check_members(archive, limits):
                target = destination.joinpath(*PurePosixPath(info.filename.replace("\\", "/")).parts)
                if not target.resolve().is_relative_to(destination.resolve()):
                    raise MptaError.single(f"(archive)/{info.filename}", "path escapes the archive")
                target.parent.mkdir(parents=True, exist_ok=True)
                budget -= _copy_bounded(archive, info, target, budget)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
        shutil.rmtree(destination, ignore_errors=True)
        raise MptaError.single("(archive)", f"corrupt zip: {exc}") from exc
    except BaseException:
        shutil.rmtree(destination, ignore_errors=True)
        raise


def find_pipeline_root(extracted: Path) -> Path:
    """The folder holding pipeline.json: the archive root or its single top-level folder."""
    if (extracted / PIPELINE_FILE).is_file():
        return extracted
    entries = [entry for entry in extracted.iterdir() if entry.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / PIPELINE_FILE).is_file():
        return entries[0]
    raise MptaError.single(PIPELINE_FILE, "missing: expected at the archive root or in its single top-level folder")
