"""Build an .mpta from a folder holding pipeline.json and its model files."""

from __future__ import annotations

import zipfile
from pathlib import Path

from camera_pod.mpta.errors import MptaError
from camera_pod.mpta.extracting import PIPELINE_FILE
from camera_pod.mpta.loading import parse_pipeline


def pack(folder: Path, output: Path) -> list[str]:
    """Zip ``pipeline.json`` and the model files it names (only those) into ``output``."""
    pipeline_file = folder / PIPELINE_FILE
    if not pipeline_file.is_file():
        raise MptaError.single(PIPELINE_FILE, f"missing in {folder}")
    config = parse_pipeline(pipeline_file)
    members = sorted({node.modelFile for _, node in config.pipeline.walk() if node.modelFile is not None})
    missing = [name for name in members if not (folder / name).is_file()]
    if missing:
        raise MptaError.single("pipeline.modelFile", f"not in {folder}: {', '.join(missing)}")
    output.parent.mkdir(parents=True, exist_ok=True)
    temp = output.with_name(output.name + ".part")
    with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.write(pipeline_file, PIPELINE_FILE)
        for name in members:
            archive.write(folder / name, name)
    temp.replace(output)
    return [PIPELINE_FILE, *members]
