"""Broken and hostile .mpta archives: each gives a clear error and nothing escapes the cache dir."""

from __future__ import annotations

import asyncio
import io
import json
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from camera_pod.mpta.errors import MptaError
from camera_pod.mpta.extracting import ExtractionLimits
from camera_pod.mpta.loading import ArchiveStore
from tests.conftest import ArchiveBuilder

BRAND = "car_brand_cls_v1"
BRAND_FILE = f"{BRAND}.pt"


def _raw_zip(path: Path, entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, data in entries:
            archive.writestr(info, data)
    return path


def _symlink_entry() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("pipeline.json")
    info.external_attr = 0o120777 << 16
    return info


class _Exploit:
    """Unpickling this would run a command; a safe loader must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def _root(edit: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    return edit


def _set(path: list[str | int], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(document: dict[str, Any]) -> None:
        target = document
        for key in path[:-1]:
            target = target[key]  # type: ignore[index]
        target[path[-1]] = value  # type: ignore[index]
    return edit


# (case id, how to build it, expected path fragment, expected problem fragment)
Case = tuple[str, Callable[[ArchiveBuilder, Path], Path], str, str]

CASES: list[Case] = [
    ("zip-slip", lambda b, d: b(extra={"../evil.txt": b"x"}), "../evil.txt", "escapes the archive"),
    ("zip-slip-nested", lambda b, d: b(extra={"models/../../evil.txt": b"x"}), "evil.txt", "escapes the archive"),
    ("absolute-path", lambda b, d: b(extra={"/tmp/evil-mpta.txt": b"x"}), "evil-mpta.txt", "absolute path"),
    ("symlink", lambda b, d: _raw_zip(d / "link.mpta", [(_symlink_entry(), b"/etc/passwd")]),
     "pipeline.json", "symbolic link"),
    ("too-many-files", lambda b, d: b(extra={f"junk/{i}.txt": b"x" for i in range(300)}), "(archive)",
     "more than the limit"),
    ("zip-bomb-ratio", lambda b, d: b(extra={"bomb.bin": bytes(64 << 20)}), "bomb.bin", "zip bomb"),
    ("not-a-zip", lambda b, d: _write(d / "junk.mpta", os.urandom(4096)), "(archive)", "not a readable zip"),
    ("empty-file", lambda b, d: _write(d / "empty.mpta", b""), "(archive)", "not a readable zip"),
    ("truncated-zip", lambda b, d: _truncated(b(), d), "(archive)", "zip"),
    ("missing-pipeline-json", lambda b, d: _raw_zip(d / "nopipe.mpta", [("model.pt", b"x")]), "pipeline.json",
     "missing"),
    ("pipeline-too-deep", lambda b, d: _raw_zip(d / "deep.mpta", [("a/b/pipeline.json", b"{}")]), "pipeline.json",
     "missing"),
    ("bad-json", lambda b, d: b(pipeline_text='{"pipeline": {"modelId": '), "pipeline.json", "invalid JSON at line 1"),
    ("json-not-object", lambda b, d: b(pipeline_text="[1, 2]"), "(root)", "must be a JSON object"),
    ("not-utf8", lambda b, d: b(pipeline_text=b'{"pipeline": "\xff\xfe"}'), "pipeline.json", "UTF-8"),
    ("wrong-type", lambda b, d: b(_set(["pipeline", "minConfidence"], "high")), "pipeline.minConfidence",
     "valid number"),
    ("confidence-out-of-range", lambda b, d: b(_set(["pipeline", "branches", 1, "minConfidence"], 1.5)),
     "pipeline.branches[1].minConfidence", "less than or equal to 1"),
    ("unknown-field", lambda b, d: b(_set(["pipeline", "triggerClass"], ["Car"])), "pipeline.triggerClass",
     "unknown field"),
    ("unknown-action-type", lambda b, d: b(_set(["pipeline", "actions", 0, "type"], "shell_exec")),
     "pipeline.actions[0]", "shell_exec"),
    ("missing-pipeline-node", lambda b, d: b(pipeline_text='{"redis": {"host": "127.0.0.1", "port": 6379}}'),
     "pipeline", "Field required"),
    ("model-path-escape", lambda b, d: b(_set(["pipeline", "modelFile"], "../../etc/passwd")),
     "pipeline.modelFile", "'..'"),
    ("unknown-trigger-class", lambda b, d: b(_set(["pipeline", "triggerClasses"], ["Car", "Truck"])),
     "pipeline.triggerClasses", "'Truck' is not a class"),
    ("unknown-expected-class", lambda b, d: b(_set(["pipeline", "expectedClasses"], ["Bus"])),
     "pipeline.expectedClasses", "'Bus' is not a class"),
    ("unknown-crop-class", lambda b, d: b(_set(["pipeline", "branches", 0, "cropClass"], "Wheel")),
     "pipeline.branches[0].cropClass", "'Wheel' is not a class"),
    ("unknown-region", lambda b, d: b(_set(["pipeline", "actions", 0, "region"], "Plate")),
     "pipeline.actions[0].region", "'Plate' is not a class"),
    ("missing-model-file", lambda b, d: b(drop=(BRAND_FILE,)), "pipeline.branches[0].modelFile",
     "file not in archive"),
    ("corrupt-model", lambda b, d: b(extra={BRAND_FILE: os.urandom(2048)}, drop=(BRAND_FILE,)),
     "pipeline.branches[0].modelFile", "cannot load model"),
    ("sql-injection-table", lambda b, d: b(_set(["pipeline", "parallelActions", 0, "table"],
                                                "car_frontal_info; DROP TABLE users")),
     "pipeline.parallelActions[0].table", "not a valid SQL identifier"),
    ("sql-injection-column", lambda b, d: b(_set(["pipeline", "parallelActions", 0, "fields"],
                                                 {"car_brand = 'x'; --": "{session_id}"})),
     "pipeline.parallelActions[0].fields", "not a valid SQL identifier"),
    ("sql-injection-key-field", lambda b, d: b(_set(["pipeline", "parallelActions", 0, "key_field"], 'id" OR 1=1')),
     "pipeline.parallelActions[0].key_field", "not a valid SQL identifier"),
    ("unknown-placeholder", lambda b, d: b(_set(["pipeline", "actions", 0, "key"], "inference:{camera}:{uuid}")),
     "pipeline.actions[0].key", "unknown placeholder {camera}"),
    ("image-key-before-save", lambda b, d: b(_root(lambda doc: doc["pipeline"]["actions"].reverse())),
     "pipeline.actions[0].message", "{image_key} (only after a redis_save_image)"),
    ("unknown-branch-field", lambda b, d: b(_set(["pipeline", "parallelActions", 0, "fields", "car_brand"],
                                                 "{car_brand_cls_v1.colour}")),
     "pipeline.parallelActions[0].fields.car_brand", "has no field 'colour'"),
    ("wait-for-unknown-branch", lambda b, d: b(_set(["pipeline", "parallelActions", 0, "waitForBranches"],
                                                    [BRAND, "car_color_cls_v9"])),
     "pipeline.parallelActions[0].waitForBranches[1]", "'car_color_cls_v9' is not a branch"),
    ("redis-action-without-redis", lambda b, d: b(_root(lambda doc: doc.pop("redis"))), "pipeline.actions[0]",
     'needs a "redis" section'),
    ("duplicate-model-id", lambda b, d: b(_set(["pipeline", "branches", 1, "modelId"], BRAND)),
     "pipeline.branches[1].modelId", "duplicate modelId"),
]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncated(archive: Path, directory: Path) -> Path:
    data = archive.read_bytes()
    return _write(directory / "truncated.mpta", data[: len(data) // 2])


def _snapshot(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


@pytest.mark.parametrize(("build", "path", "problem"), [case[1:] for case in CASES], ids=[c[0] for c in CASES])
def test_hostile_archive_is_refused_clearly(build: Callable[[ArchiveBuilder, Path], Path], path: str,
                                           problem: str, build_archive: ArchiveBuilder, tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    archive = build(build_archive, inputs)
    cache = tmp_path / "cache"
    before = _snapshot(tmp_path)
    store = ArchiveStore(cache, extraction_limits=ExtractionLimits(max_files=256))
    with pytest.raises(MptaError) as caught:
        asyncio.run(store.load(str(archive)))
    messages = [str(issue) for issue in caught.value.issues]
    assert any(path in message and problem in message for message in messages), messages
    created_outside = {p for p in _snapshot(tmp_path) - before if not p.startswith("cache")}
    assert created_outside == set()
    assert not Path("/tmp/evil-mpta.txt").exists()
    assert not (tmp_path / "evil.txt").exists()
    extracted = cache / "extracted"
    assert not extracted.exists() or all(not p.name.startswith(".") for p in extracted.iterdir()), \
        "a failed extraction left its staging folder behind"


def test_pickle_exploit_in_model_file_is_refused_without_running(build_archive: ArchiveBuilder,
                                                                 tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = io.BytesIO()
    pickle.dump({"model": _Exploit(marker)}, payload)
    archive = build_archive(extra={BRAND_FILE: payload.getvalue()}, drop=(BRAND_FILE,))
    with pytest.raises(MptaError, match="cannot load model"):
        asyncio.run(ArchiveStore(tmp_path / "cache").load(str(archive)))
    assert not marker.exists(), "loading a model file executed code from its pickle"


def test_all_issues_are_reported_at_once(build_archive: ArchiveBuilder, tmp_path: Path) -> None:
    def edit(document: dict[str, Any]) -> None:
        document["pipeline"]["triggerClasses"] = ["Truck"]
        document["pipeline"]["branches"][0]["cropClass"] = "Wheel"

    with pytest.raises(MptaError) as caught:
        asyncio.run(ArchiveStore(tmp_path / "cache").load(str(build_archive(edit))))
    assert {issue.path for issue in caught.value.issues} >= {"pipeline.triggerClasses",
                                                              "pipeline.branches[0].cropClass"}


def test_pipeline_json_in_a_single_top_level_folder_is_accepted(fixture_members: dict[str, bytes],
                                                                tmp_path: Path) -> None:
    archive = _raw_zip(tmp_path / "nested.mpta", [(f"gas_station/{name}", data)
                                                  for name, data in fixture_members.items()])
    loaded = asyncio.run(ArchiveStore(tmp_path / "cache").load(str(archive)))
    assert loaded.root.name == "gas_station"
    assert set(loaded.models) == {"car_frontal_detection_v1", BRAND, "car_bodytype_cls_v1"}
    assert json.loads((loaded.root / "pipeline.json").read_text())["pipeline"]["modelId"] == \
        "car_frontal_detection_v1"
