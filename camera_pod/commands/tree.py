"""Human-readable tree of a loaded pipeline (``detector mpta validate``)."""

from __future__ import annotations

from camera_pod.mpta.loading import LoadedArchive
from camera_pod.mpta.naming import result_field
from camera_pod.mpta.schema import Action, Node, OcrNode, PostgresUpdateCombined, RedisPublish, RedisSaveImage


def _action_text(action: Action) -> str:
    if isinstance(action, RedisSaveImage):
        ttl = f", ttl {action.expire_seconds}s" if action.expire_seconds else ""
        return f"redis_save_image {action.format} region={action.region or 'full frame'} key={action.key}{ttl}"
    if isinstance(action, RedisPublish):
        return f"redis_publish channel={action.channel}"
    assert isinstance(action, PostgresUpdateCombined)
    schema, table = action.schema_and_table
    waits = f" after {', '.join(action.waitForBranches)}" if action.waitForBranches else ""
    return f"postgresql_update_combined {schema}.{table} ({', '.join(action.fields)}){waits}"


def _node_text(archive: LoadedArchive, node: Node, is_root: bool) -> str:
    model = archive.models[node.modelId]
    parts = [f"{node.modelId} [{model.task}: {', '.join(model.names)}]"]
    if node.triggerClasses:
        parts.append(("classes " if is_root else "on ") + "/".join(node.triggerClasses) + f" ≥ {node.minConfidence}")
    if node.multiClass:
        parts.append("multiClass" + (f" expects {'/'.join(node.expectedClasses)}" if node.expectedClasses else ""))
    if node.crop:
        size = f" → {node.resizeTarget[0]}x{node.resizeTarget[1]}" if node.resizeTarget else ""
        parts.append(f"crop {node.cropClass or node.triggerClasses[0]}{size}")
    if node.parallel:
        parts.append("parallel")
    field = result_field(node) if model.task == "classify" else None
    if field:
        parts.append(f"→ {field}")
    return "  ".join(parts)


def _ocr_text(archive: LoadedArchive, node: OcrNode) -> str:
    reader = archive.readers.get(node.modelId)
    model = reader.recogniser.recognition.name if reader is not None else node.modelFile or "bundled"
    parts = [f"{node.modelId} [ocr: {model}]"]
    if node.triggerClasses:
        parts.append("on " + "/".join(node.triggerClasses) + f" ≥ {node.minConfidence}")
    if node.crop:
        parts.append(f"crop {node.cropClass or node.triggerClasses[0]}")
    if node.parallel:
        parts.append("parallel")
    rules = f"text ≥ {node.minTextConfidence}, {node.minLength}-{node.maxLength} of {len(node.allowedCharacters)} chars"
    if node.pattern:
        rules += f", pattern {node.pattern}" + (f" → {node.replacement}" if node.replacement else "")
    if not node.detectLines:
        rules += ", one line"
    parts.append(rules)
    parts.append(f"→ {node.resultField}")
    return "  ".join(parts)


def _render(archive: LoadedArchive, node: Node, prefix: str, lines: list[str], is_root: bool) -> None:
    children: list[tuple[str, Node | OcrNode | str]] = [("action", _action_text(a)) for a in node.actions]
    children += [("branch", branch) for branch in node.branches]
    children += [("after branches", _action_text(a)) for a in node.parallelActions]
    for index, (kind, child) in enumerate(children):
        last = index == len(children) - 1
        joint, indent = ("└── ", "    ") if last else ("├── ", "│   ")
        if isinstance(child, Node):
            lines.append(prefix + joint + _node_text(archive, child, False))
            _render(archive, child, prefix + indent, lines, False)
        elif isinstance(child, OcrNode):
            lines.append(prefix + joint + _ocr_text(archive, child))
        else:
            lines.append(f"{prefix}{joint}{kind}: {child}")


def render_tree(archive: LoadedArchive) -> str:
    config = archive.config
    lines = [_node_text(archive, config.pipeline, True)]
    _render(archive, config.pipeline, "", lines, True)
    services = []
    if config.redis:
        services.append(f"redis {config.redis.host}:{config.redis.port}/{config.redis.db}")
    if config.postgresql:
        pg = config.postgresql
        services.append(f"postgresql {pg.username}@{pg.host}:{pg.port}/{pg.database}")
    lines.append("services: " + (", ".join(services) or "none"))
    return "\n".join(lines)
