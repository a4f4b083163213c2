"""The schemas against the original's own documents (no worker runs here).

Each example of the original is in the diff exactly as examples.py holds it, and conforms to its schema;
the schemas refuse what the original's backend could not take.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.conformance import examples
from tests.conformance.examples import ALL_EXAMPLES, Example
from tests.conformance.validation import SCHEMAS, problems

ORIGINAL = Path("/work/shared/spec/seed-original-worker.diff.txt")


def diff_lines() -> list[str]:
    """The original worker's documents: every developer and CI machine has ../shared (a missing one fails)."""
    assert ORIGINAL.is_file(), f"{ORIGINAL} (the original worker's diff) is missing"
    return ORIGINAL.read_text().splitlines()


def appears_in_order(needle: list[str], haystack: list[str], window: int = 60) -> bool:
    """Every line of ``needle``, in order, within ``window`` lines of where its first line occurs (a diff
    interleaves the old and the new version of changed lines)."""
    for start, line in enumerate(haystack):
        if line != needle[0]:
            continue
        position = start
        for wanted in needle[1:]:
            try:
                position = haystack.index(wanted, position + 1, start + window)
            except ValueError:
                break
        else:
            return True
    return False


@pytest.mark.parametrize("example", [e for e in ALL_EXAMPLES if e.verbatim], ids=lambda e: e.name)
def test_each_example_is_verbatim_from_the_original(example: Example) -> None:
    lines = [line for line in example.verbatim.splitlines() if line != "[...cut...]"]
    assert appears_in_order(lines, diff_lines()), f"{example.name} is not in the diff as written"


def test_the_typescript_interface_is_verbatim_and_the_schema_has_its_fields() -> None:
    text = examples.DISPLAY_PERSISTENT_DATA_TS
    assert appears_in_order(text.splitlines(), diff_lines())
    top = set(re.findall(r"^(\w+):", text, re.M)) - {"playlistSlotOrder", "adsId", "adsUrl"}
    schema = json.loads((SCHEMAS / "displayPersistentData.json").read_text())
    assert set(schema["properties"]) == top
    car = set(re.findall(r"^(\w+)\?:", text, re.M))
    assert set(schema["properties"]["currentCar"]["oneOf"][1]["properties"]) == car


@pytest.mark.parametrize("path", sorted(SCHEMAS.glob("*.json")), ids=lambda p: p.stem)
def test_every_schema_is_a_valid_2020_12_schema_that_names_its_source(path: Path) -> None:
    document = json.loads(path.read_text())
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(document)
    assert "original" in document["description"].lower() or "protocol.md" in document["description"]


@pytest.mark.parametrize("example", [e for e in ALL_EXAMPLES if e.message is not None], ids=lambda e: e.name)
def test_every_whole_example_conforms(example: Example) -> None:
    assert example.message is not None
    assert problems(example.message, example.schema) == []


@pytest.mark.parametrize("example", [e for e in ALL_EXAMPLES if e.message is not None and e.shown],
                         ids=lambda e: e.name)
def test_reconstructions_keep_what_the_hunks_show(example: Example) -> None:
    assert example.message is not None
    for key, value in example.shown.items():
        assert example.message[key] == value


# What the original app.py really sends (its code, written out): these must pass the worker->backend schemas.
ORIGINAL_STATE_REPORT = {
    "type": "stateReport", "cpuUsage": 12.5, "memoryUsage": 40.1, "gpuUsage": None, "gpuMemoryUsage": None,
    "cameraConnections": [
        {"subscriptionIdentifier": "display-001;cam-001", "modelId": 101, "modelName": "Vehicle Detection",
         "online": True, "rtspUrl": None, "snapshotUrl": "http://cam/snap.jpg", "snapshotInterval": 5000,
         "cropX1": 100, "cropY1": 200, "cropX2": 300, "cropY2": 400},
        {"subscriptionIdentifier": "display-002;cam-002", "modelId": 101, "modelName": "Vehicle Detection",
         "online": True, "rtspUrl": "rtsp://cam/stream", "snapshotUrl": None, "snapshotInterval": None},
    ]}
