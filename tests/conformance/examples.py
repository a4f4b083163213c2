"""Every example message of the original worker's own documents, verbatim, with where it came from.

Source: /work/shared/spec/seed-original-worker.diff.txt (the original worker's repository, as a diff). It holds
- CLAUDE.md in full (added file): the "Subscription Format" example under "WebSocket Protocol";
- worker.md in HUNKS ONLY: section 4 (the patchSession example from its ``"sessionId"`` line on, and the
  ``DisplayPersistentData`` TypeScript interface), section 6 "typical flow" (of each example only the lines
  around a changed bullet: mostly the opening ``{`` and the ``"type"`` line), section 7 (HTTP API);
- app.py hunks: what the original really sends and reads.

``VERBATIM`` texts are copied character for character from the diff (the diff as stored has lost the
Markdown's indentation; the content of each line is unchanged). Where a hunk cut an example, ``shown`` holds
only what the hunk shows, and ``message`` (when there is one) is a reconstruction, said so in ``reconstructed``.

Backend messages that the original's documents name but whose JSON examples are not among the hunks
(setSubscriptionList, requestState, setSessionId, setProgressionStage, patchSessionResult) are built from the
original app.py's handling and protocol.md's table, and marked ``source="protocol.md ..."``.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

Direction = Literal["backend->worker", "worker->backend"]


def strip_jsonc(text: str) -> str:
    """Remove ``// comments`` outside strings (CLAUDE.md's example has ``// OR snapshotUrl``)."""
    return re.sub(r'("(?:\\.|[^"\\])*")|//[^\n]*', lambda m: m.group(1) or "", text)


@dataclass(frozen=True)
class Example:
    name: str
    source: str
    direction: Direction
    schema: str  # file name under schemas/ without .json
    verbatim: str  # exactly as in the diff (a fragment where the hunk cut it)
    shown: dict[str, Any]  # the keys and values the verbatim text shows
    complete: bool  # True: ``verbatim`` is the whole message
    message: dict[str, Any] | None = None  # the whole message: parsed, or reconstructed (see ``reconstructed``)
    reconstructed: str = ""
    placeholders: dict[str, str] = field(default_factory=dict)  # key -> placeholder text ("rtsp://...")


# ─── CLAUDE.md, "## WebSocket Protocol" / "### Subscription Format" (complete, JSON with a // comment) ─────
CLAUDE_SUBSCRIBE_TEXT = """{
"type": "subscribe",
"payload": {
"subscriptionIdentifier": "display-001;cam-001",
"rtspUrl": "rtsp://...", // OR snapshotUrl
"snapshotUrl": "http://...",
"snapshotInterval": 5000,
"modelUrl": "http://...model.mpta",
"modelId": 101,
"modelName": "Vehicle Detection",
"cropX1": 100, "cropY1": 200,
"cropX2": 300, "cropY2": 400
}
}"""
CLAUDE_SUBSCRIBE = Example(
    name="claude_md_subscription_format", source="CLAUDE.md, WebSocket Protocol / Subscription Format",
    direction="backend->worker", schema="subscribe", verbatim=CLAUDE_SUBSCRIBE_TEXT,
    shown=json.loads(strip_jsonc(CLAUDE_SUBSCRIBE_TEXT)), complete=True,
    message=json.loads(strip_jsonc(CLAUDE_SUBSCRIBE_TEXT)),
    placeholders={"rtspUrl": "rtsp://...", "snapshotUrl": "http://...", "modelUrl": "http://...model.mpta"})

# ─── worker.md section 4, patchSession (hunk "@@ -117,9 +117,9": from the "sessionId" line on) ─────────────
PATCH_SESSION_TEXT = """"sessionId": 12345,
"data": {
"currentCar": {
"carModel": "Civic",
"carBrand": "Honda",
"licensePlateText": "ABCD1234"
}
}
}"""
PATCH_SESSION = Example(
    name="worker_md_4_patch_session", source="worker.md section 4, patchSession example (hunk @@ -117,9)",
    direction="worker->backend", schema="patchSession", verbatim=PATCH_SESSION_TEXT,
    shown=json.loads("{" + PATCH_SESSION_TEXT), complete=False,
    message={"type": "patchSession", **json.loads("{" + PATCH_SESSION_TEXT)},
    reconstructed='the opening "{" and "type": "patchSession" line are above the hunk; the type is the '
                  "section's message name (CLAUDE.md Message Types: patchSession)")

