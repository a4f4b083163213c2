"""Render and execute one node's action list through the ActionSink."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import cv2

from camera_pod.inference.detections import Box
from camera_pod.inference.models import Image
from camera_pod.mpta import templates
from camera_pod.mpta.schema import Action, PostgresUpdateCombined, RedisPublish, RedisSaveImage
from camera_pod.pipeline import cropping
from camera_pod.pipeline.results import ActionList, ActionOutcome
from camera_pod.pipeline.sink import ActionSink, queues_writes

log = logging.getLogger(__name__)


@dataclass
class ActionScope:
    """What one action list sees: the image, the regions, and template values."""

    node_id: str
    list_name: ActionList
    image: Image
    regions: Mapping[str, Box]
    values: dict[str, object]
    branch_values: Mapping[str, Mapping[str, object]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Drawn once per node run (one scope serves a node's actions and parallelActions): every action of
        # the node names the same file, as the original's per-node action context did.
        if "uuid" not in self.values:
            self.values.update(templates.file_names())


def encode_image(image: Image, action: RedisSaveImage) -> bytes:
    if action.format == "png":
        ok, buffer = cv2.imencode(".png", image)
    else:
        ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, action.quality])
    if not ok:
        raise ValueError(f"could not encode a {image.shape} image as {action.format}")
    return bytes(buffer.tobytes())


def _region_image(scope: ActionScope, region: str | None) -> Image:
    if region is None or region not in scope.regions:
        if region is not None:
            log.warning("region not detected, saving the full frame",
                        extra={"node": scope.node_id, "region": region})
        return scope.image
    cropped = cropping.crop(scope.image, scope.regions[region].xyxy)
    return scope.image if cropped is None else cropped


async def _save_image(action: RedisSaveImage, scope: ActionScope, sink: ActionSink) -> str:
    key = templates.render(action.key, scope.values)
    await sink.save_image(key, encode_image(_region_image(scope, action.region), action), action.expire_seconds)
    scope.values[templates.IMAGE_KEY] = key
    return key


async def _publish(action: RedisPublish, scope: ActionScope, sink: ActionSink) -> str:
    channel = templates.render(action.channel, scope.values)
    await sink.publish(channel, templates.render(action.message, scope.values))
    return channel


class _NothingToWrite(Exception):
    """Every field of a ``postgresql_update_combined`` names a node that gave nothing on this frame."""


async def _upsert(action: PostgresUpdateCombined, scope: ActionScope, sink: ActionSink) -> str:
    values = dict(scope.values)
    for branch_id, branch_fields in scope.branch_values.items():
        values.update({f"{branch_id}.{name}": value for name, value in branch_fields.items()})
    key_value = templates.render(action.key_value, values)
    # As the original, a field naming a node that gave nothing on this frame (not waited for: a text node under a
    # plate detector that found no plate) is left out of the write; all left out: nothing is written.
    unresolved = {column for column, template in action.fields.items()
                  if any(placeholder.name not in values for placeholder in templates.placeholders(template))}
    if unresolved and unresolved == set(action.fields):
        raise _NothingToWrite(f"no field resolved ({', '.join(sorted(unresolved))})")
    # A lone placeholder with no value (a plate not read) is NULL, not '': "unreadable or absent gives null".
    fields = {column: templates.column_value(template, values) for column, template in action.fields.items()
              if column not in unresolved}
    schema, table = action.schema_and_table
    await sink.upsert(schema, table, action.key_field, key_value, fields)
    return f"{schema}.{table}[{action.key_field}={key_value}]"


def _missing_branches(action: Action, scope: ActionScope) -> list[str]:
    if not isinstance(action, PostgresUpdateCombined):
        return []
    return [branch for branch in action.waitForBranches if branch not in scope.branch_values]


async def run_action(index: int, action: Action, scope: ActionScope, sink: ActionSink | None) -> ActionOutcome:
    def outcome(status: str, detail: str) -> ActionOutcome:
        return ActionOutcome(scope.node_id, scope.list_name, index, action.type, status, detail)  # type: ignore[arg-type]

    if sink is None:
        return outcome("skipped", "actions disabled")
    missing = _missing_branches(action, scope)
    if missing:
        return outcome("skipped", f"waited-for branches did not finish: {', '.join(missing)}")
    try:
        if isinstance(action, RedisSaveImage):
            detail = await _save_image(action, scope, sink)
        elif isinstance(action, RedisPublish):
            detail = await _publish(action, scope, sink)
        else:
            detail = await _upsert(action, scope, sink)
    except _NothingToWrite as exc:
        return outcome("skipped", str(exc))
    except Exception as exc:  # one failing action never stops the others or the camera
        log.error("action failed", extra={"node": scope.node_id, "action": f"{scope.list_name}[{index}]",
                                          "type": action.type, "error": f"{type(exc).__name__}: {exc}"})
        return outcome("failed", f"{type(exc).__name__}: {exc}")
    return outcome("queued" if queues_writes(sink) else "done", detail)


async def run_actions(actions: list[Action], scope: ActionScope, sink: ActionSink | None) -> list[ActionOutcome]:
    """In order: a ``redis_save_image`` provides ``{image_key}`` to the actions after it."""
    return [await run_action(index, action, scope, sink) for index, action in enumerate(actions)]