ORIGINAL_DETECTION = {
    "type": "imageDetection", "subscriptionIdentifier": "display-001;cam-001",
    "timestamp": "2025-07-14T12:34:56.789Z",
    "data": {"detection": {"carModel": None, "carBrand": "Honda", "carYear": None, "bodyType": "Sedan",
                           "licensePlateText": None, "licensePlateConfidence": None},
             "modelId": 101, "modelName": "Vehicle Detection"}}


def edited(message: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    result = copy.deepcopy(message)
    *parents, last = path.split(".")
    target: Any = result
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return result


def test_what_the_original_sends_conforms() -> None:
    assert problems(ORIGINAL_STATE_REPORT) == []
    assert problems(ORIGINAL_DETECTION) == []
    assert problems({**ORIGINAL_DETECTION, "sessionId": 12345}) == []
    assert problems({**ORIGINAL_STATE_REPORT, "cameraConnections": []}) == []


@pytest.mark.parametrize(("message", "path", "value"), [
    (ORIGINAL_DETECTION, "sessionId", None),  # left out, never null, while there is no session
    (ORIGINAL_DETECTION, "sessionId", "12345"),
    (ORIGINAL_DETECTION, "timestamp", "2025-07-14 12:34:56"),
    (ORIGINAL_DETECTION, "timestamp", 1752496496789),
    (ORIGINAL_DETECTION, "data.detection.carBrand", KeyError),  # every key present, null when unknown
    (ORIGINAL_DETECTION, "data.modelId", "101"),
    (ORIGINAL_DETECTION, "subscriptionIdentifier", "display-001"),
    (ORIGINAL_STATE_REPORT, "cpuUsage", KeyError),
    (ORIGINAL_STATE_REPORT, "gpuUsage", KeyError),
    (ORIGINAL_STATE_REPORT, "cameraConnections.0.online", "yes"),
    (ORIGINAL_STATE_REPORT, "cameraConnections.0.modelId", KeyError),
    (ORIGINAL_STATE_REPORT, "cameraConnections.0.cropX1", None),  # crop keys only when not None
    (ORIGINAL_STATE_REPORT, "cameraConnections.0.snapshotUrl", None),  # neither URL
    (examples.PATCH_SESSION.message, "sessionId", None),
    (examples.PATCH_SESSION.message, "data.currentCar.carYear", "2019"),
    (examples.SET_SESSION_ID.message, "payload.sessionId", "12345"),
    (examples.SET_PROGRESSION_STAGES[0].message, "payload.progressionStage", "flying"),
    (examples.CLAUDE_SUBSCRIBE.message, "payload.subscriptionIdentifier", "display-001"),
    (examples.CLAUDE_SUBSCRIBE.message, "payload.modelId", "101"),
    (examples.CLAUDE_SUBSCRIBE.message, "payload.modelId", KeyError),
])
def test_the_schemas_refuse_what_the_backend_could_not_take(message: Any, path: str, value: Any) -> None:
    assert problems(edited(message, path, value)) != []


def test_a_subscription_needs_a_stream_url_and_null_equals_left_out() -> None:
    payload = examples.CLAUDE_SUBSCRIBE.message["payload"]  # type: ignore[index]
    no_url = {k: v for k, v in payload.items() if k not in ("rtspUrl", "snapshotUrl")}
    assert problems(no_url, "subscription") != []
    assert problems({**no_url, "rtspUrl": None, "snapshotUrl": None}, "subscription") != []
    assert problems({**payload, "rtspUrl": None}, "subscription") == []
    assert problems({**payload, "cropX1": None, "cropY1": None, "cropX2": None, "cropY2": None},
                    "subscription") == []
    assert problems({**payload, "rtspUrl": "ftp://cam/stream", "snapshotUrl": None}, "subscription") != []