# ─── worker.md section 4, interface DisplayPersistentData (complete; the reformatted version of the diff) ──
DISPLAY_PERSISTENT_DATA_TS = """interface DisplayPersistentData {
progressionStage:
| 'welcome'
| 'car_fueling'
| 'car_waitpayment'
| 'car_postpayment'
| null;
qrCode: string | null;
adsPlayback: {
playlistSlotOrder: number; // The 'order' of the current slot
adsId: number | null;
adsUrl: string | null;
} | null;
currentCar: {
carModel?: string;
carBrand?: string;
carYear?: number;
bodyType?: string;
licensePlateText?: string;
licensePlateType?: string;
} | null;
fuelPump: {
/* FuelPumpData structure */
} | null;
weatherData: {
/* WeatherResponse structure */
} | null;
sessionId: number | null;
}"""

# ─── worker.md section 6 "typical flow": hunks around each changed bullet ─────────────────────────────────
# Each step's JSON is cut after its first lines (or starts mid-way); ``shown`` is what the hunks show.
FLOW_1_STATE_REPORT = Example(
    name="flow_1_state_report", source="worker.md section 6 step 1 'Connection Established & Heartbeat' "
    "(hunk @@ -315,7: the example's first two lines)", direction="worker->backend", schema="stateReport",
    verbatim='{\n"type": "stateReport",', shown={"type": "stateReport"}, complete=False)
FLOW_2_SUBSCRIBE = Example(
    name="flow_2_subscribe", source="worker.md section 6 step 2 'Backend Subscribes Camera' "
    "(hunk @@ -327,7: the example's first two lines)", direction="backend->worker", schema="subscribe",
    verbatim='{\n"type": "subscribe",', shown={"type": "subscribe"}, complete=False,
    message=copy.deepcopy(CLAUDE_SUBSCRIBE.message),
    reconstructed="the payload is cut; CLAUDE.md's Subscription Format example (same identifiers) stands in",
    placeholders=CLAUDE_SUBSCRIBE.placeholders)
FLOW_3_STATE_REPORT = Example(
    name="flow_3_state_report", source="worker.md section 6 step 3 'Worker Acknowledges in Heartbeat' "
    "(hunk @@ -341,7: first two lines)", direction="worker->backend", schema="stateReport",
    verbatim='{\n"type": "stateReport",', shown={"type": "stateReport"}, complete=False)
FLOW_4_IMAGE_DETECTIONS = tuple(
    Example(name=f"flow_4_image_detection_{n}", source=f"worker.md section 6 step 4 'Worker Detects a Car', "
            f"example {n} (hunk {hunk}: first two lines)", direction="worker->backend", schema="imageDetection",
            verbatim='{\n"type": "imageDetection",', shown={"type": "imageDetection"}, complete=False)
    for n, hunk in ((1, "@@ -360,7"), (2, "@@ -379,7"), (3, "@@ -398,7")))
FLOW_5_UNSUBSCRIBE = Example(
    name="flow_5_unsubscribe", source="worker.md section 6 step 5 'Backend Unsubscribes Camera' "
    "(hunk @@ -418,7: first two lines)", direction="backend->worker", schema="unsubscribe",
    verbatim='{\n"type": "unsubscribe",', shown={"type": "unsubscribe"}, complete=False,
    message={"type": "unsubscribe", "payload": {"subscriptionIdentifier": "display-001;cam-001"}},
    reconstructed="the payload is cut; the original app.py reads payload.get('subscriptionIdentifier') and the "
                  "identifier is the one step 2 subscribed")
FLOW_6_STATE_REPORT = Example(
    name="flow_6_state_report", source="worker.md section 6 step 6 'Worker Acknowledges Unsubscription' "
    "(hunks @@ -428,7 and @@ -439,6: the first two lines and the last two)", direction="worker->backend",
    schema="stateReport", verbatim='{\n"type": "stateReport",\n[...cut...]\n"cameraConnections": []\n}',
    shown={"type": "stateReport", "cameraConnections": []}, complete=False)

# ─── worker.md section 7, HTTP API (complete) ───────────────────────────────────────────────────────────────
HTTP_IMAGE_REQUEST = "GET /camera/display-001;cam-001/image"
HTTP_IMAGE_CONTENT_TYPE = "image/jpeg"  # "Example Response / Headers: Content-Type: image/jpeg"

# ─── Backend messages without a JSON example among the hunks (protocol.md table + original app.py) ───────
SET_SUBSCRIPTION_LIST = Example(
    name="set_subscription_list", source="original app.py (data.get('subscriptions', [])) + protocol.md table",
    direction="backend->worker", schema="setSubscriptionList", verbatim="", shown={}, complete=False,
    message={"type": "setSubscriptionList", "subscriptions": [copy.deepcopy(CLAUDE_SUBSCRIBE.shown["payload"])]},
    reconstructed="no example in the original's documents; the CLAUDE.md subscription as its one entry",
    placeholders=CLAUDE_SUBSCRIBE.placeholders)
REQUEST_STATE = Example(
    name="request_state", source="CLAUDE.md Message Types + original app.py (elif msg_type == 'requestState')",
    direction="backend->worker", schema="requestState", verbatim="", shown={}, complete=False,
    message={"type": "requestState"}, reconstructed="the original reads nothing but the type")
SET_SESSION_ID = Example(
    name="set_session_id", source="CLAUDE.md Message Types + protocol.md table",
    direction="backend->worker", schema="setSessionId", verbatim="", shown={}, complete=False,
    message={"type": "setSessionId", "payload": {"displayIdentifier": "display-001", "sessionId": 12345}},
    reconstructed="protocol.md's shape with the documents' display-001 and worker.md's sessionId 12345")
CLEAR_SESSION_ID = Example(
    name="clear_session_id", source="protocol.md table (sessionId null clears)",
    direction="backend->worker", schema="setSessionId", verbatim="", shown={}, complete=False,
    message={"type": "setSessionId", "payload": {"displayIdentifier": "display-001", "sessionId": None}},
    reconstructed="protocol.md's shape")
SET_PROGRESSION_STAGES = tuple(
    Example(name=f"set_progression_stage_{stage}", source="worker.md section 4 DisplayPersistentData."
            "progressionStage values + protocol.md table", direction="backend->worker", schema="setProgressionStage",
            verbatim="", shown={}, complete=False,
            message={"type": "setProgressionStage",
                     "payload": {"displayIdentifier": "display-001", "progressionStage": stage}},
            reconstructed="protocol.md's shape, every stage of the original's interface")
    for stage in ("welcome", "car_fueling", "car_waitpayment", "car_postpayment", None))
PATCH_SESSION_RESULT = Example(
    name="patch_session_result", source="protocol.md table (the answer to worker.md section 4 patchSession)",
    direction="backend->worker", schema="patchSessionResult", verbatim="", shown={}, complete=False,
    message={"type": "patchSessionResult", "payload": {"sessionId": 12345, "success": True, "message": "ok"}},
    reconstructed="protocol.md's shape with worker.md's sessionId 12345")

ORIGINAL_EXAMPLES: tuple[Example, ...] = (
    CLAUDE_SUBSCRIBE, PATCH_SESSION, FLOW_1_STATE_REPORT, FLOW_2_SUBSCRIBE, FLOW_3_STATE_REPORT,
    *FLOW_4_IMAGE_DETECTIONS, FLOW_5_UNSUBSCRIBE, FLOW_6_STATE_REPORT)
CONSTRUCTED_EXAMPLES: tuple[Example, ...] = (
    SET_SUBSCRIPTION_LIST, REQUEST_STATE, SET_SESSION_ID, *SET_PROGRESSION_STAGES, PATCH_SESSION_RESULT,
    CLEAR_SESSION_ID)
ALL_EXAMPLES = ORIGINAL_EXAMPLES + CONSTRUCTED_EXAMPLES
BACKEND_TO_WORKER = tuple(e for e in ALL_EXAMPLES if e.direction == "backend->worker" and e.message is not None)


def with_servers(message: dict[str, Any], **urls: str) -> dict[str, Any]:
    """The example with only its placeholder URLs replaced (``rtspUrl=...``, ``snapshotUrl=...``,
    ``modelUrl=...``): the documents' ``rtsp://...`` points nowhere; every other key and value stays."""
    result = copy.deepcopy(message)
    targets = [result["payload"]] if "payload" in result else result.get("subscriptions", [])
    for target in targets:
        for key, url in urls.items():
            assert key in target, f"{key} is not in the example"
            target[key] = url
    return result
